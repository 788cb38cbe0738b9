"""Swizzles, the bank-conflict model, and shared-memory tile layouts."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilelang.layout import (
    ComposedLayout,
    Layout,
    LayoutError,
    Swizzle,
    bank_conflicts,
    make_layout_row_major,
    smem_col_major,
    smem_padded,
    smem_row_major,
    smem_swizzled,
    standard_swizzle,
    wavefronts,
)


@st.composite
def swizzles(draw):
    bits = draw(st.integers(0, 3))
    base = draw(st.integers(0, 3))
    shift = draw(st.integers(bits, bits + 3)) * draw(st.sampled_from([1, -1]))
    return Swizzle(bits, base, shift)


@settings(max_examples=100, deadline=None)
@given(swizzles())
def test_swizzle_is_an_involution_and_a_bijection_on_its_block(sw):
    block = 1 << (sw.base + sw.bits + abs(sw.shift) + 1)
    image = [sw(x) for x in range(block)]
    assert sorted(image) == list(range(block))
    assert all(sw(sw(x)) == x for x in range(block))
    assert sw.yyy_mask & sw.zzz_mask == 0


def test_swizzle_bits_follow_cute():
    sw = Swizzle(3, 3, 3)  # yyy = bits 6..8, zzz = bits 3..5
    assert (sw.yyy_mask, sw.zzz_mask) == (0b111 << 6, 0b111 << 3)
    assert sw(0b101_000_111) == 0b101_101_111
    assert sw(7) == 7  # the low `base` bits are never touched
    assert repr(sw) == "Sw<3,3,3>"
    assert Swizzle(2, 0, -2)(0b0001) == 0b0101  # negative shift: read below, write above


def test_invalid_swizzles_raise():
    with pytest.raises(LayoutError, match="overlap"):
        Swizzle(3, 3, 2)
    with pytest.raises(LayoutError):
        Swizzle(-1, 0, 0)


def test_composed_layout_swizzles_the_offset():
    c = ComposedLayout(Swizzle(3, 3, 3), make_layout_row_major((8, 64)))
    assert c.size == 512
    assert c(1, 0) == 64 + 8  # row 1: chunk 0 -> chunk 1
    assert c((7, 9)) == 7 * 64 + ((1 ^ 7) * 8) + 1
    assert repr(c) == "Sw<3,3,3> o (8,64):(64,1)"


# --- bank conflict model ---------------------------------------------------------------


def test_bank_conflict_model_basics():
    assert bank_conflicts([4 * i for i in range(32)]) == 0
    assert bank_conflicts([0] * 32) == 0  # broadcast
    assert bank_conflicts([128 * i for i in range(32)]) == 31  # all in bank 0
    assert bank_conflicts([8 * i for i in range(32)]) == 1  # two-way
    assert bank_conflicts([4 * i if i % 2 else None for i in range(32)]) == 0
    assert wavefronts([16 * i for i in range(32)], 16) == 4  # quarter-warp phases
    assert bank_conflicts([16 * i for i in range(32)], 16) == 0
    assert wavefronts([8 * i for i in range(32)], 8) == 2  # half-warp phases
    assert bank_conflicts([16 * i for i in range(32)], 8) == 2  # each half-warp spans 256 bytes
    assert bank_conflicts([2 * i for i in range(32)], 2) == 0


def test_bank_conflict_model_rejects_bad_input():
    with pytest.raises(LayoutError, match="multiple of 16"):
        bank_conflicts([8] * 32, 16)
    with pytest.raises(LayoutError, match="access width"):
        bank_conflicts([0] * 32, 32)
    with pytest.raises(LayoutError, match="32 lanes"):
        bank_conflicts([0] * 33)


def ldmatrix_x4_addresses(smem, row0, col0):
    """Byte addresses of ldmatrix.x4 loading the 16x16 block at (row0, col0).

    Lane l addresses row ``l % 16``, column ``8 * (l // 16)`` of the block.
    """
    return [smem.byte_address(row0 + lane % 16, col0 + 8 * (lane // 16)) for lane in range(32)]


def test_128b_swizzle_makes_ldmatrix_conflict_free_where_row_major_conflicts():
    plain = smem_row_major(64, 64, elem_bytes=2)
    swizzled = smem_swizzled(64, 64, elem_bytes=2)
    assert swizzled.layout.swizzle == Swizzle(3, 3, 3)
    # Row-major: the 8 rows of each quarter-warp all start in banks 0-3 -> 8 wavefronts per phase.
    assert wavefronts(ldmatrix_x4_addresses(plain, 0, 0), 16) == 32
    assert bank_conflicts(ldmatrix_x4_addresses(plain, 0, 0), 16) == 28
    for row0, col0 in itertools.product(range(0, 64, 16), range(0, 64, 16)):
        assert bank_conflicts(ldmatrix_x4_addresses(swizzled, row0, col0), 16) == 0
        assert bank_conflicts(ldmatrix_x4_addresses(plain, row0, col0), 16) == 28


@pytest.mark.parametrize("cols", [16, 32, 64, 128, 256])
def test_standard_swizzles_are_conflict_free_for_16_byte_column_reads(cols):
    swizzled = smem_swizzled(64, cols, elem_bytes=2)
    plain = smem_row_major(64, cols, elem_bytes=2)
    chunks = cols // 8
    for chunk in range(chunks):
        # 8 consecutive rows read the same 16-byte column chunk (one ldmatrix phase).
        rows = [swizzled.byte_address(r, 8 * chunk) for r in range(8)] * 4
        assert bank_conflicts(rows, 16) == 0
    expected = {16: 1, 32: 3, 64: 7, 128: 7, 256: 7}[cols]  # row-major: 128 // row_bytes rows share a line
    assert bank_conflicts([plain.byte_address(r, 0) for r in range(8)] * 4, 16) == 4 * expected


def test_padding_also_removes_conflicts():
    padded = smem_padded(64, 64, pad=8, elem_bytes=2)
    assert bank_conflicts(ldmatrix_x4_addresses(padded, 0, 0), 16) == 0
    assert padded.cosize == 63 * 72 + 64  # the last row needs no padding after it
    assert padded(1, 0) == 72


def test_standard_swizzle_table():
    assert standard_swizzle(64, 2) == Swizzle(3, 3, 3)  # 128B rows of fp16
    assert standard_swizzle(32, 2) == Swizzle(2, 3, 3)  # 64B
    assert standard_swizzle(16, 2) == Swizzle(1, 3, 3)  # 32B
    assert standard_swizzle(128, 2) == Swizzle(3, 3, 4)  # 256B rows: XOR the row, not the column
    assert standard_swizzle(32, 4) == Swizzle(3, 2, 3)  # 128B rows of fp32
    assert standard_swizzle(128, 1) == Swizzle(3, 4, 3)  # 128B rows of int8
    with pytest.raises(LayoutError, match="smem_padded"):
        standard_swizzle(8, 2)
    with pytest.raises(LayoutError, match="power-of-two"):
        standard_swizzle(48, 2)


@pytest.mark.parametrize(
    "smem",
    [
        smem_row_major(16, 24, 4),
        smem_col_major(16, 24, 4),
        smem_swizzled(16, 64, 2),
        smem_swizzled(24, 32, 2),
        smem_swizzled(8, 128, 1),
        smem_padded(16, 24, 4, 4),
    ],
    ids=repr,
)
def test_shared_layouts_are_injective_within_their_storage(smem):
    offsets = [smem(r, c) for r in range(smem.rows) for c in range(smem.cols)]
    assert len(set(offsets)) == len(offsets)
    assert max(offsets) < smem.cosize
    assert f"{smem.rows}x{smem.cols}" in smem.describe()


def test_swizzle_keeps_16_byte_vectors_contiguous_and_within_the_row():
    smem = smem_swizzled(32, 64, 2)
    for r, chunk in itertools.product(range(32), range(8)):
        start = smem(r, 8 * chunk)
        assert [smem(r, 8 * chunk + i) for i in range(8)] == list(range(start, start + 8))
        assert r * 64 <= start < (r + 1) * 64
    assert smem_col_major(4, 2, 2)(1, 1) == 5
    assert smem_col_major(4, 2, 2).layout == Layout((4, 2), (1, 4))


def test_describe_says_what_the_layout_is():
    assert "128B swizzle" in smem_swizzled(64, 64).describe()
    assert "padded by 8" in smem_padded(64, 64, 8).describe()
    assert "row-major" in smem_row_major(8, 8).describe()
    with pytest.raises(LayoutError):
        smem_padded(8, 8, -1)
    with pytest.raises(LayoutError):
        smem_row_major(0, 8)
