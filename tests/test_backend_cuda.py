"""The CUDA C++ backend (tilelang/backends/cuda) on the kernel library.

Without a GPU: every kernel of kernels/*.tile, with its default constants, lowers to CUDA C++ that
nvcc compiles for sm_90a (device code to a cubin, several kernels at a time); AOT builds write
their files; compiler errors point back at the .tile line.  With a GPU (`-m gpu`, CuPy needed):
every kernel matches the reference interpreter on odd shapes, in f16 and in bf16.

`cases(name, dt, rng)` gives each library kernel's arguments; test_backend_cuda_codegen.py runs
the same cases on the CPU emulator.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tilelang
from tilelang import TileError
from tilelang.backends import cuda
from tilelang.backends.cuda.errors import explain, origin
from tilelang.quant import PackedWeight, quantize, unpack
from tilelang.runtime.args import bind
from refusals import refused
from library_cases import PAGED, SAMPLING, SPLITK, args_prefill_cached, cached_chunk

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
KERNELS = [(p.stem, name) for p in sorted(KERNEL_DIR.glob("*.tile")) for name in tilelang.load(p)]
NP = {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16), "f32": np.dtype(np.float32)}
TOL = {"f16": 2e-2, "bf16": 6e-2}
SHARED_MAKERS = {name: make for _, name, make in SPLITK + SAMPLING + PAGED}  # makers from library_cases.py


@lru_cache(maxsize=None)
def kernel(file: str, name: str):
    return tilelang.load(KERNEL_DIR / f"{file}.tile")[name]


# ----------------------------------------------------------------------------- nvcc, no GPU needed

NVCC_CACHE = Path(tempfile.gettempdir()) / "tilelang_cuda_nvcc"


def _nvcc_one(key):
    """Compile one kernel's source with nvcc; results are cached by source (pytest-xdist workers share)."""
    file, name = key
    try:
        code = cuda.generate(kernel(file, name).lower())
    except TileError as e:  # the test reports it through tests/refusals.py
        return ("refused", str(e))
    NVCC_CACHE.mkdir(exist_ok=True)
    done = NVCC_CACHE / (hashlib.sha256(code.encode()).hexdigest()[:24] + ".json")
    with open(str(done) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            with tempfile.TemporaryDirectory() as d:
                cu = os.path.join(d, f"{name}.cu")
                Path(cu).write_text(code)
                proc = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90a", "-cubin", cu, "-o", cu + ".cubin"],
                                      capture_output=True, text=True)
            result = ("error", str(explain(proc.stderr, code, name, "nvcc"))) if proc.returncode else ("ok", "")
            done.write_text(json.dumps(result))
    return tuple(json.loads(done.read_text()))


@pytest.fixture(scope="module")
def nvcc_results():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(KERNELS, pool.map(_nvcc_one, KERNELS)))


@pytest.mark.parametrize("file,name", KERNELS)
def test_kernel_compiles_with_nvcc(nvcc_results, file, name):
    if refused(f"{file}:{name}", "cuda", lambda: cuda.generate(kernel(file, name).lower())):
        return
    status, detail = nvcc_results[(file, name)]
    assert status == "ok", detail


