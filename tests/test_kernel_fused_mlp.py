"""fused_mlp_gate_up + linear_residual (the Llama MLP) and silu_mul (kernels/fused_mlp.tile)."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, f64, llama_mlp, load, poisoned, quantized, rand, rel_err, rmsnorm, silu

TILES = dict(BM=16, BN=16, BK=16)


def _weights(rng, dt, h, i):
    return (rand(rng, (h,), dt), rand(rng, (i, h), dt, h ** -0.5), rand(rng, (i, h), dt, h ** -0.5),
            rand(rng, (h, i), dt, i ** -0.5))


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,h,i", [(1, 40, 72), (7, 33, 45), (20, 64, 48)])
def test_fused_mlp(dt, m, h, i):
    rng = np.random.default_rng(m + h + i)
    x, res = rand(rng, (m, h), dt), rand(rng, (m, h), dt)
    wn, wg, wu, wd = _weights(rng, dt, h, i)
    hid = poisoned((m, i), dt)
    load("fused_mlp")["fused_mlp_gate_up"](x, wn, wg, wu, hid, 1e-6, **TILES)
    n = rmsnorm(x, wn, 1e-6)
    assert rel_err(hid, silu(n @ f64(wg).T) * (n @ f64(wu).T)) < TOL
    y = poisoned((m, h), dt)
    load("linear")["linear_residual"](hid, wd, res, y, **TILES)
    assert rel_err(y, llama_mlp(x, wn, wg, wu, wd, res, 1e-6)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,h,i", [(1, 40, 72), (21, 33, 45)])
def test_prefill_mlp_is_rmsnorm_then_mlp_gate_up(dt, m, h, i):
    rng = np.random.default_rng(m * h + i)
    x = rand(rng, (m, h), dt)
    wn, wg, wu, _ = _weights(rng, dt, h, i)
    n, hid = poisoned((m, h), dt), poisoned((m, i), dt)
    load("rmsnorm")["rmsnorm"](x, wn, n, 1e-6, BH=32)
    load("fused_mlp")["mlp_gate_up"](n, wg, wu, hid, **TILES)
    want = rmsnorm(x, wn, 1e-6)
    assert rel_err(hid, silu(want @ f64(wg).T) * (want @ f64(wu).T)) < TOL


def test_fused_mlp_default_tiles():
    rng = np.random.default_rng(0)
    x, res = rand(rng, (3, 100), "bf16"), rand(rng, (3, 100), "bf16")
    wn, wg, wu, wd = _weights(rng, "bf16", 100, 90)
    hid, y = poisoned((3, 90), "bf16"), poisoned((3, 100), "bf16")
    load("fused_mlp")["fused_mlp_gate_up"](x, wn, wg, wu, hid, 1e-5)
    load("linear")["linear_residual"](hid, wd, res, y)
    assert rel_err(y, llama_mlp(x, wn, wg, wu, wd, res, 1e-5)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n", [(1, 33), (7, 100), (70, 45)])
def test_silu_mul(dt, m, n):
    rng = np.random.default_rng(m + n)
    g, u = rand(rng, (m, n), dt, 3.0), rand(rng, (m, n), dt)
    out = poisoned((m, n), dt)
    load("fused_mlp")["silu_mul"](g, u, out, BM=4, BN=32)
    assert rel_err(out, silu(g) * f64(u)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("tw,group", [("i4", 32), ("u4", None), ("i2", 64)])
@pytest.mark.parametrize("m,h,i", [(1, 33, 45), (2, 100, 70)])
def test_fused_mlp_gate_up_wNa16(dt, tw, group, m, h, i):
    rng = np.random.default_rng(m + h + i + len(tw))
    g = group or h
    wg, sg, _, wgf = quantized(rng, i, h, tw, g, False, dt)
    wu, su, _, wuf = quantized(rng, i, h, tw, g, False, dt)
    x, wn = rand(rng, (m, h), dt, 2.0), rand(rng, (h,), dt)
    hid = poisoned((m, i), dt)
    load("fused_mlp")["fused_mlp_gate_up_wNa16"](x, wn, wg, sg, wu, su, hid, 1e-5, TW=tw, G=g, BN=16, BK=32)
    n = rmsnorm(x, wn, 1e-5)
    assert rel_err(hid, silu(n @ wgf.T) * (n @ wuf.T)) < TOL
