"""Scalars read from tensors (`n = Lens[b];`), windows at element offsets (`A[pos:, j]`,
`A[pos:stop, j]`) and `if`/`else` on scalar conditions: both front ends, the verifier, the layout
plan's vector widths, and the same results on the reference interpreter, Triton's interpreter,
TVM llvm, the TVM cuda lowering and the CUDA source on their CPU emulators (docs/LANGUAGE.md has the semantics).

Triton's interpreter must be switched on before triton is imported, so its runs happen in a child
process: this file run as a script (as tests/test_backend_triton.py does)."""
from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ["TRITON_INTERPRET"] = "1"

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
from tilelang import InternalError, TileError, loads, tile_kernel  # noqa: E402
from tilelang.lang import *  # noqa: E402,F403
from tilelang.layout import infer_layouts  # noqa: E402
from tilelang.runtime.args import bind  # noqa: E402

LANG = """
# Row b holds Lens[b] values from column Starts[b]: summed (pad 1 past the tensor's end), doubled into Y.
kernel ragged(X: T[B, N], Lens: i32[B], Starts: i64[B], Y: T[B, N], Z: f32[B, 1], T: dtype = f16,
              BN: const = 16)
    grid(B) threads(32)
{
    b = block_id(0);
    n = Lens[b];
    s0 = Starts[b];
    acc = register(f32[1, BN]);
    for j in range(cdiv(n, BN)) {
        x = register(T[1, BN]);
        copy(X[b, s0 + j * BN:s0 + n], x, pad=1);
        cols = iota((1, BN), axis=1) + j * BN;
        acc = acc + where(cols < n, f32(x), 0.0);
        y = x * 2.0;
        copy(y, Y[b, s0 + j * BN:s0 + n]);
    }
    total = register(f32[1, 1]);
    if n > 20 {
        total = sum(acc, axis=1);
    } else if n < 0 {
        total = full(f32[1, 1], -1.0);
    } else {
        total = sum(acc, axis=1) + 100.0;
    }
    copy(total, Z[b, 0]);
}

# Each block takes its tile from A or from B (times 3, through a tile local to the branch), as Flags says.
kernel choose(A: T[M, N], B: T[M, N], Flags: i32[G], Y: T[M, N], T: dtype = f16, BM: const = 16,
              BN: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(64)
{
    f = Flags[block_id(0) % G];
    s = shared(T[BM, BN]);
    if f == 1 {
        copy(A[block_id(0), block_id(1)], s);
    } else {
        copy(B[block_id(0), block_id(1)], s);
        r = register(T[BM, BN]);
        copy(s, r);
        r = r * 3.0;
        copy(r, s);
    }
    y = register(T[BM, BN]);
    copy(s, y);
    copy(y, Y[block_id(0), block_id(1)]);
}

# Names reused in sibling loops (and after them), and expressions as copy sources.
kernel reuse(X: T[M, N], Y: T[M, N], Z: f32[M, 1], T: dtype = f16, BN: const = 16)
    grid(M) threads(32)
{
    m = block_id(0);
    acc = register(f32[1, 1]);
    for j in range(cdiv(N, BN)) {
        x = register(T[1, BN]);
        copy(X[m, j], x);
        acc = acc + sum(f32(x), axis=1);
    }
    for j in range(cdiv(N, BN)) {
        x = register(f32[1, BN]);
        copy(X[m, j], x);
        copy(x * 2.0 + acc, Y[m, j]);
    }
    x = acc + 1.0;
    copy(x * 0.5, Z[m, 0]);
}
"""


@tile_kernel
def ragged(X: T[B, N], Lens: i32[B], Starts: i64[B], Y: T[B, N], Z: f32[B, 1], T: dtype = f16,
           BN: const = 16):
    launch(grid=(B,), threads=32)
    b = block_id(0)
    n = Lens[b]
    s0 = Starts[b]
    acc = register(f32[1, BN])
    for j in range(cdiv(n, BN)):
        x = register(T[1, BN])
        copy(X[b, s0 + j * BN:s0 + n], x, pad=1)
        cols = iota((1, BN), axis=1) + j * BN
        acc = acc + where(cols < n, f32(x), 0.0)
        y = x * 2.0
        copy(y, Y[b, s0 + j * BN:s0 + n])
    total = register(f32[1, 1])
    if n > 20:
        total = sum(acc, axis=1)
    elif n < 0:
        total = full(f32[1, 1], -1.0)
    else:
        total = sum(acc, axis=1) + 100.0
    copy(total, Z[b, 0])


