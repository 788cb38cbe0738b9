"""Hopper wgmma as the layout pass sees it (tilelang/layout/wgmma.py): the shared-memory matrix
descriptors read off a layout (exact encodings, checked against the hardware's address model),
layouts no descriptor can express, warpgroup tilings and the accumulator fragment."""
from __future__ import annotations

import pytest

from tilelang.layout import wgmma as W
from tilelang.layout.shared import smem_gmma, smem_row_major, smem_swizzled

MN_K = lambda mn, k: (mn, k)  # noqa: E731 - operand (mn, k) stored at tile (mn, k): K-major
K_MN = lambda mn, k: (k, mn)  # noqa: E731 - stored at (k, mn): MN-major


def gmma(shape, eb):
    return smem_gmma(shape[0], shape[1], eb)


# ----------------------------------------------------------------------------- descriptors


def test_descriptor_bit_fields():
    d = W.Descriptor(start=32, lbo=16, sbo=1024, width=128)
    assert d.encode(0x400) == (1 << 62) | (64 << 32) | (1 << 16) | ((0x400 + 32) >> 4)
    assert W.Descriptor(0, 4096, 512, 64).high == (2 << 62) | (32 << 32) | (256 << 16)
    assert W.Descriptor(0, 0, 256, 32).high == (3 << 62) | (16 << 32)


@pytest.mark.parametrize("cols,width,sbo", [(64, 128, 1024), (32, 64, 512), (16, 32, 256)])
def test_k_major_descriptor_from_a_swizzled_row(cols, width, sbo):
    """A [64, cols] f16 tile: one atom column; 8-row groups SBO apart; a k-step moves the start 32 bytes."""
    lay = gmma((64, cols), 2)
    assert lay.block == 0 and lay.swizzle.shift == 3 and 16 << lay.swizzle.bits == width
    assert W.descriptor(lay, 2, True, MN_K, 0, 0, 64) == W.Descriptor(0, 16, sbo, width)
    assert W.descriptor(lay, 2, True, MN_K, 0, 16, 64) == W.Descriptor(32, 16, sbo, width)
    assert W.descriptor(lay, 2, True, MN_K, 8, 0, 8).start == sbo  # the second 8-row group


def test_k_major_descriptor_of_a_blocked_tile():
    """K = 128 halfs (256-byte rows) is two 128-byte column blocks of 64 x 64 elements."""
    lay = gmma((64, 128), 2)
    assert lay.block == 64 and lay.cosize == 64 * 128
    assert W.descriptor(lay, 2, True, MN_K, 0, 48, 64) == W.Descriptor(96, 16, 1024, 128)
    assert W.descriptor(lay, 2, True, MN_K, 0, 64, 64) == W.Descriptor(64 * 64 * 2, 16, 1024, 128)


def test_mn_major_descriptor_of_b():
    """B [32, 128] (N contiguous): LBO steps between 64-column blocks, SBO between 8-row k groups."""
    lay = gmma((32, 128), 2)
    assert W.descriptor(lay, 2, False, K_MN, 0, 0, 128) == W.Descriptor(0, 32 * 128, 1024, 128)
    assert W.descriptor(lay, 2, False, K_MN, 0, 16, 128) == W.Descriptor(16 * 128, 32 * 128, 1024, 128)
    assert W.descriptor(lay, 2, False, K_MN, 64, 0, 64) == W.Descriptor(32 * 128, 0, 1024, 128)


@pytest.mark.parametrize("shape", [(64, 64), (32, 128), (64, 32), (128, 256)])
def test_descriptor_addresses_are_the_layout(shape):
    """The hardware's address model under the derived descriptor lands on the layout's offsets."""
    lay = gmma(shape, 2)
    for k_major, coord, extent in ((True, MN_K, 64), (False, K_MN, min(shape[1], 256))):
        if k_major and shape[0] < 64:
            continue
        k = shape[1] if k_major else shape[0]
        for k0 in range(0, k, 16):
            d = W.descriptor(lay, 2, k_major, coord, 0, k0, extent)
            assert d is not None
            for mn in range(extent):
                for kk in range(16):
                    assert d.address(mn, kk, 2, k_major) == 2 * lay(*coord(mn, k0 + kk))


def test_layouts_a_descriptor_cannot_express_are_refused():
    assert W.descriptor(smem_row_major(64, 64, 2), 2, True, MN_K, 0, 0, 64) is None
    wide = smem_swizzled(64, 128, 2)  # Sw<3,3,4>: 256-byte rows
    assert W.descriptor(wide, 2, True, MN_K, 0, 0, 64) is None
    assert gmma((60, 64), 2) is None and gmma((64, 24), 2) is None


# ----------------------------------------------------------------------------- tilings and fragments

@pytest.mark.parametrize("m,n,threads,grid,inst_n,nsplit", [
    (64, 64, 128, (1, 1), 64, 1), (128, 128, 256, (2, 1), 128, 1), (128, 256, 256, (2, 1), 256, 1),
    (64, 64, 256, (1, 2), 32, 1), (64, 512, 128, (1, 1), 256, 2), (256, 128, 256, (2, 1), 128, 1)])
def test_warpgroup_tiling(m, n, threads, grid, inst_n, nsplit):
    t = W.wgmma_tiling(m, n, threads)
    assert (t.wgm, t.wgn, t.inst_n, t.nsplit) == (*grid, inst_n, nsplit)


def test_no_tiling_where_m64_does_not_fit():
    assert W.wgmma_tiling(48, 64, 128) is None and W.wgmma_tiling(64, 64, 96) is None
    assert W.wgmma_tiling(64, 60, 128) is None


@pytest.mark.parametrize("m,n,threads", [(64, 64, 128), (128, 128, 256), (256, 64, 256), (64, 64, 256)])
def test_accumulator_mapping_is_the_wgmma_fragment(m, n, threads):
    """PTX's m64nNk16 D fragment: warp w of a warpgroup holds rows 16w + lane/4 (+8), columns
    8j + 2 (lane % 4) (+1), in registers (j * 4 + {0: row, 1: col+1, 2: row+8, 3: both})."""
    t = W.wgmma_tiling(m, n, threads)
    task = W.accumulator(t)
    for tid in range(threads):
        g, w, lane = tid // 128, (tid % 128) // 32, tid % 32
        for v in range(task.values_per_thread):
            i, r = divmod(v, t.ni * 4)
            j, e = divmod(r, 4)
            row = (g // t.wgn) * t.rows + 64 * i + 16 * w + lane // 4 + 8 * (e // 2)
            col = (g % t.wgn) * t.cols + 8 * j + 2 * (lane % 4) + e % 2
            assert task(tid, v) == (row, col)
