"""embedding (kernels/embedding.tile): rows of a table at ids read from a tensor; ids outside the
table give zero rows, and nothing outside the table is read."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import embedding, load, poisoned, rand


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("v,d,tiles", [(13, 200, dict(BD=64)), (50, 33, {}), (7, 1000, dict(BD=256))])
def test_embedding_rows_and_out_of_range_ids(dt, id_dtype, v, d, tiles):
    rng = np.random.default_rng(v + d)
    table = rand(rng, (v, d), dt)
    ids = np.concatenate([rng.integers(0, v, 9), [-1, v, v + 100, -(2 ** 31) + 1, 0, v - 1]]).astype(id_dtype)
    out = poisoned((len(ids), d), dt)
    load("embedding")["embedding"](ids, table, out, **tiles)
    np.testing.assert_array_equal(out, embedding(ids, table))


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("seed", [0, 1])
def test_scatter_rows_writes_rows_at_indices_and_nothing_outside(dt, seed):
    from library_cases import run_scatter
    for got, want in zip(*run_scatter("embedding", "scatter_rows", dt, seed)):
        np.testing.assert_array_equal(got, want)


def test_scatter_rows_of_int64_tokens_into_a_token_buffer():
    """The models' use: sampled token ids into a flat [B * maxs] buffer viewed as rows of one."""
    tokens = np.zeros((3 * 10, 1), np.int64)
    load("embedding")["scatter_rows"](np.array([[7], [8], [9]], np.int64), tokens, np.array([4, 15, 29], np.int64))
    assert tokens[[4, 15, 29], 0].tolist() == [7, 8, 9] and tokens.sum() == 24
