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
