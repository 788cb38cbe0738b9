"""attention_prefill_qkv (kernels/attention.tile): causal prefill attention read straight from the grouped
QKV projection [B, S, HKV * (G + 2) * D], written as [B, S, HQ * D]."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, attention_prefill, grouped_qkv, load, poisoned, rand, rel_err


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("b,hq,hkv,s,d,tiles", [
    (1, 1, 1, 1, 16, dict(BM=16, BN=16)),
    (2, 4, 2, 37, 16, dict(BM=16, BN=8)),
    (1, 6, 2, 20, 32, dict(BM=8, BN=16)),
    (2, 3, 3, 33, 16, dict(BM=16, BN=16)),
])
def test_attention_prefill_qkv(dt, b, hq, hkv, s, d, tiles):
    rng = np.random.default_rng(b + hq + s + d)
    q, k, v = rand(rng, (b, s, hq, d), dt), rand(rng, (b, s, hkv, d), dt), rand(rng, (b, s, hkv, d), dt)
    o = poisoned((b, s, hq * d), dt)
    load("attention")["attention_prefill_qkv"](grouped_qkv(q, k, v).reshape(b, s, -1), o, d ** -0.5, D=d, **tiles)
    ref = attention_prefill(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)), d ** -0.5)
    assert rel_err(o, ref.transpose(0, 2, 1, 3).reshape(b, s, -1)) < TOL


def test_attention_prefill_qkv_default_tiles():
    rng = np.random.default_rng(0)
    q, k, v = rand(rng, (1, 70, 4, 64), "f16", 2.0), rand(rng, (1, 70, 1, 64), "f16"), rand(rng, (1, 70, 1, 64), "f16")
    o = poisoned((1, 70, 256), "f16")
    load("attention")["attention_prefill_qkv"](grouped_qkv(q, k, v).reshape(1, 70, -1), o, 0.25)
    ref = attention_prefill(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)), 0.25)
    assert rel_err(o, ref.transpose(0, 2, 1, 3).reshape(1, 70, -1)) < TOL
