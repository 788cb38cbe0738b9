"""attention_prefill (kernels/attention.tile): causal flash attention with GQA."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, attention_prefill, load, poisoned, rand, rel_err


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("b,hq,hkv,s,d,tiles", [
    (1, 1, 1, 1, 16, dict(BM=16, BN=16, BD=16)),
    (2, 4, 2, 37, 24, dict(BM=16, BN=8, BD=32)),
    (1, 3, 1, 20, 64, dict(BM=8, BN=16, BD=64)),
    (1, 2, 2, 33, 8, dict(BM=16, BN=16, BD=16)),
])
def test_attention_prefill(dt, b, hq, hkv, s, d, tiles):
    rng = np.random.default_rng(b + hq + s + d)
    q, k, v = rand(rng, (b, hq, s, d), dt), rand(rng, (b, hkv, s, d), dt), rand(rng, (b, hkv, s, d), dt)
    o = poisoned(q.shape, dt)
    load("attention")["attention_prefill"](q, k, v, o, d ** -0.5, **tiles)
    assert rel_err(o, attention_prefill(q, k, v, d ** -0.5)) < TOL


def test_attention_prefill_default_tiles_large_scores():
    rng = np.random.default_rng(0)
    q, k, v = (rand(rng, (1, 2, 70, 128), "f16", 3.0) for _ in range(3))
    o = poisoned(q.shape, "f16")
    load("attention")["attention_prefill"](q, k, v, o, 0.5)
    assert rel_err(o, attention_prefill(q, k, v, 0.5)) < TOL
