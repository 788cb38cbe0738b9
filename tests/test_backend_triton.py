"""Triton backend: every kernel of kernels/*.tile, plus kernels probing the language's corner cases,
against the reference interpreter on random odd shapes, in f16 and bf16.

CPU runs use Triton's interpreter, which works only when TRITON_INTERPRET=1 was set before
triton was first imported (Triton decorates its own `tl.sum`, `tl.cdiv`, ... at import), and
which must be off for compiled GPU runs.  So the interpreter checks run in one child process
started with the variable set (this file run as a script), whatever other test modules
imported before; each test then checks its own case's numbers.  The GPU tests (`-m gpu`)
compile for real in this process and compare with the reference interpreter and with torch.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # the child process: the interpreter must be on before triton is imported
    os.environ["TRITON_INTERPRET"] = "1"

import json
import subprocess
import sys
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kernel_refs import KERNELS, NP_DTYPES, load, poisoned, rand  # noqa: E402
from tolerance import Accumulation, accumulation, allowed, ulp  # noqa: E402
from library_cases import PAGED, SAMPLING, SPLITK  # noqa: E402
from library_cases import (args_bias, args_binary, args_decode, args_decode_combine, args_decode_lens,  # noqa: E402
                           args_decode_split, args_decode_split_lens, args_gemv, args_linear, args_mlp,
                           args_mlp_gate_up, args_norm, args_norm_linear, args_positions, args_prefill,
                           args_prefill_qkv, args_quant, args_quant_fused, args_rotary, args_rotary_qk, args_softmax, odd)
from library_cases import args_embedding, args_kv_append, args_kv_append_slots, args_scatter_rows  # noqa: E402
from library_cases import args_prefill_cached  # noqa: E402

import tilelang  # noqa: E402
from tilelang.quant import pack  # noqa: E402

# ----------------------------------------------------------------------------- corner-case kernels

SEMANTICS = """
# Integer // % cdiv truncate toward zero, on tiles and on scalars (block ids, loop indices, parameters).
kernel intdiv(X: i32[M, N], Y: i32[M, N], Q: i32[M, N], R: i32[M, N], C: i32[M, N], S: i32[M, N], d: i32,
              BM: const = 4, BN: const = 8)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(i32[BM, BN]);
    y = register(i32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(Y[block_id(0), block_id(1)], y, pad=1);
    q = x // y;
    r = x % y;
    c = cdiv(x, y);
    copy(q, Q[block_id(0), block_id(1)]);
    copy(r, R[block_id(0), block_id(1)]);
    copy(c, C[block_id(0), block_id(1)]);
    a = block_id(0) - 3;
    s = (a // 2) * 1000 + (a % 3) * 100 + (d // -3) * 10 + cdiv(a, 2) + (d % -4) * 10000 + cdiv(d, -3) * 7
        + (((d << 2) ^ (a & 3) | 1) >> 1) * 100000 + max(a, d) - min(a, -d) * 3;
    sv = register(i32[BM, BN]);
    for i in range(-3, 2) {
        t = i // 2 + i % 2 + cdiv(i, 2) * 3;
        sv = sv + x // d + x % d + t + s;
    }
    copy(sv, S[block_id(0), block_id(1)]);
}

# Narrow integers wrap like the interpreter's int64 arithmetic cast back; comparisons, where, bool logic.
kernel narrow(X: i8[M, N], U: u8[M, N], Y: i8[M, N], V: u8[M, N], Z: i32[M, 1], W: u8[M, N], k: i32,
              BM: const = 4, BN: const = 16)
    grid(cdiv(M, BM)) threads(32)
{
    x = register(i8[BM, BN]);
    u = register(u8[BM, BN]);
    copy(X[block_id(0), 0], x);
    copy(U[block_id(0), 0], u);
    y = x * 3 + 100 - k;
    copy(y, Y[block_id(0), 0]);
    v = ((u >> 3) & 5) | (u << 2) ^ 7;
    copy(v, V[block_id(0), 0]);
    z = i32(sum(x, axis=1)) + i32(max(u, axis=1)) * 1000 + i32(min(x, axis=1)) * 100000;
    copy(z, Z[block_id(0), 0]);
    b = (x < 0) & (u > 100) | (x == 5);
    w = where(b, u // 3, u + k) + u8(b);
    copy(w, W[block_id(0), 0]);
}

# Float functions computed in f32 and rounded to T after every operation; results stacked in O.
kernel floats(X: T[M, N], Y: T[M, N], O: T[F, M, N], alpha: f32, T: dtype = f16, BM: const = 4, BN: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(64)
{
    x = register(T[BM, BN]);
    y = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(Y[block_id(0), block_id(1)], y);
    p = abs(x) + 0.5;
    i = block_id(0);
    j = block_id(1);
    r0 = exp(x) + exp2(y);
    copy(r0, O[0, i, j]);
    r1 = log(p) + log2(p);
    copy(r1, O[1, i, j]);
    r2 = sqrt(p) + rsqrt(p);
    copy(r2, O[2, i, j]);
    r3 = tanh(x) + sigmoid(y);
    copy(r3, O[3, i, j]);
    r4 = silu(x) + gelu(y);
    copy(r4, O[4, i, j]);
    r5 = gelu_tanh(x) + erf(y);
    copy(r5, O[5, i, j]);
    r6 = sin(x) + cos(y);
    copy(r6, O[6, i, j]);
    r7 = recip(p) - x * alpha;
    copy(r7, O[7, i, j]);
    r8 = x ** 2 + pow(p, 0.7) - y ** 3;
    copy(r8, O[8, i, j]);
    r9 = pow(x, y) + pow(x, -1.0) + x ** 5;
    copy(r9, O[9, i, j]);
    r10 = max(x, y) - min(x, y) * 2.0;
    copy(r10, O[10, i, j]);
    r11 = x // (abs(y) + 0.25) + x % (abs(y) + 0.25);
    copy(r11, O[11, i, j]);
    r12 = where(x > y, x * y, x / (abs(y) + 1.0));
    copy(r12, O[12, i, j]);
    r13 = T(f32(x) * 1.001 + 0.1) - x;
    copy(r13, O[13, i, j]);
    r14 = -x + alpha + T(where(x > 0.0, 1.0, -0.5));
    copy(r14, O[14, i, j]);
    sc = exp(alpha) + sqrt(alpha) + f32(i32(alpha * 10.0)) + max(alpha, 0.5) + alpha ** 2.0 + alpha // 0.1
        + alpha % 0.1 + where(alpha > 0.3, 1.0, 2.0) + tanh(-alpha);
    r15 = x + sc;
    copy(r15, O[15, i, j]);
}

# Reductions over either axis, iota/full/zeros/broadcast/trans, and 3-d tiles.
kernel shapes(X: T[M, N], A: f32[M, NB], B: T[1, N], C: f32[M, N], X3: T[K, M, N], S3: f32[K, M, NB],
              T: dtype = f16, BM: const = 8, BN: const = 16)
    grid(cdiv(N, BN)) threads(64)
{
    x = register(T[BM, BN]);
    copy(X[0, block_id(0)], x, pad=-2.0);
    s1 = sum(x, axis=1);
    mx = max(x, axis=0);
    mn = min(x, axis=1);
    a = f32(s1) + f32(mn);
    copy(a, A[0, block_id(0)]);
    copy(mx, B[0, block_id(0)]);
    io = f32(iota((BM, BN), axis=1)) + f32(iota((BM, BN), axis=0)) * 100.0;
    t = trans(broadcast(full(f32[1, BM], 0.5), (BN, BM)));
    xf = register(f32[BM, BN]);
    copy(x, xf);
    c = io * t + zeros(f32[BM, BN]) + xf;
    copy(c, C[0, block_id(0)]);
    x3 = register(T[2, BM, BN]);
    for kk in range(cdiv(K, 2)) {
        copy(X3[kk, 0, block_id(0)], x3);
        y3 = f32(x3) * 2.0 + 1.0;
        s3 = sum(y3, axis=2);
        copy(s3, S3[kk, 0, block_id(0)]);
    }
}

# Windows past the edges in every direction (negative tile indices too) read as pad.
kernel pads(X: T[M, N], P: f32[M, N], Q: f32[M, N], v: f32, T: dtype = f16, BM: const = 4, BN: const = 8)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    acc = register(f32[BM, BN]);
    acc2 = register(f32[BM, BN], init=v);
    x = register(f32[BM, BN]);
    acc = acc + full(f32[BM, 1], v * 2.0);
    for di in range(-1, 2) {
        copy(X[block_id(0) + di, block_id(1) - di], x, pad=0.1);
        acc = acc + x;
        copy(X[block_id(0) - di, block_id(1) + di], x, pad=v);
        acc2 = acc2 + x * 3.0;
    }
    copy(acc, P[block_id(0), block_id(1)]);
    copy(acc2, Q[block_id(0), block_id(1)]);
}

# Bit-packed integers of any width 1..8: copied as integers, and dequantized with group scales and zeros.
kernel unpack(W: TW[N, K], S: f32[N, KG], Z: f32[N, KG], Q: i32[N, K], D: T[N, K], TW: dtype = u4,
              T: dtype = f16, G: const = 4, BN: const = 4, BK: const = 16)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{
    q = register(i32[BN, BK]);
    copy(W[block_id(0), block_id(1)], q);
    copy(q, Q[block_id(0), block_id(1)]);
    w = register(T[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, group=G, zero=Z);
    copy(w, D[block_id(0), block_id(1)]);
}

# Names that clash with Triton and Python; gemm of transposed f32 operands into an f16 accumulator.
kernel names(A: f32[K, M], B: f32[N, K], C: T[M, N], T: dtype = f16, BM: const = 16, BN: const = 16,
             BK: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(128)
{
    tl = register(f32[BK, BM]);
    triton = register(f32[BN, BK]);
    _o1 = register(T[BM, BN]);
    for lambda in range(cdiv(K, BK)) {
        copy(A[lambda, block_id(0)], tl);
        copy(B[block_id(1), lambda], triton);
        gemm(tl, triton, _o1, trans_a=true, trans_b=true);
    }
    copy(_o1, C[block_id(0), block_id(1)]);
}
"""


@lru_cache(maxsize=None)
def kernels(file: str) -> dict:
    return tilelang.loads(SEMANTICS, "semantics.tile") if file == "semantics" else load(file)


# ----------------------------------------------------------------------------- cases


def ints(rng, shape, dtype, lo, hi):
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def sentinel(shape, dtype):
    """An integer output buffer whose untouched elements stay recognizable."""
    return np.full(shape, -77 if np.dtype(dtype).kind == "i" else 77, dtype)


@dataclass(frozen=True)
class Case:
    file: str
    kernel: str
    make: Callable  # (rng, dt) -> (args, consts)
    note: str = ""
    dtypes: tuple[str, ...] = ("f16", "bf16")

    @property
    def id(self) -> str:
        return f"{self.file}:{self.kernel}" + (f"[{self.note}]" if self.note else "")


def _gemm(tiles, out=None):
    def make(rng, dt):
        m, k, n = odd(rng, 17, 40), odd(rng, 17, 50), odd(rng, 17, 40)
        return [rand(rng, (m, k), dt), rand(rng, (k, n), dt), poisoned((m, n), out or dt)], tiles
    return make


def _intdiv(rng, dt):
    m, n = odd(rng, 21, 35), odd(rng, 9, 21)
    y = ints(rng, (m, n), np.int32, 1, 9) * rng.choice([-1, 1], size=(m, n)).astype(np.int32)
    outs = [sentinel((m, n), np.int32) for _ in range(4)]
    return [ints(rng, (m, n), np.int32, -50, 50), y, *outs, -7], {}


def _narrow(rng, dt):
    m, n = odd(rng, 5, 11), odd(rng, 9, 15)
    args = [ints(rng, (m, n), np.int8, -128, 127), ints(rng, (m, n), np.uint8, 0, 255),
            sentinel((m, n), np.int8), sentinel((m, n), np.uint8), sentinel((m, 1), np.int32),
            sentinel((m, n), np.uint8), 5]
    return args, {}


def _floats(rng, dt):
    m, n = odd(rng, 5, 11), odd(rng, 17, 40)
    return [rand(rng, (m, n), dt), rand(rng, (m, n), dt), poisoned((16, m, n), dt), 0.37], {}


def _shapes(rng, dt):
    m, n, k = odd(rng, 3, 7), odd(rng, 17, 40), odd(rng, 3, 5)
    nb = -(-n // 16)
    args = [rand(rng, (m, n), dt), poisoned((m, nb), "f32"), poisoned((1, n), dt), poisoned((m, n), "f32"),
            rand(rng, (k, m, n), dt), poisoned((k, m, nb), "f32")]
    return args, {}


def _pads(rng, dt):
    m, n = odd(rng, 9, 15), odd(rng, 17, 30)
    return [rand(rng, (m, n), dt), poisoned((m, n), "f32"), poisoned((m, n), "f32"), -3.5], {}


def _unpack(tw):
    def make(rng, dt):
        bits, signed = int(tw[1:]), tw[0] == "i"
        n, k = odd(rng, 5, 11), odd(rng, 21, 45)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        w = pack(rng.integers(lo, hi + 1, size=(n, k)), bits)
        if tw == "i8":
            w = w.view(np.int8)
        kg = -(-k // 4)
        args = [w, rand(rng, (n, kg), "f32"), rand(rng, (n, kg), "f32", 3.0), sentinel((n, k), np.int32),
                poisoned((n, k), dt)]
        return args, dict(TW=tw)
    return make


def _names(rng, dt):
    m, n, k = odd(rng, 17, 40), odd(rng, 17, 40), odd(rng, 17, 50)
    return [rand(rng, (k, m), "f32"), rand(rng, (n, k), "f32"), poisoned((m, n), dt)], {}


CASES = [
    Case("gemm", "gemm", _gemm(dict(BM=16, BN=16, BK=16))),
    Case("gemm", "gemm", _gemm(dict(BM=8, BN=16, BK=8), "f32"), "small_tiles_f32_out"),
    Case("linear", "linear", args_linear(None)),
    Case("linear", "linear_residual", args_linear("residual")),
    Case("linear", "linear_bias", args_linear("bias")),
    Case("linear", "linear_bias_gelu", args_linear("bias")),
    Case("linear", "linear_bias_residual", args_linear("bias_residual")),
    Case("gemv", "gemv", args_gemv),
    Case("gemm_wNa16", "gemm_wNa16", args_quant("u4", 32, False, False)),
    Case("gemm_wNa16", "gemm_wNa16", args_quant("i3", 32, False, False), "i3"),
    Case("gemm_wNa16", "gemm_wNa16_zp", args_quant("u2", None, True, False)),
    Case("gemm_wNa16", "gemv_wNa16", args_quant("u8", None, False, True)),
    Case("gemm_wNa16", "gemv_wNa16_zp", args_quant("i5", 64, True, True)),
    Case("rmsnorm", "rmsnorm", args_norm("rmsnorm")),
    Case("rmsnorm", "add_rmsnorm", args_norm("add_rmsnorm")),
    Case("layernorm", "layernorm", args_norm("layernorm")),
    Case("layernorm", "add_layernorm", args_norm("add_layernorm")),
    Case("norm_linear", "rmsnorm_linear", args_norm_linear("rms")),
    Case("norm_linear", "rmsnorm_gemv_wNa16", args_quant_fused("norm")),
    Case("gemm_wNa16", "gemv_wNa16_residual", args_quant_fused("residual")),
    Case("fused_mlp", "fused_mlp_gate_up_wNa16", args_quant_fused("mlp")),
    Case("norm_linear", "layernorm_linear_bias", args_norm_linear("layer")),
    Case("norm_linear", "layernorm_linear_bias_gelu", args_norm_linear("layer")),
    Case("softmax", "softmax", args_softmax),
    Case("rotary", "rotary", args_rotary),
    Case("rotary", "rotary_qk", args_rotary_qk),
    Case("attention", "attention_prefill", args_prefill),
    Case("attention", "attention_decode", args_decode),
    Case("attention", "attention_decode_split", args_decode_split),
    Case("attention", "attention_decode_combine", args_decode_combine),
    Case("attention", "attention_prefill_qkv", args_prefill_qkv),
    Case("attention", "attention_decode_lens", args_decode_lens),
    Case("attention", "attention_decode_split_lens", args_decode_split_lens),
    Case("attention_chunked", "attention_prefill_cached", args_prefill_cached),
    Case("kv_cache", "decode_positions", args_positions, dtypes=("int",)),
    Case("kv_cache", "kv_append", args_kv_append),
    Case("kv_cache", "kv_append_slots", args_kv_append_slots),
    Case("embedding", "embedding", args_embedding),
    Case("embedding", "scatter_rows", args_scatter_rows),
    Case("fused_mlp", "fused_mlp_gate_up", args_mlp),
    Case("fused_mlp", "mlp_gate_up", args_mlp_gate_up),
    Case("fused_mlp", "silu_mul", args_binary),
    Case("elementwise", "add", args_binary),
    *[Case("elementwise", f"add_bias{k}", args_bias(k[1:])) for k in ("", "_gelu", "_residual")],
    Case("semantics", "intdiv", _intdiv, dtypes=("int",)),
    Case("semantics", "narrow", _narrow, dtypes=("int",)),
    Case("semantics", "floats", _floats),
    Case("semantics", "shapes", _shapes),
    Case("semantics", "pads", _pads),
    *[Case("semantics", "unpack", _unpack(tw), tw, dtypes=("f16",)) for tw in
      ("u1", "i1", "u2", "i3", "u3", "i4", "u5", "i5", "u6", "i7", "u7", "i8", "u8")],
    Case("semantics", "unpack", _unpack("i6"), "i6", dtypes=("bf16",)),
    Case("semantics", "names", _names),
    *[Case(f, k, make) for f, k, make in SPLITK + SAMPLING + PAGED],
]


def _generic(file: str, name: str) -> Case:
    """A case for a kernel the table lacks: random odd dims and tensors, tile consts of 16."""
    from tilelang.ir import nodes as N
    from tilelang.ir.dtypes import DType

    def make(rng, dt):
        k = kernels(file)[name].ir
        dims = {d: odd(rng, 3, 40) for d in k.dim_symbols}
        args = []
        for p in k.params:
            if isinstance(p, N.TensorParam):
                shape = tuple(d if isinstance(d, int) else dims[d] for d in p.dims)
                fixed = p.dtype.name if isinstance(p.dtype, DType) and p.dtype.name in NP_DTYPES else None
                args.append(rand(rng, shape, fixed or dt))
            elif isinstance(p, N.ScalarParam):
                args.append(0.5 if p.dtype.is_float else 3)
        return args, {c.name: 16 for c in k.consts if c.kind == "int" and c.name.startswith("B")}
    return Case(file, name, make, "generic")


def all_cases() -> list[Case]:
    """The table plus a generic case for every other kernel in kernels/*.tile (and one for `add`,
    so that the generic maker itself stays tested). Kernels reading a weight in the plan's packed
    order (`@ packed`) run on the CUDA backend and the interpreter only: Triton refuses them
    (tests/test_kernel_wNa16_packed.py checks the refusal)."""
    have = {(c.file, c.kernel) for c in CASES}
    return CASES + [_generic("elementwise", "add")] + [
        _generic(f.stem, name) for f in sorted(KERNELS.glob("*.tile")) for name, k in kernels(f.stem).items()
        if (f.stem, name) not in have and all(p.storage != "packed" for p in k.ir.tensors)]


# ----------------------------------------------------------------------------- running and comparing

def _seed(case_id: str, dt: str) -> int:
    return zlib.crc32(f"{case_id}@{dt}".encode())


def _torch(a: np.ndarray, device: str):
    import torch
    if a.dtype == NP_DTYPES["bf16"]:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(a).to(device)


def _numpy(t) -> np.ndarray:
    import torch
    t = t.cpu()
    return t.view(torch.int16).numpy().view(NP_DTYPES["bf16"]) if t.dtype == torch.bfloat16 else t.numpy()


def run_case(case: Case, dt: str, backend: str, device: str = "cpu") -> list:
    """Run a case on fresh inputs seeded by its id; the (numpy) arguments after the run."""
    args, consts = case.make(np.random.default_rng(_seed(case.id, dt)), dt)
    if device != "cpu":
        args = [_torch(a, device) if isinstance(a, np.ndarray) else a for a in args]
    kernels(case.file)[case.kernel](*args, backend=backend, **consts)
    return [_numpy(a) if device != "cpu" and not isinstance(a, (int, float)) else a for a in args]


def case_sums(case: Case, dt: str) -> tuple[Accumulation, int]:
    """What the case's kernel sums, and the longest sum's length: bounded by the largest extent of
    any argument (every reduction and gemm of the library runs over an argument's axis)."""
    args, consts = case.make(np.random.default_rng(_seed(case.id, dt)), dt)
    k = kernels(case.file)[case.kernel]
    tk = k.lower(**k.tuned(*args, backend="reference", **consts))
    return accumulation(tk), max((max(a.shape, default=1) for a in args if isinstance(a, np.ndarray)), default=1)


def compare(got: list, want: list, acc: Accumulation | None = None, n: int = 1, extra_ulps: float = 0) -> dict:
    """Over the array arguments: `excess`, the worst |got - want| as a fraction of what two correct
    backends may differ by (tolerance.allowed, plus `extra_ulps` for a function computed another
    way); the worst normwise relative difference; and the number of elements that are NaN on one
    side only."""
    out = {"excess": 0.0, "rel": 0.0, "nan_mismatch": 0}
    for g, w in zip(got, want):
        if not isinstance(w, np.ndarray):
            continue
        g64, w64 = np.asarray(g).astype(np.float64), np.asarray(w).astype(np.float64)
        gn, wn = np.isnan(g64), np.isnan(w64)
        out["nan_mismatch"] += int((gn != wn).sum())
        ok = ~(gn | wn) & ~(np.isinf(g64) & (g64 == w64))
        diff = np.abs(g64[ok] - w64[ok])
        if diff.size:
            bound = (allowed(w, acc, n) if acc is not None else np.zeros(w.shape))[ok] + extra_ulps * ulp(w)[ok]
            excess = np.where(diff == 0, 0.0, diff / np.maximum(bound, 1e-300))
            out["excess"] = max(out["excess"], float(excess.max()))
            out["rel"] = max(out["rel"], float(np.linalg.norm(diff) / max(np.linalg.norm(w64[ok]), 1e-30)))
    return out


def _worker(keys: list[str]) -> None:
    """Child process: run the cases on Triton's interpreter and on the reference; print JSON."""
    by_id = {c.id: c for c in all_cases()}
    results = {}
    for key in keys:
        case_id, dt = key.rsplit("@", 1)
        case = by_id[case_id]
        try:
            acc, n = case_sums(case, dt)
            results[key] = compare(run_case(case, dt, "triton"), run_case(case, dt, "reference"), acc, n,
                                   EXTRA_ULPS.get(case_id, 0))
        except Exception as e:  # reported by the test that owns the case
            results[key] = {"error": f"{type(e).__name__}: {e}"}
    print("RESULTS " + json.dumps(results))


# ----------------------------------------------------------------------------- tests

KEYS = [f"{c.id}@{dt}" for c in all_cases() for dt in c.dtypes]
# The interpreter does the reference's f32 arithmetic elementwise in the same order (bf16 patched to
# round like the GPU), so kernels without sums agree bit for bit; sums (numpy's BLAS and pairwise
# sums, in CPU-dependent orders) agree within tests/tolerance.py's bound. tanh is computed from exp:
# up to 4 ulps apart near 0.
EXTRA_ULPS = {"linear:linear_bias_gelu": 4, "elementwise:add_bias_gelu": 4,
              "norm_linear:layernorm_linear_bias_gelu": 4}


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, __file__, *KEYS], capture_output=True, text=True, env=env,
                          cwd=HERE.parent, timeout=900)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, f"interpreter worker failed:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULTS "):])


@pytest.mark.parametrize("key", KEYS)
def test_interpreted_triton_matches_reference(interpreted, key):
    r = interpreted[key]
    assert "error" not in r, r.get("error")
    assert r["nan_mismatch"] == 0, f"{r['nan_mismatch']} elements are NaN on one side only (written vs not)"
    assert r["excess"] <= 1.0, r


def test_the_comparison_fails_a_wrong_sum():
    """The bound lets summation order through and nothing more: an f32 gemm result that was summed
    in f16, or one element off by a small fraction of the output's scale, fails."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((37, 53)).astype(np.float16), rng.standard_normal((53, 29)).astype(np.float16)
    want = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float32)
    acc = Accumulation(sums=True, u_acc=2.0**-24, u_narrow=0.0)
    reordered = (a.astype(np.float32)[:, ::-1] @ b.astype(np.float32)[::-1]).astype(np.float32)
    assert compare([reordered], [want], acc, 53)["excess"] <= 1.0
    in_f16 = np.zeros_like(want, dtype=np.float16)
    for k in range(53):
        in_f16 = (in_f16 + a[:, k:k + 1] * b[k:k + 1]).astype(np.float16)
    assert compare([in_f16.astype(np.float32)], [want], acc, 53)["excess"] > 1.0
    nudged = want.copy()
    nudged[5, 7] += 1e-3 * np.abs(want).max()
    assert compare([nudged], [want], acc, 53)["excess"] > 1.0
    assert compare([reordered], [want], Accumulation(False, 2.0**-24, 0.0), 53)["excess"] > 1.0


# On the GPU, tl.dot and reductions sum in other orders and exp/log are approximate: a few
# elements differ by one rounding of the output dtype.
GPU_TOL = {"f16": 2e-3, "bf16": 1.6e-2, "int": 0.0}


def _cuda_compiled():
    from tilelang.backends.triton.launcher import interpreting
    if interpreting():
        pytest.skip("TRITON_INTERPRET=1 was set when triton was imported: this process cannot compile")


@pytest.mark.gpu
@pytest.mark.parametrize("key", KEYS)
def test_compiled_triton_matches_reference_on_gpu(key):
    _cuda_compiled()
    case_id, dt = key.rsplit("@", 1)
    case = {c.id: c for c in all_cases()}[case_id]
    r = compare(run_case(case, dt, "triton", "cuda"), run_case(case, dt, "reference"))
    assert r["nan_mismatch"] == 0, r
    assert r["rel"] <= GPU_TOL[dt] * (10 if case.file == "semantics" and case.kernel == "floats" else 1), r


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_compiled_kernels_match_torch_on_gpu(dt):
    import torch
    import torch.nn.functional as F
    _cuda_compiled()
    torch.manual_seed(0)
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dt]
    tol = {"f16": 5e-3, "bf16": 2e-2}[dt]

    def close(out, ref):
        err = (torch.linalg.norm(out.double() - ref.double()) / torch.linalg.norm(ref.double())).item()
        assert err < tol, err

    a, b = torch.randn(333, 517, dtype=tdt, device="cuda"), torch.randn(517, 259, dtype=tdt, device="cuda")
    c = torch.empty(333, 259, dtype=tdt, device="cuda")
    load("gemm")["gemm"](a, b, c)
    close(c, a.float() @ b.float())

    x, w = torch.randn(77, 300, dtype=tdt, device="cuda"), torch.randn(200, 300, dtype=tdt, device="cuda") * 0.1
    y = torch.empty(77, 200, dtype=tdt, device="cuda")
    load("linear")["linear"](x, w, y)
    close(y, F.linear(x.float(), w.float()))

    x = torch.randn(37, 1500, dtype=tdt, device="cuda") * 3
    y = torch.empty_like(x)
    load("softmax")["softmax"](x, y)
    close(y, torch.softmax(x.float(), dim=-1))

    wn = torch.randn(1500, dtype=tdt, device="cuda")
    load("rmsnorm")["rmsnorm"](x, wn, y, 1e-5)
    close(y, F.rms_norm(x.float(), (1500,), wn.float(), 1e-5))

    q = torch.randn(2, 8, 300, 64, dtype=tdt, device="cuda")
    k, v = torch.randn(2, 2, 300, 64, dtype=tdt, device="cuda"), torch.randn(2, 2, 300, 64, dtype=tdt, device="cuda")
    o = torch.empty_like(q)
    load("attention")["attention_prefill"](q, k, v, o, 0.125, BD=64)
    ref = F.scaled_dot_product_attention(q.float(), k.float().repeat_interleave(4, 1), v.float().repeat_interleave(4, 1),
                                         is_causal=True, scale=0.125)
    close(o, ref)


if __name__ == "__main__":
    _worker(sys.argv[1:])
