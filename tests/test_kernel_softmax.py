"""softmax (kernels/softmax.tile): rows of any length, numerically stable."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, load, poisoned, rand, rel_err, softmax


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n", [(1, 33), (7, 100), (70, 45), (3, 256), (2, 1)])
def test_softmax(dt, m, n):
    rng = np.random.default_rng(m * 100 + n)
    x = rand(rng, (m, n), dt, 3.0)
    y = poisoned((m, n), dt)
    load("softmax")["softmax"](x, y, BM=2, BN=32)
    assert rel_err(y, softmax(x)) < TOL


def test_softmax_large_logits_are_stable():
    """exp(400) overflows f32: only the max-subtracted form gets this right."""
    rng = np.random.default_rng(0)
    x = rand(rng, (4, 100), "f16", 200.0)
    x[:, 7] = 400.0
    y = poisoned((4, 100), "f32")
    load("softmax")["softmax"](x, y, BM=2, BN=32)
    assert rel_err(y, softmax(x)) < TOL


def test_softmax_default_tiles():
    rng = np.random.default_rng(1)
    x = rand(rng, (3, 2500), "bf16", 4.0)
    y = poisoned((3, 2500), "bf16")
    load("softmax")["softmax"](x, y)
    assert rel_err(y, softmax(x)) < TOL
