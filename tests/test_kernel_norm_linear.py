"""rmsnorm_linear, layernorm_linear_bias, layernorm_linear_bias_gelu (kernels/norm_linear.tile): a norm fused
into the decode GEMM after it, against the norm and the linear layer computed apart."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, gelu_tanh, layernorm, linear, load, poisoned, quantized, rand, rel_err, rmsnorm

SHAPES = [(1, 33, 45), (5, 100, 70), (16, 64, 33)]


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_rmsnorm_linear(dt, m, k, n):
    rng = np.random.default_rng(m + k + n)
    x, wn, w = rand(rng, (m, k), dt, 2.0), rand(rng, (k,), dt), rand(rng, (n, k), dt, 0.3)
    y = poisoned((m, n), dt)
    load("norm_linear")["rmsnorm_linear"](x, wn, w, y, 1e-5, BN=32, BK=64)
    assert rel_err(y, linear(rmsnorm(x, wn, 1e-5), w)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("name", ["layernorm_linear_bias", "layernorm_linear_bias_gelu"])
def test_layernorm_linear_bias(dt, m, k, n, name):
    rng = np.random.default_rng(m * k + n)
    x = rand(rng, (m, k), dt, 2.0) + 3.0  # far from zero: the variance pass is centered
    wn, bn, w, b = rand(rng, (k,), dt), rand(rng, (k,), dt), rand(rng, (n, k), dt, 0.3), rand(rng, (n,), dt)
    y = poisoned((m, n), dt)
    load("norm_linear")[name](x, wn, bn, w, b, y, 1e-5, BN=32, BK=64)
    ref = linear(layernorm(x, wn, bn, 1e-5), w, b, act=gelu_tanh if name.endswith("gelu") else None)
    assert rel_err(y, ref) < TOL


def test_default_tiles_f32_out():
    rng = np.random.default_rng(3)
    x, wn, w = rand(rng, (2, 1030), "bf16"), rand(rng, (1030,), "bf16"), rand(rng, (77, 1030), "bf16", 0.1)
    y = poisoned((2, 77), "f32")
    load("norm_linear")["rmsnorm_linear"](x, wn, w, y, 1e-6)
    assert rel_err(y, linear(rmsnorm(x, wn, 1e-6), w)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("tw,group", [("i4", 32), ("u8", None), ("i3", 64)])
@pytest.mark.parametrize("m,k,n", [(1, 33, 45), (2, 100, 70)])
def test_rmsnorm_gemv_wNa16(dt, tw, group, m, k, n):
    rng = np.random.default_rng(m + k + n + len(tw))
    g = group or k
    w, s, _, wf = quantized(rng, n, k, tw, g, False, dt)
    x, wn = rand(rng, (m, k), dt, 2.0), rand(rng, (k,), dt)
    y = poisoned((m, n), dt)
    load("norm_linear")["rmsnorm_gemv_wNa16"](x, wn, w, s, y, 1e-5, TW=tw, G=g, BN=16, BK=32)
    assert rel_err(y, linear(rmsnorm(x, wn, 1e-5), wf)) < TOL
