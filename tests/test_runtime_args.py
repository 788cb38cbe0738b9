"""Call-time argument checks: every mismatch names the argument and the kernel."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tilelang import TileError, loads

KS = loads("""
kernel axpy(X: T[M, N], Y: T[M, N], a: f32, T: dtype = f16, BM: const = 8, BN: const = 8)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(T[BM, BN]);
    y = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(Y[block_id(0), block_id(1)], y);
    y = y + x * a;
    copy(y, Y[block_id(0), block_id(1)]);
}
""", "axpy.tile")
axpy = KS["axpy"]


def test_torch_and_numpy_arguments_run_in_place():
    x, y = torch.randn(9, 11, dtype=torch.bfloat16), torch.randn(9, 11, dtype=torch.bfloat16)
    want = (y.float() + x.float() * 2).bfloat16()
    axpy(x, y, 2.0)
    torch.testing.assert_close(y, want, rtol=1e-2, atol=1e-2)
    xn, yn = np.ones((3, 5), np.float16), np.zeros((3, 5), np.float16)
    axpy(xn, yn, a=0.5)
    assert (yn == 0.5).all()


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.ones((3, 5), np.float16), np.ones((3, 6), np.float16), 1.0), {},
     "has 6 along dim 1 ('N'), expected 5 (from X.shape[1])"),
    ((np.ones((3, 5), np.float16), np.ones((3, 5), np.float32), 1.0), {},
     "argument 'Y' of 'axpy' is f32, but T is f16 (from X's dtype)"),
    ((np.ones((3, 5), np.float16), np.ones(5, np.float16), 1.0), {}, "must have 2 dims"),
    ((np.ones((3, 5), np.float16), np.ones((3, 5), np.float16), "x"), {}, "must be a float (a scalar of dtype f32)"),
    ((np.ones((3, 5), np.float16), [1, 2], 1.0), {}, "must be an array"),
    ((np.ones((3, 5), np.float16), np.ones((3, 5), np.float16)), {}, "missing argument 'a'"),
    ((np.ones((3, 5), np.float16), np.ones((3, 5), np.float16), 1.0), {"BQ": 4}, "has no parameter 'BQ'"),
    ((np.ones((5, 3), np.float16).T, np.ones((3, 5), np.float16), 1.0), {}, "is not contiguous"),
])
def test_bad_calls_are_explained(args, kwargs, message):
    with pytest.raises(TileError) as e:
        axpy(*args, **kwargs)
    assert message in e.value.message
    assert e.value.loc is not None and e.value.loc.file == "axpy.tile"


def test_constants_select_a_new_specialization():
    x, y = np.ones((20, 20), np.float16), np.zeros((20, 20), np.float16)
    axpy(x, y, 1.0, BM=16, BN=4)
    assert (y == 1).all()
    assert axpy.lower(BM=16, BN=4).tiles["x"].shape == (16, 4)
