"""TVM backend: every kernel of kernels/*.tile, and kernels exercising each construct, built for
the `llvm` target and compared with the reference interpreter on odd shapes (f16 and bf16);
the CUDA lowering of the whole library built for sm_90a and compiled with `nvcc -c`; ahead-of-time
libraries round-tripped through `build_aot`/`load_aot`.  GPU runs are marked `gpu`.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
from kernel_refs import KERNELS, NP_DTYPES, load, poisoned, rand  # noqa: E402
from library_cases import PAGED, SAMPLING, SPLITK  # noqa: E402
from library_cases import (args_bias, args_binary, args_decode, args_decode_combine, args_decode_lens,  # noqa: E402
                           args_decode_split, args_decode_split_lens, args_gemv, args_linear, args_mlp,
                           args_mlp_gate_up, args_norm, args_norm_linear, args_packed, args_positions, args_prefill,
                           args_prefill_qkv, args_quant, args_quant_fused, args_rotary, args_rotary_qk, args_softmax, odd)
from library_cases import args_embedding, args_kv_append, args_kv_append_slots, args_scatter_rows  # noqa: E402
from library_cases import args_prefill_cached  # noqa: E402
from tilelang.diagnostics import TileError  # noqa: E402
from tilelang.quant import pack  # noqa: E402
from tilelang.runtime.args import bind  # noqa: E402
from refusals import refused  # noqa: E402

tvm_backend = pytest.importorskip("tilelang.backends.tvm")
pytest.importorskip("tvm")

DTYPES = ["f16", "bf16"]
# The two sides round from f32 values summed in different orders: a rounding step apart at most.
TOL = {"f16": 2e-3, "bf16": 1.6e-2, "f32": 1e-5}


@dataclass(frozen=True)
class Case:
    kernel: Callable[[], tilelang.TileKernel]
    make: Callable  # (rng, dt) -> (args, consts)
    id: str
    dtypes: tuple[str, ...] = tuple(DTYPES)


# ----------------------------------------------------------------------------- the kernel library

def _gemm(rng, dt):
    m, k, n = odd(rng, 17, 40), odd(rng, 17, 50), odd(rng, 17, 40)
    return [rand(rng, (m, k), dt), rand(rng, (k, n), dt), poisoned((m, n), dt)], dict(BM=16, BN=16, BK=16)


LIBRARY = {
    ("gemm", "gemm"): _gemm, ("linear", "linear"): args_linear(None),
    ("linear", "linear_residual"): args_linear("residual"), ("linear", "linear_bias"): args_linear("bias"),
    ("linear", "linear_bias_gelu"): args_linear("bias"), ("gemv", "gemv"): args_gemv,
    ("gemm_wNa16", "gemm_wNa16"): args_quant("i3", 32, False, False),
    ("gemm_wNa16", "gemm_wNa16_zp"): args_quant("u2", None, True, False),
    ("gemm_wNa16", "gemv_wNa16"): args_quant("u4", 32, False, True),
    ("gemm_wNa16", "gemv_wNa16_zp"): args_quant("i5", 64, True, True),
    ("gemm_wNa16", "wNa16_packed"): args_packed(False), ("gemm_wNa16", "wNa16_packed_zp"): args_packed(True),
    ("rmsnorm", "rmsnorm"): args_norm("rmsnorm"), ("rmsnorm", "add_rmsnorm"): args_norm("add_rmsnorm"),
    ("layernorm", "layernorm"): args_norm("layernorm"), ("softmax", "softmax"): args_softmax,
    ("rotary", "rotary"): args_rotary, ("attention", "attention_prefill"): args_prefill,
    ("attention", "attention_decode"): args_decode, ("attention", "attention_decode_split"): args_decode_split,
    ("attention", "attention_decode_combine"): args_decode_combine, ("fused_mlp", "fused_mlp_gate_up"): args_mlp,
    ("fused_mlp", "mlp_gate_up"): args_mlp_gate_up,
    ("fused_mlp", "silu_mul"): args_binary, ("elementwise", "add"): args_binary,
    ("linear", "linear_bias_residual"): args_linear("bias_residual"),
    ("layernorm", "add_layernorm"): args_norm("add_layernorm"), ("rotary", "rotary_qk"): args_rotary_qk,
    ("attention", "attention_prefill_qkv"): args_prefill_qkv, ("attention", "attention_decode_lens"): args_decode_lens,
    ("attention", "attention_decode_split_lens"): args_decode_split_lens,
    ("attention_chunked", "attention_prefill_cached"): args_prefill_cached,
    ("kv_cache", "kv_append"): args_kv_append, ("kv_cache", "kv_append_slots"): args_kv_append_slots,
    ("embedding", "embedding"): args_embedding, ("embedding", "scatter_rows"): args_scatter_rows,
    ("kv_cache", "decode_positions"): args_positions, ("elementwise", "add_bias"): args_bias(""),
    ("elementwise", "add_bias_gelu"): args_bias("gelu"), ("elementwise", "add_bias_residual"): args_bias("residual"),
    ("norm_linear", "rmsnorm_linear"): args_norm_linear("rms"),
    ("norm_linear", "rmsnorm_gemv_wNa16"): args_quant_fused("norm"),
    ("gemm_wNa16", "gemv_wNa16_residual"): args_quant_fused("residual"),
    ("fused_mlp", "fused_mlp_gate_up_wNa16"): args_quant_fused("mlp"),
    ("norm_linear", "layernorm_linear_bias"): args_norm_linear("layer"),
    ("norm_linear", "layernorm_linear_bias_gelu"): args_norm_linear("layer"),
    **{(f, k): make for f, k, make in SPLITK + SAMPLING + PAGED},
}


def _generic(file: str, name: str):
    """Arguments for a kernel LIBRARY lacks: random odd dims, tensors of their dtype or `dt`, tiles of 16."""
    from tilelang.ir import nodes as N
    from tilelang.ir.dtypes import DType

    def make(rng, dt):
        k = load(file)[name].ir
        dims = {d: odd(rng, 3, 40) for d in k.dim_symbols}
        args = []
        for p in k.params:
            if isinstance(p, N.TensorParam):
                fixed = p.dtype.name if isinstance(p.dtype, DType) and p.dtype.name in NP_DTYPES else None
                args.append(rand(rng, tuple(d if isinstance(d, int) else dims[d] for d in p.dims), fixed or dt))
            elif isinstance(p, N.ScalarParam):
                args.append(0.5 if p.dtype.is_float else 3)
        return args, {c.name: 16 for c in k.consts if c.kind == "int" and c.name.startswith("B")}
    return make


def library_cases() -> list[Case]:
    """Every kernel of kernels/*.tile, discovered, with its argument maker (or a generic one)."""
    out = []
    for path in sorted(KERNELS.glob("*.tile")):
        for name in tilelang.load(path):
            make = LIBRARY.get((path.stem, name)) or _generic(path.stem, name)
            out.append(Case(lambda f=path.stem, n=name: load(f)[n], make, f"{path.stem}:{name}"))
    return out


# ----------------------------------------------------------------------------- constructs

CONSTRUCTS = """
kernel unary(X: f32[M, N], Y: f32[M, N], Z: T[M, N], T: dtype = f16, BM: const = 8, BN: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    a = exp(x) + exp2(x) + log(abs(x) + 1.0) + log2(abs(x) + 2.0) + sqrt(abs(x)) + rsqrt(abs(x) + 0.5);
    b = tanh(x) + sigmoid(x) + silu(x) + gelu(x) + gelu_tanh(x) + sin(x) + cos(x) + erf(x) + recip(x + 10.0);
    c = where(x > 0.0, max(a, b), min(a, b)) + pow(abs(x), 1.5) - (-x);
    copy(c, Y[block_id(0), block_id(1)]);
    h = T(x);
    h2 = h * h + h / 3.0 - silu(h);
    copy(h2, Z[block_id(0), block_id(1)]);
}

kernel intops(X: i32[M, N], Y: i32[M, N], F: f32[M, N], B: u8[M, N], I: i8[M, N], s: i32,
              BM: const = 4, BN: const = 8)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(i32[BM, BN]);
    f = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(F[block_id(0), block_id(1)], f);
    q = x // 7 + x % 5 * 100 + (x >> 2) + (x << 1) + (x & 12) + (x | 3) + (x ^ 5) + cdiv(x, 3) + x // s;
    r = where((x > 3) & (x < 50) | (x == -4), q, i32(f) - iota((BM, BN), axis=1)) + ~x;
    copy(r, Y[block_id(0), block_id(1)]);
    u = u8(x) + u8(3);
    copy(u, B[block_id(0), block_id(1)]);
    copy(f, I[block_id(0), block_id(1)]);
}

kernel bcast(X: T[M, N], Y: T[N, M], S: f32[M, N], T: dtype = f16, BM: const = 16, BN: const = 8)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x, pad=1.5);
    t = trans(x);
    copy(t, Y[block_id(1), block_id(0)]);
    xf = f32(x);
    m = max(xf, axis=0);
    col = sum(xf, axis=0);
    y = xf - m + broadcast(col, (BM, BN)) + full(f32[BM, BN], 2.0) + min(xf, axis=1) + zeros(f32[BM, 1]);
    y = y * 0.5 + f32(iota((BM, BN), axis=0));
    y = y - trans(trans(y)) * 0.25;
    copy(y, S[block_id(0), block_id(1)]);
}

kernel rows(X: T[M, N], Y: T[M, N], T: dtype = f16, BM: const = 3, BN: const = 96)
    grid(cdiv(M, BM)) threads(64)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), 0], x);
    s = sum(x * x, axis=1);
    mx = max(x, axis=1);
    mn = min(x - mx, axis=1);
    acc = register(f32[BM, 1], init=0.0);
    acc = acc + s;
    y = T(x * rsqrt(acc / BN + 1e-5) + mn - sum(max(x, axis=1) - x, axis=1));
    copy(y, Y[block_id(0), 0]);
}

kernel win3d(X: T[B, M, N], Y: T[B, N], Z: T[B, M, N], T: dtype = f16, BM: const = 4, BN: const = 8)
    grid(cdiv(N, BN), 2, cdiv(B, 2)) threads(32)
{
    b = block_id(2) * 2 + block_id(1);
    acc = register(f32[1, BN]);
    for i in range(cdiv(M, BM)) {
        x = register(T[BM, BN]);
        copy(X[b, i, block_id(0)], x, pad=2.0);
        xs = shared(T[BM, BN]);
        copy(x, xs);
        xr = register(f32[BM, BN]);
        copy(xs, xr);
        acc = acc + sum(xr, axis=0);
        copy(x, Z[b, i, block_id(0)]);
    }
    y = T(acc);
    copy(y, Y[b, block_id(0)]);
}

kernel gemms(A: T[M, K], B: T[N, K], C: T[M, N], D: T[K, M], T: dtype = f16, BM: const = 16, BN: const = 8,
             BK: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    acc = register(T[BM, BN]);
    acc2 = register(f32[BM, BN]);
    for k in range(cdiv(K, BK)) {
        a = register(T[BM, BK]);
        b = shared(T[BN, BK]);
        at = register(T[BK, BM]);
        copy(A[block_id(0), k], a);
        copy(B[block_id(1), k], b);
        copy(D[k, block_id(0)], at);
        gemm(a, b, acc, trans_b=true);
        gemm(at, b, acc2, trans_a=true, trans_b=true);
    }
    out = acc + T(acc2);
    copy(out, C[block_id(0), block_id(1)]);
}
"""

DEQUANT = """
kernel dq(W: {q}[N, K], S: T[N, KG], Z: {zt}[N, KG], Y: T[N, K], Q: i32[N, K], T: dtype = f16, G: const = 8,
          BN: const = 4, BK: const = 16)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{{
    w = register(T[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, group=G{zero});
    copy(w, Y[block_id(0), block_id(1)]);
    qi = register(i32[BN, BK]);
    copy(W[block_id(0), block_id(1)], qi);
    copy(qi, Q[block_id(0), block_id(1)]);
}}
"""


def _constructs(name):
    return lambda: tilelang.loads(CONSTRUCTS, "constructs.tile")[name]


def _unary(rng, dt):
    m, n = odd(rng, 9, 30), odd(rng, 17, 40)
    return [rand(rng, (m, n), "f32"), poisoned((m, n), "f32"), poisoned((m, n), dt)], {}


def _intops(rng, dt):
    m, n = odd(rng, 5, 15), odd(rng, 9, 30)
    return [rng.integers(-100, 100, (m, n)).astype(np.int32), np.full((m, n), -77, np.int32),
            rand(rng, (m, n), "f32", 80.0), np.full((m, n), 77, np.uint8), np.full((m, n), 77, np.int8), -3], {}


def _bcast(rng, dt):
    m, n = odd(rng, 17, 40), odd(rng, 9, 30)
    return [rand(rng, (m, n), dt), poisoned((n, m), dt), poisoned((m, n), "f32")], {}


def _rows(rng, dt):
    m, n = odd(rng, 4, 11), odd(rng, 100, 200)
    return [rand(rng, (m, n), dt), poisoned((m, n), dt)], {}


def _win3d(rng, dt):
    b, m, n = odd(rng, 3, 5), odd(rng, 5, 13), odd(rng, 9, 30)
    return [rand(rng, (b, m, n), dt), poisoned((b, n), dt), poisoned((b, m, n), dt)], {}


def _gemms(rng, dt):
    m, n, k = odd(rng, 17, 40), odd(rng, 9, 30), odd(rng, 17, 40)
    return [rand(rng, (m, k), dt), rand(rng, (n, k), dt, 0.3), poisoned((m, n), dt), rand(rng, (k, m), dt, 0.3)], {}


def _dequant(q, zero, zt, dtypes=("f16",)):
    """Packed (or 8-bit) weights of type `q`; zero points of dtype `zt` (packed too where `zt` is)."""
    def kernel():
        src = DEQUANT.format(q=q, zt=zt, zero=", zero=Z" if zero else "")
        return tilelang.loads(src, f"dequant_{q}.tile")["dq"]

    def make(rng, dt):
        bits, signed = int(q[1:]), q[0] == "i"
        n, k = odd(rng, 5, 11), odd(rng, 21, 45)
        kg = -(-k // 8)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        vals = rng.integers(lo, hi + 1, (n, k))
        w = pack(vals, bits) if bits < 8 else vals.astype(np.int8 if signed else np.uint8)
        z = pack(rng.integers(0, 4, (n, kg)), 3) if zt == "u3" else rand(rng, (n, kg), zt)
        args = [w, rand(rng, (n, kg), dt), z, poisoned((n, k), dt), np.full((n, k), -77, np.int32)]
        return args, dict(K=k, KG=kg) if bits < 8 else {}
    return Case(kernel, make, f"dequant:{q}" + ("+zero" if zero else "") + (f"({zt})" if zero else ""), dtypes)


CONSTRUCT_CASES = [Case(_constructs(n), mk, f"constructs:{n}") for n, mk in
                   [("unary", _unary), ("intops", _intops), ("bcast", _bcast), ("rows", _rows),
                    ("win3d", _win3d), ("gemms", _gemms)]]
CONSTRUCT_CASES += [_dequant(f"{s}{b}", zero, zt) for b in range(1, 9) for s, zero, zt in
                    [("u", b % 2 == 0, "f32"), ("i", b % 2 == 1, "f32" if b < 8 else "f16")]]
CONSTRUCT_CASES += [_dequant("u4", True, "u3", tuple(DTYPES))]  # zero points packed too; bf16 scales


# ----------------------------------------------------------------------------- running

def _seed(case_id: str, dt: str) -> int:
    return zlib.crc32(f"{case_id}@{dt}".encode())


def arguments(case: Case, dt: str):
    """The case's fresh arguments (seeded by its id) and constants."""
    return case.make(np.random.default_rng(_seed(case.id, dt)), dt)


def run(case: Case, dt: str, backend: str, target: str | None = None) -> list:
    args, consts = arguments(case, dt)
    case.kernel()(*args, backend=backend, target=target, **consts)
    return args


def compare(got: list, want: list) -> tuple[float, int]:
    """Worst normwise relative difference over the arrays, and elements NaN on one side only."""
    worst, nan_mismatch = 0.0, 0
    for g, w in zip(got, want):
        if not isinstance(w, np.ndarray):
            continue
        g64, w64 = np.asarray(g).astype(np.float64), np.asarray(w).astype(np.float64)
        gn, wn = np.isnan(g64), np.isnan(w64)
        nan_mismatch += int((gn != wn).sum())
        ok = ~(gn | wn)
        with np.errstate(invalid="ignore"):
            diff = np.where(g64 == w64, 0.0, g64 - w64)[ok]  # equal infinities (empty softmax splits) agree
        worst = max(worst, float(np.linalg.norm(diff) / max(np.linalg.norm(w64[ok & np.isfinite(w64)]), 1e-30)))
    return worst, nan_mismatch


def _lowerable(case: Case, dt: str) -> bool:
    """Whether the TVM backend takes the case's kernel; False when it refuses it as tests/refusals.py expects
    (any other refusal fails the test)."""
    args, consts = arguments(case, dt)
    k = case.kernel()
    tk = k.lower(**bind(k.ir, tuple(args), consts).consts)
    return not refused(case.id, "tvm", lambda: tvm_backend.generate(tk))


CPU_CASES = library_cases() + CONSTRUCT_CASES
RUNS = [pytest.param(c, dt, id=f"{c.id}-{dt}") for c in CPU_CASES for dt in c.dtypes]


@pytest.mark.parametrize("case,dt", RUNS)
def test_llvm_matches_reference(case, dt):
    if not _lowerable(case, dt):
        return
    got, want = run(case, dt, "tvm", "llvm"), run(case, dt, "reference")
    rel, nan_mismatch = compare(got, want)
    assert nan_mismatch == 0, f"{nan_mismatch} elements are NaN on one side only (written vs not)"
    assert rel < TOL[dt], rel


def test_torch_arrays_and_generated_text():
    """torch CPU tensors (bf16 included) pass through DLPack; the text is TVMScript with source lines."""
    torch = pytest.importorskip("torch")
    k = load("rmsnorm")["rmsnorm"]
    x, w = torch.randn(3, 77, dtype=torch.bfloat16), torch.randn(77, dtype=torch.bfloat16)
    y, y_ref = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    k(x, w, y, 1e-5, backend="tvm", BH=32)
    k(x, w, y_ref, 1e-5, backend="reference", BH=32)
    assert torch.allclose(y.float(), y_ref.float(), rtol=1e-2, atol=1e-2)
    text = tvm_backend.generate(k.lower(T="bf16", TW="bf16", TY="bf16", BH=32))
    assert text.startswith("# Generated by tilelang") and "from tvm.script" not in text
    assert "rmsnorm.tile:" in text and "T.parallel" in text and "T.vectorized" in text


def test_aliased_arguments_build_without_noalias():
    """R given as both the residual and the output: still correct (the build drops `noalias`)."""
    k = load("linear")["linear_residual"]
    rng = np.random.default_rng(3)
    x, w, r = rand(rng, (5, 33), "f16"), rand(rng, (19, 33), "f16", 0.3), rand(rng, (5, 19), "f16")
    want = r.copy()
    k(x, w, want.copy(), want, backend="reference", BM=16, BN=16, BK=16)
    k(x, w, r, r, backend="tvm", BM=16, BN=16, BK=16)
    assert compare([r], [want])[0] < TOL["f16"]


def test_aot_library_round_trip(tmp_path):
    """`build_aot` writes a library and its signature atomically; `load_aot` runs it."""
    k = load("softmax")["softmax"]
    rng = np.random.default_rng(5)
    x = rand(rng, (3, 45), "f16", 3.0)
    call = bind(k.ir, (x, poisoned(x.shape, "f16")), dict(BN=32))
    paths = tvm_backend.build_aot(k.lower(**call.consts), tmp_path)
    assert [p.suffixes[-2:] for p in paths] == [[".llvm", ".so"], [".llvm", ".json"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert tvm_backend.build_aot(k.lower(**call.consts), tmp_path) == paths  # same kernel: same file
    tvm_backend.load_aot(k.lower(**call.consts), paths[0])(call)
    want = poisoned(x.shape, "f16")
    k(x, want, backend="reference", BN=32)
    assert compare([call.arrays["Y"]], [want]) == (0.0, 0)


def test_aot_folder_runs_through_the_kernel_call_without_compiling(tmp_path, monkeypatch):
    """TILELANG_TVM_AOT: the call path runs the prebuilt library of exactly the specialization called;
    another specialization, or aliased arguments, is an error naming what is there."""
    from tilelang.backends.tvm.build import BUILD_SECONDS
    rng = np.random.default_rng(6)
    x, w, r = rand(rng, (5, 33), "f16"), rand(rng, (19, 33), "f16", 0.3), rand(rng, (5, 19), "f16")
    consts = dict(BM=16, BN=16, BK=16)
    k = load("linear")["linear_residual"]
    tvm_backend.build_aot(k.lower(**bind(k.ir, (x, w, r, r.copy()), consts).consts), tmp_path)
    monkeypatch.setenv("TILELANG_TVM_AOT", str(tmp_path))
    builds = len(BUILD_SECONDS)
    k = load("linear")["linear_residual"]  # a fresh kernel object: nothing cached
    got, want = poisoned(r.shape, "f16"), poisoned(r.shape, "f16")
    k(x, w, r, got, backend="tvm", **consts)
    k(x, w, r, want, backend="reference", **consts)
    assert compare([got], [want])[0] < TOL["f16"] and len(BUILD_SECONDS) == builds
    with pytest.raises(TileError, match=r"no prebuilt TVM library for kernel 'linear_residual' with BK=32.*"
                                        r"holds 'linear_residual' for: llvm BK=16"):
        k(x, w, r, got, backend="tvm", **dict(consts, BK=32))
    with pytest.raises(TileError, match="do not share memory"):
        k(x, w, r, r, backend="tvm", **consts)


def test_cuda_arrays_refused_by_llvm_build():
    k = load("elementwise")["add"]
    launcher = k.compile("tvm", "llvm")
    x = np.zeros((3, 5), np.float16)
    call = bind(k.ir, (x, x.copy(), x.copy()), {})
    call.infos["X"] = call.infos["X"].__class__(**{**call.infos["X"].__dict__, "device": "cuda:0"})
    with pytest.raises(TileError, match="target 'llvm'"):
        launcher(call)


# ----------------------------------------------------------------------------- CUDA

def _library_typed(stem: str | None = None):
    """Every library kernel the TVM backend takes (tests/refusals.py), lowered with its default constants
    (f16 where a dtype has no default); only those of kernels/<stem>.tile when given."""
    out = []
    for case in library_cases():
        if stem is not None and case.id.split(":")[0] != stem:
            continue
        k = case.kernel()
        tk = k.lower(**{c.name: "f16" for c in k.ir.consts if c.kind == "dtype" and c.default is None})
        if not refused(case.id, "tvm", lambda: tvm_backend.generate(tk, "cuda")):
            out.append(tk)
    return out


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (CUDA toolkit) on PATH")
@pytest.mark.parametrize("stem", sorted(p.stem for p in KERNELS.glob("*.tile")))
def test_cuda_lowering_compiles_for_sm90a(stem, tmp_path):
    """One module per library file for sm_90a: TVM builds it and nvcc accepts it. Files with a gemm
    (mma/ldmatrix inline PTX) go through ptxas (`-c`); the others to PTX (NVVM checks the C++)."""
    import tvm
    from tilelang.backends.tvm.build import tvm_target
    from tilelang.ir import nodes as N
    from tilelang.ir.visit import walk_stmts
    funcs, asm = {}, False
    for tk in _library_typed(stem):
        text = tvm_backend.generate(tk, "cuda")
        assert "T.thread_binding" in text and "threadIdx.x" in text
        funcs[f"tilelang_{tk.kernel.name}"] = tvm.script.from_source(text)
        asm |= any(isinstance(s, N.Gemm) for s in walk_stmts(tk.kernel.body))
    if not funcs:
        pytest.skip(f"the TVM backend takes no kernel of {stem}.tile (tests/refusals.py)")
    ex = tvm.compile(tvm.IRModule(funcs), target=tvm_target("cuda:sm_90a"))
    src = ex.mod.imports[0].inspect_source()
    assert all(f"{name}_kernel(" in src for name in funcs)
    (tmp_path / "lib.cu").write_text(src)
    r = subprocess.run(["nvcc", "-arch=sm_90a", *(["-c", "-o", "lib.o"] if asm else ["--ptx", "-o", "lib.ptx"]),
                        "lib.cu"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.parametrize("case,dt", RUNS)
def test_cuda_matches_reference(case, dt):
    torch = pytest.importorskip("torch")
    if not _lowerable(case, dt):
        return
    args, consts = arguments(case, dt)
    dev = [_torch(a).cuda() if isinstance(a, np.ndarray) else a for a in args]
    case.kernel()(*dev, backend="tvm", target="cuda", **consts)
    torch.cuda.synchronize()
    got = [_numpy(a) if isinstance(a, torch.Tensor) else a for a in dev]
    rel, nan_mismatch = compare(got, run(case, dt, "reference"))
    assert nan_mismatch == 0 and rel < TOL[dt], (rel, nan_mismatch)


def _torch(a: np.ndarray):
    import torch
    if a.dtype == NP_DTYPES["bf16"]:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _numpy(t) -> np.ndarray:
    import torch
    t = t.cpu()
    return t.view(torch.int16).numpy().view(NP_DTYPES["bf16"]) if t.dtype == torch.bfloat16 else t.numpy()


# Configurations scripts/tvm_aot_prebuild.py builds beyond the defaults (its EXTRA), on odd shapes:
# boundary tiles, and (K = 4104 + 4 for gemm) rows that are not 16-byte aligned, the element path.
GEMM_CONFIGS = [dict(BM=128, BN=128, BK=32, THREADS=256, STAGES=4), dict(BM=128, BN=256, BK=32, THREADS=256, STAGES=3),
                dict(BM=128, BN=128, BK=64, THREADS=256, STAGES=3), dict(BM=128, BN=256, BK=64, THREADS=256, STAGES=3)]


@pytest.mark.gpu
@pytest.mark.parametrize("k", [264, 268])
@pytest.mark.parametrize("pins", GEMM_CONFIGS, ids=lambda p: "x".join(str(v) for v in p.values()))
def test_cuda_gemm_configs_match_torch(pins, k):
    torch = pytest.importorskip("torch")
    g = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(200, k, device="cuda", generator=g).half()
    b = torch.randn(k, 328, device="cuda", generator=g).half()
    c = torch.empty(200, 328, device="cuda", dtype=torch.float16)
    load("gemm")["gemm"](a, b, c, backend="tvm", target="cuda", **pins)
    torch.testing.assert_close(c.float(), a.float() @ b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("pins", [dict(BN=16, BK=256), dict(BN=16, BK=128), dict(BN=32, BK=128), dict(BN=8, BK=256)],
                         ids=lambda p: "x".join(str(v) for v in p.values()))
def test_cuda_gemv_wNa16_configs_match_torch(pins):
    torch = pytest.importorskip("torch")
    from tilelang.quant import quantize
    rng = np.random.default_rng(0)
    w = rng.standard_normal((72, 384)).astype(np.float32)
    packed, scale, _ = quantize(w, 4, 128, zero_point=False)
    x = torch.randn(1, 384, device="cuda").bfloat16()
    s = torch.from_numpy(scale).cuda().bfloat16()
    y = torch.empty(1, 72, device="cuda", dtype=torch.bfloat16)
    load("gemm_wNa16")["gemv_wNa16"](x, torch.from_numpy(packed).cuda(), s, y, backend="tvm", target="cuda",
                                      TW="u4", G=128, **pins)
    q = torch.from_numpy(packed).cuda().to(torch.int32)
    q = torch.stack([q & 15, q >> 4], dim=-1).reshape(72, -1)[:, :384].float()
    ref = x.float() @ (q * s.float().repeat_interleave(128, dim=1)).T
    torch.testing.assert_close(y.float(), ref, rtol=3e-2, atol=0.1)
