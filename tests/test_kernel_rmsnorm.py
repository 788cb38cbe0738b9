"""rmsnorm and add_rmsnorm (kernels/rmsnorm.tile): rows of any length, f32 statistics."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, f64, load, poisoned, rand, rel_err, rmsnorm

SHAPES = [(1, 33), (7, 100), (70, 45), (3, 256)]
TILES = dict(BM=2, BH=32)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,h", SHAPES)
def test_rmsnorm(dt, m, h):
    rng = np.random.default_rng(m * 100 + h)
    x, w = rand(rng, (m, h), dt, 2.0), rand(rng, (h,), dt)
    y = poisoned((m, h), dt)
    load("rmsnorm")["rmsnorm"](x, w, y, 1e-6, **TILES)
    assert rel_err(y, rmsnorm(x, w, 1e-6)) < TOL


def test_rmsnorm_applies_eps_and_f32_weight():
    rng = np.random.default_rng(0)
    x, w = rand(rng, (7, 100), "f16", 1e-3), rand(rng, (100,), "f32")
    y = poisoned((7, 100), "f32")
    load("rmsnorm")["rmsnorm"](x, w, y, 1e-6, **TILES)
    assert rel_err(y, rmsnorm(x, w, 1e-6)) < TOL
    assert rel_err(y, rmsnorm(x, w, 0.0)) > 0.1  # eps is as large as mean(x^2) here


def test_rmsnorm_default_tiles():
    rng = np.random.default_rng(1)
    x, w = rand(rng, (3, 1500), "bf16"), rand(rng, (1500,), "bf16")
    y = poisoned((3, 1500), "bf16")
    load("rmsnorm")["rmsnorm"](x, w, y, 1e-5)
    assert rel_err(y, rmsnorm(x, w, 1e-5)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,h", SHAPES)
def test_add_rmsnorm_updates_residual_in_place(dt, m, h):
    rng = np.random.default_rng(m * 10 + h)
    x, r, w = rand(rng, (m, h), dt), rand(rng, (m, h), dt, 3.0), rand(rng, (h,), dt)
    s = f64(x) + f64(r)
    y = poisoned((m, h), dt)
    load("rmsnorm")["add_rmsnorm"](x, r, w, y, 1e-6, **TILES)
    assert rel_err(r, s) < TOL
    assert rel_err(y, rmsnorm(s, w, 1e-6)) < TOL
