"""rotary (kernels/rotary.tile): Llama rotate_half rotary embedding on [tokens, heads, head_dim]."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, load, poisoned, rand, rel_err, rope_tables, rotary
from tilelang import TileError


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("nt,nh,d", [(1, 1, 16), (5, 3, 16), (7, 5, 64)])
@pytest.mark.parametrize("pos0", [0, 9])
def test_rotary(dt, nt, nh, d, pos0):
    rng = np.random.default_rng(nt * 100 + nh * 10 + d)
    x = rand(rng, (nt, nh, d), dt)
    cos, sin = (t.astype(np.float32) for t in rope_tables(pos0 + nt + 3, d))
    o = poisoned((nt, nh, d), dt)
    load("rotary")["rotary"](x, cos, sin, o, pos0, D=d, BH=2)
    assert rel_err(o, rotary(x, cos, sin, pos0)) < TOL


def test_rotary_in_place_with_hf_full_width_tables():
    """HF's cos/sin repeat the half-dim frequencies to [P, D]; only the first half is read."""
    rng = np.random.default_rng(0)
    x = rand(rng, (6, 4, 128), "bf16")
    cos, sin = rope_tables(6, 128)
    full_cos = np.concatenate([cos, cos], axis=-1).astype(np.float16)
    full_sin = np.concatenate([sin, sin], axis=-1).astype(np.float16)
    ref = rotary(x, full_cos, full_sin)
    load("rotary")["rotary"](x, full_cos, full_sin, x, 0)  # default D=128, BH=8
    assert rel_err(x, ref) < TOL


def test_rotary_rejects_a_head_dim_other_than_D():
    rng = np.random.default_rng(1)
    x = rand(rng, (2, 2, 32), "f16")
    cos, sin = (t.astype(np.float32) for t in rope_tables(2, 32))
    with pytest.raises(TileError, match=r"along dim 2 \('D'\), expected 64"):
        load("rotary")["rotary"](x, cos, sin, poisoned(x.shape, "f16"), 0, D=64)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("nt,hkv,g,d", [(1, 1, 1, 16), (5, 2, 3, 16), (3, 4, 1, 64)])
def test_rotary_qk_rotates_queries_and_key_in_place_not_value(dt, nt, hkv, g, d):
    rng = np.random.default_rng(nt + hkv + g + d)
    x = rand(rng, (nt, hkv, g + 2, d), dt)
    positions = rng.integers(0, 50, nt)
    cos, sin = (t[positions].astype(np.float32) for t in rope_tables(50, d))  # each token's row
    ref = x.astype(np.float64).copy()
    ref[:, :, :g + 1] = rotary(x[:, :, :g + 1].reshape(nt, -1, d), cos, sin).reshape(nt, hkv, g + 1, d)
    value = x[:, :, g + 1].copy()
    load("rotary")["rotary_qk"](x, cos, sin, D=d, BH=max(2, 1 << (g + 1).bit_length()))
    assert rel_err(x, ref) < TOL
    assert np.array_equal(x[:, :, g + 1], value)
