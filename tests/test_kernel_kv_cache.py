"""decode_positions (kernels/kv_cache.tile): a decode step's positions, token-buffer and cache rows,
advanced on the device."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import decode_positions, load


@pytest.mark.parametrize("b,hkv,maxs,tiles", [(1, 1, 16, dict(BB=16, BC=32)), (3, 5, 100, dict(BB=2, BC=4)),
                                              (20, 8, 2048, {})])
def test_decode_positions(b, hkv, maxs, tiles):
    pos = np.random.default_rng(b).integers(0, maxs - 1, (b, 1)).astype(np.int32)
    want = decode_positions(pos[:, 0], hkv, maxs)
    cur = np.full((b, 1), -7, np.int32)
    tok, slots = np.full((2, b), -7, np.int64), np.full((b, 2 * hkv), -7, np.int64)
    load("kv_cache")["decode_positions"](pos, cur, tok, slots, maxs, **tiles)
    for got, ref in zip((pos[:, 0], cur[:, 0], tok, slots), want):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["kv_append", "kv_append_slots"])
def test_kv_append_writes_only_the_new_rows_at_their_positions(name, dt, seed):
    """kv_append: rows at each sequence's position, one running past the cache's end; kv_append_slots:
    a grouped QKV row's key and value into the rows its slots name, some outside the cache."""
    from library_cases import run_scatter
    for got, want in zip(*run_scatter("kv_cache", name, dt, seed)):
        np.testing.assert_array_equal(got, want)
