"""Fast dispatch (runtime/dispatch.py): a repeated call signature skips `bind`; any change re-binds.

The backend is a stub that records what it is asked to launch, so these run on any CPU; the GPU
launchers' fast forms are checked by `test_gpu_fast_path_matches_torch` and timed by
benchmarks/bench_dispatch.py.
"""
from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import tilelang
import tilelang.kernel as kernel_module
from tilelang import TileError, loads
from tilelang.runtime.args import bind

SRC = """
kernel scale(X: T[M, N], Y: T[M, N], a: f32, n: i32, T: dtype = f16, BM: const = 8, BN: const = 8)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    y = x * a;
    copy(y, Y[block_id(0), block_id(1)]);
}
"""


class StubLauncher:
    """Records launches: `("call", BoundCall)` through `__call__`, `("fast", values)` through `fast`."""

    def __init__(self, log: list, consts: dict, with_fast: bool):
        self.log, self.consts = log, consts
        if with_fast:
            self.fast = self._fast

    def __call__(self, call):
        self.log.append(("call", call))

    def _fast(self, call):
        self.log.append(("prepared", dict(call.dims)))
        return lambda values: self.log.append(("fast", values))


@pytest.fixture(params=[False, True], ids=["rebinding", "backend-fast"])
def stub(request, monkeypatch):
    """A kernel on a stub backend, with counters of `bind` calls and compilations."""
    log, binds, compiled = [], [], []

    def counting_bind(*args, **kwargs):
        binds.append(1)
        return bind(*args, **kwargs)

    def compile_stub(tk, target):
        compiled.append(tk.consts)
        return StubLauncher(log, tk.consts, request.param)

    monkeypatch.setattr(kernel_module, "bind", counting_bind)
    monkeypatch.setattr(kernel_module, "get_backend", lambda name: SimpleNamespace(compile=compile_stub))
    k = loads(SRC, "scale.tile")["scale"]

    def launches():
        return [entry for entry in log if entry[0] in ("call", "fast")]

    return SimpleNamespace(k=k, log=log, binds=binds, compiled=compiled, launches=launches, fast=request.param)


def _xy(dtype=torch.float16, shape=(4, 6)):
    return torch.randn(shape).to(dtype), torch.zeros(shape, dtype=dtype)


def _values(entry):
    """The (X, Y, a, n) a recorded launch received."""
    kind, got = entry
    if kind == "fast":
        return tuple(got)
    return got.arrays["X"], got.arrays["Y"], got.scalars["a"], got.scalars["n"]


def test_second_identical_call_skips_binding(stub):
    x, y = _xy()
    stub.k(x, y, 0.5, 3, backend="stub")
    x2, y2 = _xy()
    stub.k(x2, y2, 2.0, 5, backend="stub")
    assert len(stub.binds) == 1 and len(stub.compiled) == 1
    first, second = (_values(e) for e in stub.launches())
    assert first[0] is x and first[2:] == (0.5, 3)
    assert second[0] is x2 and second[1] is y2 and second[2:] == (2.0, 5)


def test_keywords_and_positions_share_one_route(stub):
    x, y = _xy()
    stub.k(x, y, a=0.5, n=3, backend="stub")
    stub.k(x, y, a=1.5, n=4, backend="stub")
    assert len(stub.binds) == 1
    assert _values(stub.launches()[1])[2:] == (1.5, 4)


@pytest.mark.parametrize("change", ["dtype", "shape", "device", "alignment", "int scalar", "int class",
                                    "numpy scalar", "pinned const", "keyword", "backend"])
def test_any_change_of_signature_binds_again(stub, change):
    x, y = _xy()
    stub.k(x, y, 0.5, 3, backend="stub")
    args, kwargs = [*_xy(), 0.5, 3], {"backend": "stub"}
    if change == "dtype":
        args[:2] = _xy(torch.bfloat16)
    elif change == "shape":
        args[:2] = _xy(shape=(4, 7))
    elif change == "device":
        args[:2] = [a.to("meta") for a in args[:2]]
    elif change == "alignment":
        big = torch.randn(4 * 6 + 1).half()
        args[0] = big[1:].view(4, 6)  # contiguous, 2 bytes past an aligned start
    elif change == "int scalar":
        args[2] = 1  # an int for the float parameter: allowed, converted like bind does
    elif change == "int class":
        args[3] = 16  # Triton specializes ints on divisibility by 16
    elif change == "numpy scalar":
        args[2] = np.float32(0.5)
    elif change == "pinned const":
        kwargs["BM"] = 16
    elif change == "keyword":
        kwargs["n"] = args.pop()
    elif change == "backend":
        kwargs["backend"] = "stub2"
    stub.k(*args, **kwargs)
    assert len(stub.binds) == 2
    stub.k(*args, **kwargs)
    assert len(stub.binds) == 2, "the new signature is remembered too"
    a, n = _values(stub.launches()[-1])[2:]
    assert (type(a), a, type(n)) == (float, float(args[2]), int)