def test_build_aot_writes_source_cubin_and_ptx(tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    tk = kernel("gemm", "gemm").lower(BM=32, BN=32)
    paths = cuda.build_aot(tk, tmp_path / "out")
    assert [p.name for p in paths] == ["gemm.cu", "gemm.cubin", "gemm.ptx", "gemm.json"]
    launch = json.loads(paths[3].read_text())  # what load_aot needs to launch the cubin without a compiler
    assert launch["name"] == "gemm" and launch["threads"] == tk.threads and launch["params"][0] == ["tensor", "A"]
    ptx = paths[2].read_text()
    assert ".visible .entry gemm(" in ptx and "mma.sync.aligned.m16n8k16" in ptx
    assert paths[1].read_bytes()[:4] == b"\x7fELF"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_compiler_errors_point_at_the_tile_line():
    tk = kernel("softmax", "softmax").lower()
    code = cuda.generate(tk)
    tile_line = next(i for i, l in enumerate((KERNEL_DIR / "softmax.tile").read_text().split("\n"), 1)
                     if "y = exp(x - m) / l;" in l)
    lines = code.split("\n")
    n = next(i for i, l in enumerate(lines, 1) if l.strip().startswith(f"// softmax.tile:{tile_line} ")) + 2
    assert origin(code, n) == (f"softmax.tile:{tile_line}", "y = exp(x - m) / l;")
    text = str(explain(f"kernel.cu({n}): error: identifier \"oops\" is undefined", code, "softmax", "NVRTC"))
    assert f"from softmax.tile:{tile_line}: y = exp(x - m) / l;" in text
    assert f"generated line {n}: {lines[n - 1].strip()}" in text


def test_compile_without_cupy_or_gpu_says_what_is_missing():
    try:
        import cupy  # noqa: F401
        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is present")
    except Exception:  # noqa: BLE001 - no cupy, or no driver: both must give a TileError
        pass
    with pytest.raises(TileError, match="CuPy|GPU"):
        cuda.compile(kernel("gemm", "gemm").lower())


def test_launcher_packs_arguments_and_raises_the_shared_memory_limit(monkeypatch, tmp_path):
    """compile() and the launcher against a stand-in for CuPy: what NVRTC compiles, that the cubin goes
    through the shared disk cache, and what reaches cuLaunchKernel."""
    import ctypes
    import sys
    import types
    seen = {}

    class Kernel:
        max_dynamic_shared_size_bytes = 0
        kernel = types.SimpleNamespace(ptr=0xF00)  # the CUfunction on the current device

    class Module:
        def __init__(self, path):
            seen["cubin"] = Path(path).read_bytes()

        def get_function(self, name):
            return Kernel()

    class Device:
        compute_capability = "80"

        def __init__(self, index):
            seen["device"] = index

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Nvrtc:  # cupy_backends.cuda.libs.nvrtc: the compiler the backend calls
        NVRTCError = RuntimeError

        def createProgram(self, code, name, headers, includes):
            seen["code"] = code

        def compileProgram(self, prog, options):
            seen["options"] = options

        def getCUBIN(self, prog):
            return b"\x7fELF fake cubin"

        def destroyProgram(self, prog):
            pass

        def getVersion(self):
            return (13, 0)

    def launch_kernel(f, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        seen.update(function=f, grid=(gx, gy, gz), block=(bx, by, bz), smem=smem, stream=stream, extra=extra)
        pointers = (ctypes.c_void_p * 10).from_address(params)
        seen["args"] = ([ctypes.c_uint64.from_address(pointers[i]).value for i in range(4)],
                        [ctypes.c_int32.from_address(pointers[i]).value for i in range(4, 9)],
                        ctypes.c_float.from_address(pointers[9]).value)

    fake = types.ModuleType("cupy")
    fake.RawModule = Module
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 1),
                                      Device=Device, get_cuda_path=lambda: None,
                                      get_current_stream=lambda: types.SimpleNamespace(ptr=0x5EA),
                                      driver=types.SimpleNamespace(launchKernel=launch_kernel),
                                      compiler=types.SimpleNamespace(CompileException=RuntimeError))
    for name in ("cupy_backends", "cupy_backends.cuda", "cupy_backends.cuda.libs"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "cupy_backends.cuda.libs.nvrtc", Nvrtc())
    monkeypatch.setenv("TILELANG_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "cupy", fake)

    class CupyArray:  # what tilelang.runtime.args reads of a cupy array
        def __init__(self, shape, ptr):
            self.shape, self.dtype = shape, np.dtype(np.float16)
            self.device = types.SimpleNamespace(id=1)
            self.flags = types.SimpleNamespace(c_contiguous=True)
            self.data = types.SimpleNamespace(ptr=ptr)

    CupyArray.__module__ = "cupy._core.core"
    k = kernel("attention", "attention_prefill")
    arrays = [CupyArray(shape, 4096 * (i + 1)) for i, shape in enumerate([(2, 4, 70, 128), (2, 2, 70, 128),
                                                                           (2, 2, 70, 128), (2, 4, 70, 128)])]
    call = bind(k.ir, (*arrays, 0.125), {})
    launcher = cuda.compile(k.lower(**call.consts))
    launcher(call)
    assert seen["options"][0] == "-std=c++17" and "--gpu-architecture=sm_80" in seen["options"]
    assert 'extern "C" __global__' in seen["code"] and seen["cubin"] == b"\x7fELF fake cubin"
    assert [p.name for p in tmp_path.glob("cuda/*/*/kernel.cubin")] == ["kernel.cubin"]
    assert seen["grid"] == (2, 4, 2) and seen["block"] == (128, 1, 1) and seen["device"] == 1
    assert seen["function"] == 0xF00 and seen["stream"] == 0x5EA and seen["extra"] == 0  # CuPy's stream: cupy arrays
    assert seen["smem"] > 48 * 1024 and launcher.kernel.max_dynamic_shared_size_bytes == seen["smem"]
    ptrs, dims, scale = seen["args"]
    assert ptrs == [4096, 8192, 12288, 16384]
    assert dims == [2, 4, 70, 128, 2]  # B HQ S D HKV
    assert scale == 0.125


# ----------------------------------------------------------------------------- the kernels' arguments

def rand(rng, shape, dt, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(NP[dt])


def poisoned(shape, dt):
    return np.full(shape, np.nan, NP[dt])


def _quantized(rng, n, k, tw, g, zp, sdt):
    bits, signed = int(tw[1:]), tw[0] == "i"
    packed, s, z = quantize(rng.standard_normal((n, k)) * 0.5, bits, g, signed=signed, zero_point=zp)
    return packed, s.astype(NP[sdt]), None if z is None else z.astype(NP[sdt])


def cases(name: str, dt: str, rng: np.random.Generator):
    """(arguments, constants) of odd-shaped calls of a library kernel, activations in `dt`."""
    if name in SHARED_MAKERS:
        yield SHARED_MAKERS[name](rng, dt)
    elif name == "gemm":
        for m, k, n in [(70, 96, 45), (33, 100, 130)]:
            yield [rand(rng, (m, k), dt), rand(rng, (k, n), dt), poisoned((m, n), dt)], {}
        yield [rand(rng, (19, 40), dt), rand(rng, (40, 23), dt), poisoned((19, 23), "f32")], dict(BM=16, BN=32, BK=16)
    elif name.startswith("linear"):
        for (m, k, n), tiles in [((70, 96, 45), {}), ((5, 37, 70), dict(BM=16, BN=16, BK=16, STAGES=2))]:
            x, w, y = rand(rng, (m, k), dt), rand(rng, (n, k), dt), poisoned((m, n), dt)
            bias, res = [rand(rng, (n,), dt)], [rand(rng, (m, n), dt)]
            extra = {"linear": [], "linear_residual": res, "linear_bias_residual": bias + res}.get(name, bias)
            yield [x, w, *extra, y], tiles
    elif name == "gemv":
        for m, k, n in [(3, 300, 45), (1, 128, 64)]:
            yield [rand(rng, (m, k), dt), rand(rng, (n, k), dt), poisoned((m, n), dt)], {}
    elif name.startswith("wNa16_packed"):  # the weight in the plan's packed order, made for each tile config
        zp = name.endswith("_zp")
        for (m, k, n), tw, g, tiles in [((3, 700, 45), "u4", 128, dict(BN=16, BK=256, WK=4)),
                                        ((13, 300, 70), "u4", 64, dict(BN=32, BK=128, WK=2)),
                                        ((2, 260, 33), "u8", 64, dict(BN=16, BK=128, WK=1))]:
            w, s, z = _quantized(rng, n, k, tw, g, zp, dt)
            pw = kernel("gemm_wNa16", name).pack("W", unpack(w, int(tw[1:]), k, tw[0] == "i"), TW=tw, G=g, **tiles)
            yield [rand(rng, (m, k), dt), pw, s, *([z] if zp else []), poisoned((m, n), dt)], \
                dict(G=g, BM=16 if m > 8 else 8)
    elif name in ("gemv_wNa16_residual", "rmsnorm_gemv_wNa16", "fused_mlp_gate_up_wNa16"):
        for (m, k, n), tw, g in [((1, 2048, 70), "i4", 128), ((2, 300, 33), "i8", 300)]:
            w, s, _ = _quantized(rng, n, k, tw, g, False, dt)
            w = w.view(np.int8) if tw == "i8" else w
            x, y, consts = rand(rng, (m, k), dt), poisoned((m, n), dt), dict(TW=tw, G=g)
            if name == "gemv_wNa16_residual":
                yield [x, w, s, rand(rng, (m, n), dt), y], consts
            elif name == "rmsnorm_gemv_wNa16":
                yield [x, rand(rng, (k,), dt), w, s, y, 1e-5], consts
            else:
                wu, su, _ = _quantized(rng, n, k, tw, g, False, dt)
                yield [x, rand(rng, (k,), dt), w, s, wu.view(np.int8) if tw == "i8" else wu, su, y, 1e-5], consts
    elif name.startswith(("gemm_wNa16", "gemv_wNa16")):
        zp = name.endswith("_zp")
        for (m, k, n), tw, g in [((7, 200, 45), "u4", 64), ((33, 256, 70), "i3", 32), ((2, 100, 33), "u8", 100),
                                 ((5, 300, 20), "u4", 128)]:
            m = min(m, 3) if name.startswith("gemv") else m
            w, s, z = _quantized(rng, n, k, tw, g, zp, dt)
            yield [rand(rng, (m, k), dt), w, s, *([z] if zp else []), poisoned((m, n), dt)], dict(TW=tw, G=g)
    elif name in ("rmsnorm", "add_rmsnorm", "layernorm", "add_layernorm"):
        for m, h in [(3, 1500), (2, 200)]:
            x, w, y = rand(rng, (m, h), dt, 2) + 1, rand(rng, (h,), dt), poisoned((m, h), dt)
            if name == "rmsnorm":
                yield [x, w, y, 1e-5], {}
            elif name == "add_rmsnorm":
                yield [x, rand(rng, (m, h), dt), w, y, 1e-5], {}
            elif name == "add_layernorm":
                yield [x, rand(rng, (m, h), dt), w, rand(rng, (h,), dt), y, 1e-5], {}
            else:
                yield [x, w, rand(rng, (h,), dt), y, 1e-5], {}
    elif name == "softmax":
        for m, n in [(3, 1500), (2, 77)]:
            yield [rand(rng, (m, n), dt, 3), poisoned((m, n), dt)], {}
        yield [rand(rng, (5, 300), dt, 3), poisoned((5, 300), dt)], dict(BM=4, BN=128)
    elif name in ("add", "silu_mul"):
        for m, n in [(5, 1030), (3, 7)]:
            yield [rand(rng, (m, n), dt), rand(rng, (m, n), dt), poisoned((m, n), dt)], {}
    elif name == "rotary":
        for nt, nh, p, pos0 in [(3, 11, 9, 2), (2, 8, 2, 0)]:
            yield [rand(rng, (nt, nh, 128), dt), rand(rng, (p, 64), "f32"), rand(rng, (p, 64), "f32"),
                   poisoned((nt, nh, 128), dt), pos0], {}
    elif name == "attention_prefill":
        for b, hq, hkv, s, d in [(1, 2, 1, 70, 64), (1, 1, 1, 33, 128)]:
            qkv = [rand(rng, (b, h, s, d), dt) for h in (hq, hkv, hkv)]
            yield [*qkv, poisoned((b, hq, s, d), dt), d ** -0.5], {}
        yield [rand(rng, (2, 2, 21, 24), dt), *(rand(rng, (2, 1, 21, 24), dt) for _ in range(2)),
               poisoned((2, 2, 21, 24), dt), 0.2], dict(BM=16, BN=16, BD=32)
    elif name in ("attention_decode", "attention_decode_split"):
        for b, hkv, g, maxs, seq, d in [(2, 2, 3, 90, 70, 64), (1, 1, 1, 20, 5, 128)]:
            kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
            kc[:, :, seq:] = np.nan  # slots past seq_len hold garbage
            vc[:, :, seq:] = np.nan
            q = rand(rng, (b, hkv, g, d), dt)
            if name == "attention_decode":
                yield [q, kc, vc, poisoned((b, hkv, g, d), dt), seq, d ** -0.5], {}
            else:
                yield [q, kc, vc, poisoned((b, hkv, 3, g, d), "f32"), poisoned((b, hkv, 3, g), "f32"),
                       poisoned((b, hkv, 3, g), "f32"), seq, d ** -0.5], {}
    elif name == "attention_decode_combine":
        b, hkv, ns, g, d = 2, 2, 3, 3, 100
        mp, lp, op = rand(rng, (b, hkv, ns, g), "f32"), np.abs(rand(rng, (b, hkv, ns, g), "f32")) + 0.5, \
            rand(rng, (b, hkv, ns, g, d), "f32")
        mp[0, 0, 1], lp[0, 0, 1], op[0, 0, 1] = -np.inf, 0, 0  # an empty split
        yield [op, mp, lp, poisoned((b, hkv, g, d), dt)], {}
    elif name in ("add_bias", "add_bias_gelu", "add_bias_residual"):
        for m, n in [(5, 1030), (3, 7)]:
            res = [rand(rng, (m, n), dt)] if name == "add_bias_residual" else []
            yield [rand(rng, (m, n), dt), rand(rng, (n,), dt), *res, poisoned((m, n), dt)], {}
    elif name == "rotary_qk":
        for nt, hkv, g in [(3, 8, 4), (2, 3, 1)]:
            yield [rand(rng, (nt, hkv, g + 2, 128), dt), rand(rng, (nt, 64), "f32"), rand(rng, (nt, 64), "f32")], {}
    elif name == "attention_prefill_qkv":
        for b, hkv, g, s, d in [(1, 2, 4, 70, 64), (2, 3, 1, 33, 128)]:
            yield [rand(rng, (b, s, hkv * (g + 2) * d), dt), poisoned((b, s, hkv * g * d), dt), d ** -0.5], dict(D=d)
    elif name in ("attention_decode_lens", "attention_decode_split_lens"):
        for b, hkv, g, maxs, d, lens in [(2, 2, 3, 90, 64, [70, 1]), (1, 1, 1, 20, 128, [5])]:
            kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
            for i, n in enumerate(lens):
                kc[i, :, n:] = np.nan  # slots past a sequence's length hold garbage
                vc[i, :, n:] = np.nan
            q, n = rand(rng, (b, hkv, g + 2, d), dt), np.array(lens, np.int32).reshape(b, 1)
            if name == "attention_decode_lens":
                yield [q, kc, vc, poisoned((b, hkv, g, d), dt), n, d ** -0.5], dict(BD=d)
            else:
                yield [q, kc, vc, poisoned((b, hkv, 3, g, d), "f32"), poisoned((b, hkv, 3, g), "f32"),
                       poisoned((b, hkv, 3, g), "f32"), n, d ** -0.5], dict(BD=d)
    elif name == "attention_prefill_cached":
        yield args_prefill_cached(rng, dt)
        for hq, hkv, s, d, past in [(4, 2, 70, 64, [0, 37]), (1, 1, 33, 128, [100])]:
            q, kc, vc, pt = cached_chunk(rng, dt, hq, hkv, s, d, past, 5)
            yield [q, kc, vc, poisoned(q.shape, dt), pt, d ** -0.5], dict(BD=d)
    elif name == "decode_positions":
        for b, hkv, maxs in [(3, 8, 1024), (20, 2, 4096)]:
            pos = rng.integers(0, maxs - 1, (b, 1)).astype(np.int32)
            yield [pos, np.zeros((b, 1), np.int32), np.zeros((2, b), np.int64), np.zeros((b, 2 * hkv), np.int64),
                   maxs], {}
    elif name in ("rmsnorm_linear", "layernorm_linear_bias", "layernorm_linear_bias_gelu"):
        for m, k, n in [(1, 1030, 70), (16, 256, 96)]:
            x, wn, w = rand(rng, (m, k), dt, 2) + 1, rand(rng, (k,), dt), rand(rng, (n, k), dt, 0.1)
            y = poisoned((m, n), dt)
            if name == "rmsnorm_linear":
                yield [x, wn, w, y, 1e-5], {}
            else:
                yield [x, wn, rand(rng, (k,), dt), w, rand(rng, (n,), dt), y, 1e-5], {}
    elif name == "fused_mlp_gate_up":
        for m, h, i in [(5, 100, 70), (70, 64, 64)]:
            yield [rand(rng, (m, h), dt), rand(rng, (h,), dt), rand(rng, (i, h), dt, 0.2), rand(rng, (i, h), dt, 0.2),
                   poisoned((m, i), dt), 1e-5], {}
    elif name in ("embedding", "scatter_rows", "kv_append", "kv_append_slots"):  # ids and positions out of range included
        import library_cases
        yield getattr(library_cases, f"args_{name}")(rng, dt)
    else:
        yield from generic_cases(kernel_by_name(name), dt, rng)


def kernel_by_name(name: str):
    return kernel(*next(k for k in KERNELS if k[1] == name))


def generic_cases(k, dt: str, rng):
    """For kernels without a builder above: every dim an odd size, floats random, scalars small.

    Dtype parameters whose default is f16 or bf16 take `dt`; the others keep their default."""
    dtypes = {c.name: (dt if c.default in ("f16", "bf16") else c.default) for c in k.ir.consts if c.kind == "dtype"}
    dims, args = {}, []
    for p in k.ir.tensors:
        shape = tuple(d if isinstance(d, int) else dims.setdefault(d, 2 * int(rng.integers(9, 40)) + 1)
                      for d in p.dims)
        dtn = dtypes.get(p.dtype, p.dtype) if isinstance(p.dtype, str) else p.dtype.name
        args.append(rand(rng, shape, dtn) if dtn in NP else rng.integers(0, 3, shape).astype(np.int32))
    args += [0.5 if p.dtype.is_float else 3 for p in k.ir.scalars]
    yield args, {}


def compare(out: np.ndarray, ref: np.ndarray, dt: str) -> float:
    """Largest difference relative to the reference's magnitude; inf where NaNs differ."""
    o, r = out.astype(np.float64), ref.astype(np.float64)
    if not np.array_equal(np.isnan(o), np.isnan(r)) or not np.array_equal(np.isinf(o), np.isinf(r)):
        return float("inf")
    fin = np.isfinite(r)
    if not fin.any():
        return 0.0
    return float(np.abs(o[fin] - r[fin]).max() / max(1.0, np.abs(r[fin]).max()))


def reference(k, args, consts):
    """The interpreter's results on copies of `args` (numpy)."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    k(*copies, backend="reference", **consts)
    return copies


# ----------------------------------------------------------------------------- GPU runs

def _to_torch(a):
    import torch
    if a.dtype == NP["bf16"]:
        return torch.from_numpy(a.view(np.int16)).cuda().view(torch.bfloat16)
    return torch.from_numpy(a).cuda()


def _from_torch(t, like):
    import torch
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).cpu().numpy().view(like.dtype)
    return t.cpu().numpy()


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("file,name", KERNELS)
def test_kernel_matches_the_interpreter_on_gpu(file, name, dt):
    pytest.importorskip("cupy")
    pytest.importorskip("torch")
    k = kernel(file, name)
    rng = np.random.default_rng(abs(hash((name, dt))) % 2**32)
    for args, consts in cases(name, dt, rng):
        ref = reference(k, args, consts)
        gpu = [_to_torch(a) if isinstance(a, np.ndarray) else a.to("cuda") if isinstance(a, PackedWeight) else a
               for a in args]
        if refused(f"{file}:{name}", "cuda", lambda: k(*gpu, backend="cuda", **consts)):
            return
        for i, (g, a, r) in enumerate(zip(gpu, args, ref)):
            if isinstance(a, np.ndarray):
                err = compare(_from_torch(g, a), r, dt)
                assert err < TOL[dt], f"{name} {dt} {consts} argument {i}: error {err:.3g}"


@pytest.mark.gpu
def test_cupy_arrays_and_large_shared_memory_on_gpu():
    """attention_prefill with BD=128 needs more than 48 KB of shared memory (cudaFuncSetAttribute)."""
    cupy = pytest.importorskip("cupy")
    k = kernel("attention", "attention_prefill")
    tk = k.lower()
    from tilelang.backends.cuda.codegen import generate_source
    assert generate_source(tk).smem_bytes > 48 * 1024
    rng = np.random.default_rng(7)
    args = next(cases("attention_prefill", "f16", rng))[0]
    ref = reference(k, args, {})
    dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    k(*dev, backend="cuda")
    assert compare(cupy.asnumpy(dev[3]), ref[3], "f16") < TOL["f16"]


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_every_kernel_gets_arguments_that_bind(dt):
    for file, name in KERNELS:
        for args, consts in cases(name, dt, np.random.default_rng(0)):
            bind(kernel(file, name).ir, tuple(args), consts)
    for args, consts in generic_cases(kernel("gemm", "gemm"), dt, np.random.default_rng(0)):  # the fallback
        call = bind(kernel("gemm", "gemm").ir, tuple(args), consts)
        assert call.consts["T"].name == dt and call.dims["K"] % 2 == 1
