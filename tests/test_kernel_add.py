"""add (kernels/elementwise.tile): Z = X + Y."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, f64, load, poisoned, rand, rel_err


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n", [(1, 33), (7, 100), (70, 45)])
def test_add(dt, m, n):
    rng = np.random.default_rng(m + n)
    x, y = rand(rng, (m, n), dt), rand(rng, (m, n), dt)
    z = poisoned((m, n), dt)
    load("elementwise")["add"](x, y, z, BM=4, BN=32)
    assert rel_err(z, f64(x) + f64(y)) < TOL


def test_add_in_place_default_tiles():
    rng = np.random.default_rng(0)
    x, y = rand(rng, (9, 700), "bf16"), rand(rng, (9, 700), "bf16")
    ref = f64(x) + f64(y)
    load("elementwise")["add"](x, y, x)
    assert rel_err(x, ref) < TOL