@pytest.mark.parametrize("bad, message", [
    (lambda x, y: (x, y.float(), 0.5, 3), "is f32, but T is f16"),
    (lambda x, y: (x.double(), y, 0.5, 3), "is float64"),
    (lambda x, y: (x.t(), y.t(), 0.5, 3), "not contiguous"),
    (lambda x, y: (x, torch.zeros(4, 5, dtype=y.dtype), 0.5, 3), "has 5 along dim 1"),
    (lambda x, y: (x, y, 0.5, 3.0), "must be an int"),
    (lambda x, y: (x, y, 0.5, True), "must be an int"),
    (lambda x, y: (x, y, torch.tensor(0.5), 3), "is a scalar of dtype f32"),
    (lambda x, y: (x, y, 0.5), "missing argument 'n'"),
])
def test_a_stale_fast_path_never_launches(stub, bad, message):
    x, y = _xy()
    stub.k(x, y, 0.5, 3, backend="stub")
    stub.k(x, y, 0.5, 3, backend="stub")
    before = len(stub.launches())
    with pytest.raises(TileError, match=message):
        stub.k(*bad(x, y), backend="stub")
    assert len(stub.launches()) == before


def test_the_rebuilt_call_equals_what_bind_gives(stub):
    x, y = _xy()
    stub.k(x, y, 0.5, 3, backend="stub")
    x2, y2 = _xy()
    stub.k(x2, y2, np.float32(0.25), np.int64(7), backend="stub")
    stub.k(x2, y2, np.float32(0.75), np.int64(9), backend="stub")
    kind, got = stub.launches()[-1]
    want = bind(stub.k.ir, (x2, y2, np.float32(0.75), np.int64(9)), {})
    values = got if kind == "fast" else [got.arrays["X"], got.arrays["Y"], got.scalars["a"], got.scalars["n"]]
    assert values[0] is want.arrays["X"] and values[1] is want.arrays["Y"]
    assert [(type(v), v) for v in values[2:]] == [(type(v), v) for v in want.scalars.values()]
    if kind == "call":
        assert (got.consts, got.dims, got.infos) == (want.consts, want.dims, want.infos)


def test_prepared_calls_keep_no_arrays_alive(stub):
    x, y = _xy()
    ref = weakref.ref(x)
    stub.k(x, y, 0.5, 3, backend="stub")
    stub.log.clear()
    del x
    gc.collect()
    assert ref() is None


def test_fast_dispatch_can_be_turned_off(stub, monkeypatch):
    monkeypatch.setenv("TILELANG_FAST_DISPATCH", "0")
    k = loads(SRC, "scale.tile")["scale"]
    x, y = _xy()
    for _ in range(3):
        k(x, y, 0.5, 3, backend="stub")
    assert len(stub.binds) == 3 and len(stub.launches()) == 3


def test_signatures_past_the_limit_drop_the_oldest(stub, monkeypatch):
    monkeypatch.setattr(tilelang.runtime.dispatch, "MAX_ENTRIES", 2)
    for cols in (5, 6, 7):
        stub.k(*_xy(shape=(2, cols)), 0.5, 3, backend="stub")
    assert len(stub.k._fast.entries) == 2
    stub.k(*_xy(shape=(2, 5)), 0.5, 3, backend="stub")
    assert len(stub.binds) == 4


def test_reference_backend_through_the_fast_path_computes_each_call():
    k = loads(SRC, "scale.tile")["scale"]
    for a in (0.5, 2.0, -1.0):
        x, y = np.random.rand(5, 9).astype(np.float16), np.zeros((5, 9), np.float16)
        k(x, y, a, 1)
        np.testing.assert_array_equal(y, (x.astype(np.float32) * np.float32(a)).astype(np.float16))
    assert len(k._fast.entries) == 1


