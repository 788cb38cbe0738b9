"""gemv (kernels/gemv.tile): Y = X @ W^T for small M, K split over threads and reduced."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, linear, load, poisoned, rand, rel_err


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", [(1, 33, 45), (7, 100, 45), (16, 256, 32), (3, 1000, 17)])
def test_gemv(dt, m, k, n):
    rng = np.random.default_rng(m + k + n)
    x, w = rand(rng, (m, k), dt), rand(rng, (n, k), dt)
    y = poisoned((m, n), dt)
    load("gemv")["gemv"](x, w, y, BN=16, BK=32)
    assert rel_err(y, linear(x, w)) < TOL


def test_gemv_default_tiles_f32_out():
    rng = np.random.default_rng(0)
    x, w = rand(rng, (2, 300), "f16"), rand(rng, (45, 300), "f16")
    y = poisoned((2, 45), "f32")
    load("gemv")["gemv"](x, w, y)
    assert rel_err(y, linear(x, w)) < TOL
