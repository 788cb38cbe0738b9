"""linear, linear_residual, linear_bias, linear_bias_gelu (kernels/linear.tile): Y = X @ W^T + epilogue."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, gelu_tanh, linear, load, poisoned, rand, rel_err

TILES = dict(BM=16, BN=16, BK=16)
SHAPES = [(1, 33, 45), (7, 100, 45), (70, 100, 45)]


def _case(dt, m, k, n):
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    return rng, rand(rng, (m, k), dt), rand(rng, (n, k), dt, 0.3)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_linear(dt, m, k, n):
    _, x, w = _case(dt, m, k, n)
    y = poisoned((m, n), dt)
    load("linear")["linear"](x, w, y, **TILES)
    assert rel_err(y, linear(x, w)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_linear_residual(dt, m, k, n):
    rng, x, w = _case(dt, m, k, n)
    r = rand(rng, (m, n), dt)
    y = poisoned((m, n), dt)
    load("linear")["linear_residual"](x, w, r, y, **TILES)
    assert rel_err(y, linear(x, w, residual=r)) < TOL


def test_linear_residual_in_place():
    rng, x, w = _case("f16", 7, 100, 45)
    r = rand(rng, (7, 45), "f16")
    ref = linear(x, w, residual=r)
    load("linear")["linear_residual"](x, w, r, r, **TILES)
    assert rel_err(r, ref) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("name", ["linear_bias", "linear_bias_gelu"])
def test_linear_bias_epilogues(dt, m, k, n, name):
    rng, x, w = _case(dt, m, k, n)
    b = rand(rng, (n,), dt)
    y = poisoned((m, n), dt)
    load("linear")[name](x, w, b, y, **TILES)
    ref = linear(x, w, b, act=gelu_tanh if name.endswith("gelu") else None)
    assert rel_err(y, ref) < TOL


def test_linear_bias_gelu_default_tiles_f32_out():
    rng, x, w = _case("bf16", 70, 100, 45)
    b = rand(rng, (45,), "f32")
    y = poisoned((70, 45), "f32")
    load("linear")["linear_bias_gelu"](x, w, b, y)
    assert rel_err(y, linear(x, w, b, act=gelu_tanh)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_linear_bias_residual_in_place(dt, m, k, n):
    rng, x, w = _case(dt, m, k, n)
    b, r = rand(rng, (n,), dt), rand(rng, (m, n), dt)
    ref = linear(x, w, b, residual=r)
    load("linear")["linear_bias_residual"](x, w, b, r, r, **TILES)
    assert rel_err(r, ref) < TOL