def test_cuda_parameters_are_packed_where_the_kernel_reads_them():
    """The CUDA backend's prepacked parameters (checked on the CPU: only the layout, no launch)."""
    import ctypes
    from tilelang.backends.cuda.codegen import generate_source
    from tilelang.backends.cuda.runtime import _Params
    k = loads(SRC, "scale.tile")["scale"]
    x, y = _xy()
    call = bind(k.ir, (x, y, 0.5, 3), {})
    src = generate_source(k.lower(**call.consts))
    params = _Params(k.lower(**call.consts), src, call)
    x2, y2 = _xy()
    address = params.fill([x2, y2, 0.75, -7])
    pointers = (ctypes.c_void_p * len(src.params)).from_address(address)
    read = {"tensor": ctypes.c_uint64, "dim": ctypes.c_int32}
    got = {}
    for (kind, name), decl, at in zip(src.params, src.decls, pointers):
        ctype = read.get(kind) or {"float": ctypes.c_float, "long long": ctypes.c_int64}[decl.rsplit(" ", 1)[0]]
        got[name] = ctype.from_address(at).value
    assert got == {"X": x2.data_ptr(), "Y": y2.data_ptr(), "M": 4, "N": 6, "a": 0.75, "n": -7}


def test_triton_fast_launch_calls_the_compiled_kernels_launcher(monkeypatch):
    """The Triton launch against stand-ins for the GPU: what reaches `CompiledKernel.run` (checked on the CPU)."""
    import contextlib
    import dataclasses
    from tilelang.backends.triton import launcher as triton_launcher
    from tilelang.runtime import dispatch
    monkeypatch.setattr(triton_launcher, "interpreting", lambda: False)
    monkeypatch.setattr(torch.cuda, "device", lambda index: contextlib.nullcontext())
    monkeypatch.setattr(dispatch, "torch_stream", lambda: (lambda index: 0x5EA))
    monkeypatch.setattr(dispatch, "torch_device", lambda: (lambda: 0))
    k = loads(SRC, "scale.tile")["scale"]
    x, y = _xy(shape=(20, 6))
    call = bind(k.ir, (x, y, 0.5, 3), {})
    call = dataclasses.replace(call, infos={n: dataclasses.replace(i, device="cuda:0") for n, i in call.infos.items()})
    launcher = triton_launcher.compile(k.lower(**call.consts))
    warmed, runs = [], []
    compiled = SimpleNamespace(function=0xF00, packed_metadata="packed", run=lambda *a: runs.append(a))
    launcher._run = SimpleNamespace(warmup=lambda *a, grid, **opts: warmed.append((a, grid, opts)) or compiled)
    launch = launcher.fast(call)
    x2, y2 = _xy(shape=(20, 6))
    launch([x2, y2, 0.75, 5])
    assert warmed == [((x, y, 20, 6, 0.5, 3), (3, 1), triton_launcher.launch_options(launcher.program))]
    (got,) = runs
    assert got[:9] == (3, 1, 1, 0x5EA, 0xF00, "packed", None, None, None)  # no launch hooks installed
    assert got[9] is x2 and got[10] is y2 and got[11:] == (20, 6, 0.75, 5)
    from triton import knobs
    seen = []
    knobs.runtime.launch_enter_hook.add(seen.append)
    compiled.launch_metadata = lambda grid, stream, *args: ("metadata", grid, stream, args[:2])
    try:
        launch([x, y, 0.5, 3])
    finally:
        knobs.runtime.launch_enter_hook.remove(seen.append)
    assert runs[1][6] == ("metadata", (3, 1), 0x5EA, (x, y)) and runs[1][7] is knobs.runtime.launch_enter_hook


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_fast_path_matches_torch(backend, monkeypatch):
    binds = []
    monkeypatch.setattr(kernel_module, "bind", lambda *a, **k: binds.append(1) or bind(*a, **k))
    rms = tilelang.load("kernels/rmsnorm.tile")["rmsnorm"]
    w = torch.randn(4096, device="cuda", dtype=torch.float16)
    for _ in range(3):
        x = torch.randn(3, 4096, device="cuda", dtype=torch.float16)
        y = torch.full_like(x, float("nan"))
        rms(x, w, y, 1e-6, backend=backend)
        want = torch.nn.functional.rms_norm(x.float(), (4096,), w.float(), 1e-6)
        assert (y.float() - want).norm() / want.norm() < 1e-2
    assert len(binds) == 1
