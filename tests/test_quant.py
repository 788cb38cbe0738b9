"""Bit packing round-trips for every width, and group quantization error is bounded."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilelang import TileError
from tilelang.quant import dequantize, pack, quantize, unpack


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), signed=st.booleans(), rows=st.integers(1, 4), k=st.integers(1, 40), seed=st.integers(0, 99))
def test_pack_unpack_roundtrip(bits, signed, rows, k, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    q = rng.integers(lo, hi, (rows, k))
    p = pack(q, bits)
    assert p.shape == (rows, (k * bits + 7) // 8) and p.dtype == np.uint8
    np.testing.assert_array_equal(unpack(p, bits, k, signed), q)


def test_lsb_first_layout():
    assert pack(np.array([[1, 2, 3]]), 4).tolist() == [[0x21, 0x03]]


@pytest.mark.parametrize("bits, group", [(4, 32), (4, 128), (3, 64), (8, 100), (2, 7)])
def test_quantize_error_is_within_half_a_step(bits, group):
    w = np.random.default_rng(1).standard_normal((5, 100)).astype(np.float32)
    p, s, z = quantize(w, bits, group)
    back = dequantize(p, bits, 100, False, s, group, z)
    step = np.repeat(s, group, axis=1)[:, :100]
    assert (np.abs(back - w) <= step * 0.51 + 1e-6).all()


@pytest.mark.parametrize("bits", [0, 9, -1])
def test_out_of_range_bits(bits):
    with pytest.raises(TileError, match="out of range"):
        pack(np.zeros((1, 4), np.int32), bits)


def test_values_that_do_not_fit():
    with pytest.raises(TileError, match="do not fit 3 bits"):
        pack(np.array([[9]]), 3)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [False, True])
def test_pack_matches_the_bit_stream_definition(bits, signed):
    """Widths dividing 8 pack by shifts, the others by bit planes: both must write the format's bytes
    (element j at bits j*bits .. j*bits+bits-1 of the row, LSB first), and unpack must read them."""
    rng = np.random.default_rng(bits)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    q = rng.integers(lo, hi, (3, 13))
    stream = [[(int(x) >> b) & 1 for x in row for b in range(bits)] for row in q]
    want = [[sum(bit << i for i, bit in enumerate(row[j:j + 8])) for j in range(0, len(row), 8)] for row in stream]
    assert pack(q, bits).tolist() == want
    np.testing.assert_array_equal(unpack(pack(q, bits), bits, 13, signed), q)
