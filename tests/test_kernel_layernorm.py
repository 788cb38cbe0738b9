"""layernorm (kernels/layernorm.tile): weight and bias, rows of any length, f32 statistics."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, f64, layernorm, load, poisoned, rand, rel_err


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,h", [(1, 33), (7, 100), (70, 45), (3, 256)])
def test_layernorm(dt, m, h):
    rng = np.random.default_rng(m * 100 + h)
    x = rand(rng, (m, h), dt, 2.0)
    w, b = rand(rng, (h,), dt), rand(rng, (h,), dt)
    y = poisoned((m, h), dt)
    load("layernorm")["layernorm"](x, w, b, y, 1e-5, BM=2, BH=32)
    assert rel_err(y, layernorm(x, w, b, 1e-5)) < TOL


def test_layernorm_large_mean_default_tiles():
    """Rows far from zero: the variance pass is centered, so nothing cancels (E[x^2] - mean^2
    in f32 would lose the variance entirely here)."""
    rng = np.random.default_rng(2)
    x = rand(rng, (5, 1100), "f32") + np.float32(1e4)
    w, b = rand(rng, (1100,), "f32"), rand(rng, (1100,), "f32")
    y = poisoned((5, 1100), "f32")
    load("layernorm")["layernorm"](x, w, b, y, 1e-5)
    assert rel_err(y, layernorm(x, w, b, 1e-5)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,h", [(1, 33), (7, 100), (3, 256)])
def test_add_layernorm_updates_residual_in_place(dt, m, h):
    rng = np.random.default_rng(m * 10 + h)
    x, r = rand(rng, (m, h), dt), rand(rng, (m, h), dt, 3.0)
    w, b = rand(rng, (h,), dt), rand(rng, (h,), dt)
    s = f64(x) + f64(r)
    y = poisoned((m, h), dt)
    load("layernorm")["add_layernorm"](x, r, w, b, y, 1e-5, BM=2, BH=32)
    assert rel_err(r, s) < TOL
    assert rel_err(y, layernorm(s, w, b, 1e-5)) < TOL
