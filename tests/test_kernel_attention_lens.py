"""attention_decode_lens and attention_decode_split_lens (kernels/attention.tile): decode attention whose
per-sequence lengths come from a tensor, on a query that is a view of the grouped QKV row."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, attention_decode_lens, grouped_qkv, load, poisoned, rand, rel_err


def _case(dt, b, hq, hkv, maxs, lens, d, rng):
    """A grouped QKV row [B, HKV, G + 2, D] (the decode attention's Q), caches poisoned past each length."""
    q, k, v = rand(rng, (b, hq, d), dt), rand(rng, (b, hkv, d), dt), rand(rng, (b, hkv, d), dt)
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    for i, n in enumerate(lens):
        kc[i, :, n:] = np.nan  # slots past a sequence's length hold garbage
        vc[i, :, n:] = np.nan
    return q, grouped_qkv(q, k, v), kc, vc, np.array(lens, np.int32).reshape(b, 1)


CASES = [(1, 1, 1, 16, [1], 16), (3, 4, 2, 50, [33, 1, 50], 24), (2, 8, 2, 40, [40, 7], 64),
         (3, 6, 3, 70, [17, 64, 3], 8)]


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("b,hq,hkv,maxs,lens,d", CASES)
def test_attention_decode_lens(dt, b, hq, hkv, maxs, lens, d):
    rng = np.random.default_rng(b + hq + maxs + d)
    q, qkv, kc, vc, n = _case(dt, b, hq, hkv, maxs, lens, d, rng)
    o = poisoned((b, hkv, hq // hkv, d), dt)
    load("attention")["attention_decode_lens"](qkv, kc, vc, o, n, d ** -0.5, BG=4, BN=8,
                                               BD=max(16, 1 << (d - 1).bit_length()))
    assert rel_err(o.reshape(b, hq, d), attention_decode_lens(q, kc, vc, lens, d ** -0.5)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("splits", [1, 3, 8])
@pytest.mark.parametrize("b,hq,hkv,maxs,lens,d", CASES[1:3])
def test_attention_decode_split_lens_and_combine(dt, splits, b, hq, hkv, maxs, lens, d):
    """Eight splits of a few key blocks: short sequences leave whole splits past their length."""
    rng = np.random.default_rng(splits + b + d)
    q, qkv, kc, vc, n = _case(dt, b, hq, hkv, maxs, lens, d, rng)
    g, bd = hq // hkv, max(16, 1 << (d - 1).bit_length())
    op = poisoned((b, hkv, splits, g, d), "f32")
    mp, lp = poisoned((b, hkv, splits, g), "f32"), poisoned((b, hkv, splits, g), "f32")
    kernels = load("attention")
    kernels["attention_decode_split_lens"](qkv, kc, vc, op, mp, lp, n, d ** -0.5, BG=4, BN=8, BD=bd)
    o = poisoned((b, hkv, g, d), dt)
    kernels["attention_decode_combine"](op, mp, lp, o, BG=4, BD=bd)
    assert rel_err(o.reshape(b, hq, d), attention_decode_lens(q, kc, vc, lens, d ** -0.5)) < TOL


def test_attention_decode_lens_default_tiles_one_row_per_kv_head():
    """GPT-2's shape: G = 1, so Q is the row viewed as [B, HKV, 3, D]."""
    rng = np.random.default_rng(5)
    q, qkv, kc, vc, n = _case("f16", 2, 3, 3, 130, [130, 65], 64, rng)
    o = poisoned((2, 3, 1, 64), "f16")
    load("attention")["attention_decode_lens"](qkv, kc, vc, o, n, 0.125, BD=64)
    assert rel_err(o.reshape(2, 3, 64), attention_decode_lens(q, kc, vc, [130, 65], 0.125)) < TOL
