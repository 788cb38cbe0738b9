"""attention_decode (kernels/attention.tile): one query token against a KV cache, GQA."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, attention_decode, load, poisoned, rand, rel_err


def _run(dt, b, hq, hkv, maxs, seq_len, d, rng, **tiles):
    q = rand(rng, (b, hq, d), dt)
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    kc[:, :, seq_len:] = np.nan  # slots past seq_len hold garbage
    vc[:, :, seq_len:] = np.nan
    o = poisoned(q.shape, dt)
    g = hq // hkv
    load("attention")["attention_decode"](q.reshape(b, hkv, g, d), kc, vc, o.reshape(b, hkv, g, d),
                                          seq_len, d ** -0.5, **tiles)
    return rel_err(o, attention_decode(q, kc, vc, seq_len, d ** -0.5))


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("b,hq,hkv,maxs,seq_len,d", [
    (1, 1, 1, 16, 1, 16),
    (2, 4, 2, 50, 33, 24),
    (1, 8, 2, 40, 40, 64),
    (3, 6, 3, 70, 17, 8),
])
def test_attention_decode(dt, b, hq, hkv, maxs, seq_len, d):
    rng = np.random.default_rng(b + hq + maxs + seq_len + d)
    assert _run(dt, b, hq, hkv, maxs, seq_len, d, rng, BG=4, BN=8, BD=max(16, 1 << (d - 1).bit_length())) < TOL


@pytest.mark.parametrize("seq_len", [1, 64, 65, 130])
def test_attention_decode_default_tiles(seq_len):
    assert _run("f16", 1, 4, 1, 130, seq_len, 128, np.random.default_rng(seq_len)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("splits", [1, 3, 8])
@pytest.mark.parametrize("b,hq,hkv,maxs,seq_len,d", [(2, 4, 2, 50, 33, 24), (1, 8, 2, 40, 40, 64)])
def test_attention_decode_split_and_combine(dt, splits, b, hq, hkv, maxs, seq_len, d):
    """Eight splits of five or fewer key blocks leave some splits empty."""
    rng = np.random.default_rng(splits + b + d)
    g, bd = hq // hkv, max(16, 1 << (d - 1).bit_length())
    q = rand(rng, (b, hq, d), dt)
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    kc[:, :, seq_len:] = np.nan
    vc[:, :, seq_len:] = np.nan
    op = poisoned((b, hkv, splits, g, d), "f32")
    mp, lp = poisoned((b, hkv, splits, g), "f32"), poisoned((b, hkv, splits, g), "f32")
    kernels = load("attention")
    kernels["attention_decode_split"](q.reshape(b, hkv, g, d), kc, vc, op, mp, lp, seq_len, d ** -0.5,
                                      BG=4, BN=8, BD=bd)
    o = poisoned(q.shape, dt)
    kernels["attention_decode_combine"](op, mp, lp, o.reshape(b, hkv, g, d), BG=4, BD=bd)
    assert rel_err(o, attention_decode(q, kc, vc, seq_len, d ** -0.5)) < TOL
