"""The CUDA backend's f16/bf16 pair dequantization (prelude `dequant_pairs`, `cuda/dequant.py` `_pair_run`).

4-bit (and, into f16, 8-bit) fields become pairs by prmt/lop3 into a magic exponent and two packed
fmas; the result must equal the reference interpreter's f32 formula rounded to the tile's dtype
bit for bit: into register and shared tiles, unsigned and signed fields, integral zero points (pair
path), fractional or large ones and scales a T cannot hold (f32 fallback), tails past K (element path).
On the CPU emulator (g++) and, with `-m gpu`, on the GPU.
"""
from __future__ import annotations

import shutil

import ml_dtypes
import numpy as np
import pytest

import tilelang
from tilelang.backends import cuda
from tilelang.quant import pack
from tilelang.runtime.args import bind

from test_backend_cuda import _from_torch, _to_torch, reference

NP = {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16), "f32": np.dtype(np.float32)}

SRC = """
kernel pairs(W: TW[N, K], S: TS[N, KG], Z: TS[N, KG], O: T[N, K], P: T[N, K], TW: dtype = u4, T: dtype = f16,
             TS: dtype = f16, G: const = 32, BN: const = 4, BK: const = 128)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{
    w = register(T[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, group=G, zero=Z);
    copy(w, O[block_id(0), block_id(1)]);
    ws = shared(T[BN, BK]);
    dequant(W[block_id(0), block_id(1)], ws, scale=S, group=G);
    copy(ws, P[block_id(0), block_id(1)]);
}
"""

# (T, TW, TS): the pair path's combinations, an f32 scale (checked per run) and bf16 bytes (f32 path)
CASES = [("f16", "u4", "f16"), ("f16", "i4", "f16"), ("bf16", "u4", "bf16"), ("bf16", "i4", "bf16"),
         ("f16", "u8", "f16"), ("f16", "i8", "f16"), ("bf16", "u4", "f32"), ("bf16", "i8", "bf16")]


def _args(t: str, tw: str, ts: str, n: int = 7, k: int = 300, g: int = 32):
    rng = np.random.default_rng(hash((t, tw, ts)) % 2**32)
    bits, signed = int(tw[1:]), tw[0] == "i"
    q = rng.integers(-(1 << (bits - 1)) if signed else 0, (1 << (bits - 1)) if signed else 1 << bits, (n, k))
    w = pack(q, bits) if bits < 8 else q.astype(np.int8 if signed else np.uint8)
    kg = -(-k // g)
    s = (rng.standard_normal((n, kg)) * 0.02).astype(np.float32)
    s[0, 0], s[0, 1], s[1, 0] = 3e-7, 1e4 if t == "bf16" else 3e3, -0.0  # subnormal, overflowing, -0 products
    if ts == "f32":
        s = s.astype(NP[t]).astype(np.float32)
        s[2, :2] = [0.1, 1 / 3]  # not a bf16: the f32 path
    z = rng.integers(-8, 9, (n, kg)).astype(np.float32)
    z[3, 0], z[3, 1], z[4, 0], z[4, 1] = 2.5, -0.25, 600, 65  # fractional, past the pair path's range
    nan = np.full((n, k), np.nan, NP[t])
    return [w, s.astype(NP[ts]), z.astype(NP[ts]), nan, nan.copy()], dict(TW=tw, T=t, TS=ts)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16)


def test_pair_source_uses_the_bit_tricks():
    k = tilelang.loads(SRC, "pairs.tile")["pairs"]
    code = cuda.generate(k.lower(TW="u4", T="bf16", TS="bf16"))
    assert "if (tl::pair_zero_ok<__nv_bfloat16>(zp))" in code  # the zero's run: checked, f32 fallback
    # runs of 16 fields (8-byte loads) keep all 32 threads busy, in registers and in shared memory
    assert code.count("tl::dequant_pairs<__nv_bfloat16, 4, false, 2>(h, q.v") == 2
    assert "= make_uint4(h[4], h[5], h[6], h[7]);" in code  # 16-byte stores into the shared tile


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")
@pytest.mark.parametrize("t,tw,ts", CASES)
def test_pairs_equal_the_interpreter_bit_for_bit_on_the_emulator(t, tw, ts):
    from tilelang.backends.cuda.emulate import Emulated
    k = tilelang.loads(SRC, "pairs.tile")["pairs"]
    args, consts = _args(t, tw, ts)
    ref = reference(k, args, consts)
    out = [a.copy() for a in args]
    Emulated(k.lower(**bind(k.ir, tuple(args), consts).consts))(*out, **consts)
    for i in (3, 4):
        assert np.array_equal(_bits(out[i]), _bits(ref[i])), f"argument {i}"


@pytest.mark.gpu
@pytest.mark.parametrize("t,tw,ts", CASES)
def test_pairs_equal_the_interpreter_bit_for_bit_on_gpu(t, tw, ts):
    pytest.importorskip("cupy")
    pytest.importorskip("torch")
    k = tilelang.loads(SRC, "pairs.tile")["pairs"]
    args, consts = _args(t, tw, ts)
    ref = reference(k, args, consts)
    gpu = [_to_torch(a) for a in args]
    k(*gpu, backend="cuda", **consts)
    for i in (3, 4):
        assert np.array_equal(_bits(_from_torch(gpu[i], args[i])), _bits(ref[i])), f"argument {i}"
