"""The reference interpreter's semantics, checked element by element against numpy."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from tilelang import TileError, loads
from tilelang.quant import pack

rng = np.random.default_rng(0)

MASKS = """
kernel pad_copy(X: f32[M, N], Y: f32[M, N], BM: const = 8, BN: const = 16) grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x, pad=-1.5);
    rows = iota((BM, BN), axis=0) + block_id(0) * BM;
    y = where(rows < M, x, 7.0);
    copy(y, Y[block_id(0), block_id(1)]);
}
kernel row_max(X: f32[M, N], Y: f32[M, 1], BM: const = 4, BN: const = 8) grid(cdiv(M, BM)) threads(32)
{
    m = full(f32[BM, 1], -inf);
    for j in range(cdiv(N, BN)) {
        x = register(f32[BM, BN]);
        copy(X[block_id(0), j], x, pad=-inf);
        m = max(m, max(x, axis=1));
    }
    copy(m, Y[block_id(0), 0]);
}
kernel halfsum(X: T[N], Y: T[1], T: dtype = f16, BN: const = 64) grid(1) threads(32)
{
    s = zeros(f32[1]);
    for j in range(cdiv(N, BN)) {
        x = register(T[BN]);
        copy(X[j], x);
        s = s + sum(f32(x), axis=0);
    }
    copy(s, Y[0]);
}
kernel intdiv(X: i32[N], Q: i32[N], R: i32[N]) grid(1) threads(32)
{
    x = register(i32[16]);
    copy(X[0], x);
    q = x // 3;
    r = x % 3;
    copy(q, Q[0]);
    copy(r, R[0]);
}
kernel deq(W: i3[N, K], S: f32[N, G], Z: f32[N, G], Y: f16[N, K], GS: const = 5, BN: const = 4, BK: const = 8)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{
    w = register(f16[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, zero=Z, group=GS);
    copy(w, Y[block_id(0), block_id(1)]);
}
"""
K = loads(MASKS, "sem.tile")


def test_window_reads_pad_outside_and_writes_only_inside():
    x = rng.standard_normal((13, 21)).astype(np.float32)
    y = np.full((13, 21), np.nan, np.float32)
    K["pad_copy"](x, y)
    np.testing.assert_array_equal(y, x)  # every element written, none from the padding


def test_reduction_over_padded_chunks():
    x = rng.standard_normal((10, 19)).astype(np.float32)
    y = np.zeros((10, 1), np.float32)
    K["row_max"](x, y)
    np.testing.assert_array_equal(y[:, 0], x.max(axis=1))


@pytest.mark.parametrize("dt", [np.float16, ml_dtypes.bfloat16])
def test_narrow_floats_accumulate_in_f32(dt):
    x = np.full(1000, 0.1, dt)
    y = np.zeros(1, dt)
    K["halfsum"](x, y)
    assert abs(float(y[0]) - 1000 * float(x[0])) < 1.0  # f16 accumulation would stall near 256


def test_integer_division_truncates_toward_zero():
    x = np.arange(-8, 8, dtype=np.int32)
    q, r = np.zeros(16, np.int32), np.zeros(16, np.int32)
    K["intdiv"](x, q, r)
    np.testing.assert_array_equal(q, np.trunc(x / 3).astype(np.int32))
    np.testing.assert_array_equal(r, x - 3 * np.trunc(x / 3).astype(np.int32))


def test_signed_three_bit_dequant_with_groups_that_straddle_tiles():
    n, k, gs = 6, 19, 5
    q = rng.integers(-4, 4, (n, k))
    g = -(-k // gs)
    s = rng.uniform(0.5, 2, (n, g)).astype(np.float32)
    z = rng.integers(-2, 2, (n, g)).astype(np.float32)
    y = np.full((n, k), np.nan, np.float16)
    K["deq"](pack(q, 3), s, z, y, K=k)
    gi = np.arange(k) // gs
    np.testing.assert_allclose(y, ((q - z[:, gi]) * s[:, gi]).astype(np.float16), rtol=1e-3)


def test_wrong_packed_size_is_rejected():
    with pytest.raises(TileError, match="pack into 8 bytes per row, got 7"):
        K["deq"](np.zeros((6, 7), np.uint8), np.ones((6, 4), np.float32), np.ones((6, 4), np.float32),
                 np.zeros((6, 19), np.float16), K=19)
