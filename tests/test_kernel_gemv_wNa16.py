"""gemv_wNa16 and gemv_wNa16_zp (kernels/gemm_wNa16.tile): the small-M quantized linear layer."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import QUANT, TOL, linear, load, poisoned, quantized, rand, rel_err

TILES = dict(BN=16, BK=32)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", [(1, 33, 45), (7, 100, 45), (16, 64, 32)])
@pytest.mark.parametrize("tw,group", QUANT)
@pytest.mark.parametrize("zp", [False, True])
def test_gemv_wNa16(dt, m, k, n, tw, group, zp):
    rng = np.random.default_rng(m + k + n + len(tw) + (group or 0))
    g = group or k
    w, s, z, wf = quantized(rng, n, k, tw, g, zp, dt)
    x = rand(rng, (m, k), dt)
    y = poisoned((m, n), dt)
    if zp:
        load("gemm_wNa16")["gemv_wNa16_zp"](x, w, s, z, y, TW=tw, G=g, **TILES)
    else:
        load("gemm_wNa16")["gemv_wNa16"](x, w, s, y, TW=tw, G=g, **TILES)
    assert rel_err(y, linear(x, wf)) < TOL


def test_gemv_wNa16_default_tiles():
    rng = np.random.default_rng(5)
    w, s, _, wf = quantized(rng, 45, 300, "i4", 128, False, "bf16")
    x = rand(rng, (1, 300), "bf16")
    y = poisoned((1, 45), "bf16")
    load("gemm_wNa16")["gemv_wNa16"](x, w, s, y, TW="i4")
    assert rel_err(y, linear(x, wf)) < TOL
