"""add_bias, add_bias_gelu, add_bias_residual (kernels/elementwise.tile): the epilogues of matmuls that have
none of their own (the quantized ones, the plain forms)."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, f64, gelu_tanh, load, poisoned, rand, rel_err


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n", [(1, 33), (7, 100), (70, 45)])
@pytest.mark.parametrize("name", ["add_bias", "add_bias_gelu", "add_bias_residual"])
def test_bias_epilogue(dt, m, n, name):
    rng = np.random.default_rng(m + n)
    x, b, r = rand(rng, (m, n), dt), rand(rng, (n,), "f32"), rand(rng, (m, n), dt)
    y = poisoned((m, n), dt)
    args = [x, b] + ([r] if name == "add_bias_residual" else []) + [y]
    load("elementwise")[name](*args, BM=4, BN=32)
    want = f64(x) + f64(b)
    want = gelu_tanh(want) if name == "add_bias_gelu" else want + f64(r) if name == "add_bias_residual" else want
    assert rel_err(y, want) < TOL


def test_add_bias_residual_in_place_default_tiles():
    rng = np.random.default_rng(0)
    x, b, r = rand(rng, (9, 700), "bf16"), rand(rng, (700,), "bf16"), rand(rng, (9, 700), "bf16")
    want = f64(x) + f64(b) + f64(r)
    load("elementwise")["add_bias_residual"](x, b, r, r)
    assert rel_err(r, want) < TOL