@tile_kernel
def reuse(X: T[M, N], Y: T[M, N], Z: f32[M, 1], T: dtype = f16, BN: const = 16):
    launch(grid=(M,), threads=32)
    m = block_id(0)
    acc = register(f32[1, 1])
    for j in range(cdiv(N, BN)):
        x = register(T[1, BN])
        copy(X[m, j], x)
        acc += sum(f32(x), axis=1)
    for j in range(cdiv(N, BN)):
        x = register(f32[1, BN])
        copy(X[m, j], x)
        copy(x * 2.0 + acc, Y[m, j])
    x = acc + 1.0
    copy(x * 0.5, Z[m, 0])


def kernels():
    return loads(LANG, "lang.tile")


def ragged_args(dt: str):
    rng = np.random.default_rng(1)
    b, n = 9, 77
    lens = np.array([0, 1, 5, 16, 17, 33, 40, -3, 80], np.int32)  # empty, short, long, negative, past the end
    starts = np.array([0, 3, 70, 1, 60, 2, 37, 5, 0], np.int64)  # unaligned offsets
    return [_rand(rng, (b, n), dt), lens, starts, np.full((b, n), np.nan, _np(dt)), np.full((b, 1), np.nan, np.float32)]


def ragged_numpy(x, lens, starts, y, z):
    """What `ragged` writes, element by element."""
    y, z = y.copy(), z.copy()
    bn, cols = 16, x.shape[1]
    for b, (n, s) in enumerate(zip(lens.tolist(), starts.tolist())):
        total = 0.0
        for j in range(max(-(-n // bn), 0)):
            for c in range(bn):
                col = s + j * bn + c
                inside = col < min(cols, s + n)
                v = float(x[b, col]) if inside else 1.0
                total += v if j * bn + c < n else 0.0
                if inside:
                    y[b, col] = v * 2.0
        z[b, 0] = total if n > 20 else -1.0 if n < 0 else total + 100.0
    return [x, lens, starts, y, z]


def choose_args(dt: str):
    rng = np.random.default_rng(2)
    m, n = 37, 45
    return [_rand(rng, (m, n), dt), _rand(rng, (m, n), dt), np.array([1, 0, 5], np.int32),
            np.full((m, n), np.nan, _np(dt))]


def choose_numpy(a, b, flags, y):
    rows = np.arange(a.shape[0]) // 16 % len(flags)
    pick = (flags[rows] == 1)[:, None]
    return [a, b, flags, np.where(pick, a, (b.astype(np.float32) * 3).astype(a.dtype))]


def reuse_args(dt: str):
    rng = np.random.default_rng(3)
    m, n = 5, 45
    return [_rand(rng, (m, n), dt), np.full((m, n), np.nan, _np(dt)), np.full((m, 1), np.nan, np.float32)]


def reuse_numpy(x, y, z):
    """In f32 like the kernel; the sums' order differs, so compare with `_close`."""
    xf = x.astype(np.float32)
    acc = xf.sum(axis=1, keepdims=True, dtype=np.float32)
    return [x, (xf * 2.0 + acc).astype(x.dtype), (acc + 1.0) * 0.5]


CASES = {"ragged": (ragged_args, ragged_numpy), "choose": (choose_args, choose_numpy),
         "reuse": (reuse_args, reuse_numpy)}
DTYPES = ["f16", "bf16"]


def _np(dt: str):
    import ml_dtypes
    return {"f16": np.float16, "bf16": ml_dtypes.bfloat16}[dt]


def _rand(rng, shape, dt):
    return rng.standard_normal(shape).astype(_np(dt))


def _same(got, want):
    """Equal arrays, NaN where the reference has one, within one rounding of the output dtype (values
    only moved are bit-equal; `reuse` sums in f32 in another order than numpy)."""
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            g64, w64 = np.asarray(g).astype(np.float64), np.asarray(w).astype(np.float64)
            np.testing.assert_array_equal(np.isnan(g64), np.isnan(w64))
            eps = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -20}.get(w.dtype.name, 0.0)
            ok = ~np.isnan(w64)
            np.testing.assert_allclose(g64[ok], w64[ok], rtol=eps, atol=eps * np.abs(w64[ok]).max(initial=0))


def _run(name: str, dt: str, **kw):
    make, _ = CASES[name]
    args = make(dt)
    kernels()[name](*args, **kw)
    return args


# ----------------------------------------------------------------------------- front ends and verifier

def test_python_and_tile_spellings_build_the_same_ir():
    assert ragged.ir == kernels()["ragged"].ir
    assert reuse.ir == kernels()["reuse"].ir


def test_reused_names_and_copied_expressions_get_fresh_ir_names():
    from tilelang.ir.printer import kernel_str
    text = kernel_str(kernels()["reuse"].ir)
    assert "for j_2 in" in text and "x_2 = register(f32" in text and "x_3 = (acc + 1.0);" in text
    assert "copy_src = ((x_2 * 2.0) + acc);" in text and "copy(copy_src_2, Z[m, 0]);" in text


def test_printed_kernels_parse_back_to_the_same_ir():
    from tilelang.ir.printer import kernel_str
    for k in kernels().values():
        again = loads(kernel_str(k.ir), "printed.tile")[k.name]
        assert again.ir == k.ir


HEAD = ("kernel k(A: f16[M, N], L: i32[M], Q: u4[M, N], S: f16[M, G], BM: const = 16, BN: const = 32)\n"
        "    grid(cdiv(M, BM)) threads(64)\n{\n    x = register(f16[BM, BN]);\n")

ERRORS = [
    # (body line, message fragment, hint fragment, the text the error points at)
    ("n = L[0, 1];", "'L' has 1 dims but 2 indices", "one element index per dim", "L[0, 1]"),
    ("n = L[0] + 1;", "an element of 'L' is read by a statement of its own", "bind it to a name first", "L[0]"),
    ("n = L[0:];", "a slice selects a window", "copy(L[...], tile)", "0:"),
    ("n = L[0]; n = L[1];", "'n' is already defined", None, "n = L[1];"),
    ("n = Q[0, 0];", "cannot read a scalar from packed tensor 'Q'", "plain tensors", "Q[0, 0]"),
    ("n = L[0.5];", "an element index must be an integer scalar", None, "0.5"),
    ("copy(A[0.5:, 0], x);", "a window's element offset must be an integer scalar", None, "0.5"),
    ("copy(A[0:1.5, 0], x);", "a window's stop must be an integer scalar", None, "1.5"),
    ("y = register(f16[4:, BN]);", "a slice is a window index", "copy(A[pos:, j], tile)", "4:"),
    ("dequant(Q[3:, 0], x, scale=S, group=32);", "dequant windows are tile-indexed", None, "3:"),
    ("y = register(u8[BM, BN]); copy(Q[0, 3:], y);", "windows of packed tensor 'Q' are tile-indexed", "Q[i, j]",
     "3:"),
    ("if x > 0.0 { x = x + 1.0; }", "an if condition must be a scalar", "where(cond, a, b)", "x > 0.0"),
    ("if 1.5 { x = x + 1.0; }", "an if condition must be a bool or an integer", None, "1.5"),
    ("if 1 { t = register(f16[BM, BN]); } copy(t, A[0, 0]);", "unknown name 't'", None, "t"),
    ("for i in range(2) { x = register(f16[BM, BN]); }", "'x' is already defined", "pick a new name", "register("),
    ("copy(1.0, A[0, 0]);", "a copy source must be a tile", "full(f32[R, C], v)", "1.0"),
]


@pytest.mark.parametrize("body, message, hint, at", ERRORS, ids=[e[1][:40] for e in ERRORS])
def test_misuse_is_a_located_error_with_a_hint(body, message, hint, at):
    text = HEAD + "    " + body + "\n}\n"
    with pytest.raises(TileError) as e:
        loads(text, "k.tile")["k"].lower()
    err = e.value
    assert not isinstance(err, InternalError), err.render()
    assert message in err.message, err.render()
    assert hint is None or hint in (err.hint or ""), err.render()
    assert err.loc is not None and err.loc.line == 5, err.render()
    assert body[err.loc.col - 5:].startswith(at), err.render()


def test_python_slice_with_a_step_is_a_located_error():
    def k(A: f16[M, N], BN: const = 16):
        launch(grid=(1,), threads=32)
        x = register(f16[1, BN])
        copy(A[0:4:2, 0], x)
    with pytest.raises(TileError) as e:
        tile_kernel(k)
    assert "`start:` or `start:stop`" in e.value.message and e.value.loc.line > 0


# ----------------------------------------------------------------------------- the layout plan's vector widths

def _vector(src: str, target: str = "sm_90a") -> int:
    k = loads("kernel v(A: f16[M, N], Y: f16[M, N], p: i32) grid(1) threads(32)\n{\n"
              "    x = register(f16[4, 64]);\n" + src + "\n    copy(x, Y[0, 0]);\n}\n", "v.tile")["v"]
    plan = infer_layouts(k.lower(), target)
    return plan.stmts[0].vector


@pytest.mark.parametrize("window, vector", [
    ("A[0, 0]", 8),              # tile-aligned
    ("A[p:, 0]", 8),             # rows at an element offset: runs along a row are untouched
    ("A[p:p + 3, 0]", 8),        # and so is a stop on the rows
    ("A[0, p:]", 1),             # columns at any offset: element by element
    ("A[0, p * 8:]", 8),         # provably a multiple of the run
    ("A[0, p * 4 + 2:]", 2),     # a multiple of 2 only
    ("A[0, p * 8:p * 8 + 64]", 1),  # a stop cuts the runs
])
def test_element_offsets_narrow_copy_vectors_only_where_alignment_is_not_provable(window, vector):
    assert _vector(f"    copy({window}, x);") == vector


# ----------------------------------------------------------------------------- semantics on every backend

@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dt", DTYPES)
def test_reference_interpreter_matches_numpy(name, dt):
    make, want = CASES[name]
    got = _run(name, dt, backend="reference")
    _same(got, want(*make(dt)))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dt", DTYPES)
def test_tvm_llvm_matches_numpy(name, dt):
    pytest.importorskip("tvm")
    make, want = CASES[name]
    _same(_run(name, dt, backend="tvm", target="llvm"), want(*make(dt)))


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_source_matches_numpy_on_the_emulator(name):
    from tilelang.backends.cuda.emulate import Emulated
    make, want = CASES[name]
    args = make("bf16")
    k = kernels()[name]
    Emulated(k.lower(**bind(k.ir, tuple(args), {}).consts))(*args)
    _same(args, want(*make("bf16")))


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")
@pytest.mark.parametrize("name", ["embedding", "kv_append", "kv_append_slots"])  # scatter_rows: as kv_append_slots
def test_library_gathers_and_scatters_match_the_interpreter_on_the_cuda_emulator(name):
    """The library kernels built on these constructs, in bf16, ids and positions out of range included."""
    from test_backend_cuda import cases, kernel_by_name
    from test_backend_cuda_codegen import _emulate_and_compare
    args, consts = next(cases(name, "bf16", np.random.default_rng(4)))
    _emulate_and_compare(kernel_by_name(name), args, consts, "bf16")


@pytest.mark.parametrize("name", sorted(CASES))
def test_tvm_cuda_lowering_matches_numpy_on_the_emulator(name):
    from tvm_cuda_emulator import emulate
    make, want = CASES[name]
    args = make("f16")
    k = kernels()[name]
    call = bind(k.ir, tuple(args), {})
    emulate(k.lower(**call.consts), call)
    _same(args, want(*make("f16")))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cuda_source_compiles_with_nvcc(tmp_path):
    from tilelang.backends import cuda
    for name, k in kernels().items():
        cu = tmp_path / f"{name}.cu"
        cu.write_text(cuda.generate(k.lower()))
        proc = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90a", "-cubin", str(cu), "-o", str(cu) + ".cubin"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def interpreted_triton():
    """The Triton interpreter's outputs of every case (this file run as a script, see the docstring)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1])] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env, timeout=600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")), None)
    assert line is not None, proc.stderr[-3000:]
    return json.loads(line[len("RESULTS "):])


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dt", DTYPES)
def test_triton_interpreter_matches_numpy(interpreted_triton, name, dt):
    assert interpreted_triton[f"{name}@{dt}"] == "ok", interpreted_triton[f"{name}@{dt}"]


def _cuda_tensor(a):
    import torch
    if not isinstance(a, np.ndarray):
        return a
    if a.dtype == _np("bf16"):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).cuda()
    return torch.from_numpy(a).cuda()


def _host(t, like):
    import torch
    if not isinstance(like, np.ndarray):
        return like
    t = t.cpu()
    return t.view(torch.int16).numpy().view(like.dtype) if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dt", DTYPES)
def test_gpu_backends_match_numpy(backend, name, dt):
    make, want = CASES[name]
    args = make(dt)
    dev = [_cuda_tensor(a) for a in args]
    kernels()[name](*dev, backend=backend)
    _same([_host(t, a) for t, a in zip(dev, args)], want(*make(dt)))


def _triton_worker() -> None:
    results = {}
    for name, (make, want) in CASES.items():
        for dt in DTYPES:
            try:
                _same(_run(name, dt, backend="triton"), want(*make(dt)))
                results[f"{name}@{dt}"] = "ok"
            except Exception as e:  # reported by the test that owns the case
                results[f"{name}@{dt}"] = f"{type(e).__name__}: {e}"
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    _triton_worker()
