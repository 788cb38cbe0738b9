"""gemm_wNa16[_zp] and gemv_wNa16[_zp] (kernels/gemm_wNa16.tile): Y = X @ dequant(W)^T, W packed N-bit."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import QUANT, TOL, linear, load, poisoned, quantized, rand, rel_err
from tilelang import TileError

TILES = dict(BM=16, BN=16, BK=32)
# (kernel, with zero points, its test tiles, shapes (m, k, n)): the GEMM for any M, the GEMV for small M
VARIANTS = [("gemm_wNa16", "gemm_wNa16_zp", TILES, [(1, 33, 45), (7, 100, 45), (70, 100, 45)]),
            ("gemv_wNa16", "gemv_wNa16_zp", dict(BN=16, BK=32), [(1, 33, 45), (7, 100, 45), (16, 64, 32)])]


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("kernel,kernel_zp,tiles,m,k,n",
                         [(kn, kz, t, *shape) for kn, kz, t, shapes in VARIANTS for shape in shapes])
@pytest.mark.parametrize("tw,group", QUANT)
@pytest.mark.parametrize("zp", [False, True])
def test_wNa16(dt, kernel, kernel_zp, tiles, m, k, n, tw, group, zp):
    rng = np.random.default_rng(m + k + n + len(tw) + (group or 0))
    g = group or k
    w, s, z, wf = quantized(rng, n, k, tw, g, zp, dt)
    x = rand(rng, (m, k), dt)
    y = poisoned((m, n), dt)
    if zp:
        load("gemm_wNa16")[kernel_zp](x, w, s, z, y, TW=tw, G=g, **tiles)
    else:
        load("gemm_wNa16")[kernel](x, w, s, y, TW=tw, G=g, **tiles)
    assert rel_err(y, linear(x, wf)) < TOL


def test_gemv_wNa16_default_tiles():
    rng = np.random.default_rng(5)
    w, s, _, wf = quantized(rng, 45, 300, "i4", 128, False, "bf16")
    x = rand(rng, (1, 300), "bf16")
    y = poisoned((1, 45), "bf16")
    load("gemm_wNa16")["gemv_wNa16"](x, w, s, y, TW="i4")
    assert rel_err(y, linear(x, wf)) < TOL


def test_gemm_wNa16_defaults_u4_g128_f32_scales_and_zeros():
    rng = np.random.default_rng(3)
    w, s, z, wf = quantized(rng, 45, 300, "u4", 128, True, "f32")
    x = rand(rng, (70, 300), "f16")
    y = poisoned((70, 45), "f32")
    load("gemm_wNa16")["gemm_wNa16_zp"](x, w, s, z.astype(np.float16), y)  # TW defaults to u4, G to 128
    assert rel_err(y, linear(x, wf)) < TOL


def test_gemm_wNa16_wrong_bit_width_is_reported():
    rng = np.random.default_rng(4)
    w, s, _, _ = quantized(rng, 45, 100, "u4", 32, False, "f16")
    x = rand(rng, (7, 100), "f16")
    with pytest.raises(TileError, match="'W'"):
        load("gemm_wNa16")["gemm_wNa16"](x, w, s, poisoned((7, 45), "f16"), TW="u2", G=32, **TILES)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("tw,group", QUANT)
@pytest.mark.parametrize("m,k,n", [(1, 33, 45), (3, 100, 45)])
def test_gemv_wNa16_residual_in_place(dt, tw, group, m, k, n):
    rng = np.random.default_rng(m + k + n + len(tw))
    g = group or k
    w, s, _, wf = quantized(rng, n, k, tw, g, False, dt)
    x, r = rand(rng, (m, k), dt), rand(rng, (m, n), dt)
    want = linear(x, wf, residual=r)
    load("gemm_wNa16")["gemv_wNa16_residual"](x, w, s, r, r, TW=tw, G=g, BN=16, BK=32)
    assert rel_err(r, want) < TOL
