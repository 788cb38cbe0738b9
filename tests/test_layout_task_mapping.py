"""Task mappings (thread-value layouts) built from spatial/local/replicate atoms."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilelang.layout import (
    Layout,
    LayoutError,
    column_local,
    column_spatial,
    composition,
    local,
    make_layout_row_major,
    repeat,
    replicate,
    spatial,
)


def holders_by_brute_force(m):
    cells = {}
    for t in range(m.num_threads):
        for v in range(m.values_per_thread):
            cells.setdefault(m(t, v), []).append((t, v))
    return cells


def colex_index(coord, shape):
    return sum(c * math.prod(shape[:d]) for d, c in enumerate(coord))


@st.composite
def mappings(draw):
    rank = draw(st.integers(1, 2))
    dims = st.lists(st.integers(1, 3), min_size=rank, max_size=rank)
    makers = [spatial, column_spatial, local, column_local]
    result = None
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 5)) == 0:
            atom = replicate(draw(st.integers(1, 3)))
        else:
            atom = draw(st.sampled_from(makers))(*draw(dims))
        result = atom if result is None else result * atom
    return result


@settings(max_examples=150, deadline=None)
@given(mappings())
def test_every_element_is_covered_and_inverse_queries_agree(m):
    cells = holders_by_brute_force(m)
    assert set(cells) == set(itertools.product(*map(range, m.shape)))
    replication = m.num_threads * m.values_per_thread // math.prod(m.shape)
    for coord, holders in cells.items():
        assert len(holders) == replication
        assert m.thread_of(coord) == tuple(sorted(holders))
    for t in range(m.num_threads):
        assert m.values_of(t) == tuple(m(t, v) for v in range(m.values_per_thread))


@settings(max_examples=150, deadline=None)
@given(mappings())
def test_to_layout_is_the_tv_layout(m):
    tv = m.to_layout()
    assert tv.rank == 2
    assert tv[0].size == m.num_threads and tv[1].size == m.values_per_thread
    for t, v in itertools.product(range(m.num_threads), range(m.values_per_thread)):
        assert tv((t, v)) == colex_index(m(t, v), m.shape)


def test_atoms_and_composition_convention():
    s = spatial(2, 3)
    assert (s.shape, s.num_threads, s.values_per_thread) == ((2, 3), 6, 1)
    assert [s(t) for t in range(6)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [column_spatial(2, 3)(t) for t in range(3)] == [(0, 0), (1, 0), (0, 1)]
    l = local(2, 3)
    assert (l.num_threads, l.values_per_thread) == (1, 6)
    assert l.values_of(0)[:4] == ((0, 0), (0, 1), (0, 2), (1, 0))
    assert column_local(2, 3).values_of(0)[:3] == ((0, 0), (1, 0), (0, 1))
    assert repeat(2, 3) == local(2, 3)

    # outer * inner: inner tiles inside each element of outer.
    m = local(2, 1) * spatial(4, 8)
    assert (m.shape, m.num_threads, m.values_per_thread) == ((8, 8), 32, 2)
    assert m.values_of(9) == ((1, 1), (5, 1))
    m = spatial(4, 8) * local(2, 1)
    assert m.shape == (8, 8)
    assert m.values_of(9) == ((2, 1), (3, 1))
    assert repr(m) == "spatial(4, 8) * local(2, 1)"
    # Thread index: outer thread major.
    m = spatial(2, 1) * spatial(1, 4)
    assert m(5) == (1, 1)


def test_rank_alignment_prepends_unit_dimensions():
    m = spatial(4) * local(2, 2)
    assert m.shape == (2, 8)
    assert m(3, 1) == (0, 7)


def test_replicate():
    m = spatial(4) * replicate(2)
    assert (m.shape, m.num_threads, m.values_per_thread) == ((4,), 8, 1)
    assert m.thread_of((1,)) == ((2, 0), (3, 0))
    assert m.to_layout() == Layout(((2, 4), 1), ((0, 1), 0))
    r = replicate(32) * local(1)
    assert r.shape == (1,) and r.thread_of((0,)) == tuple((t, 0) for t in range(32))
    assert replicate(4).shape == ()


def test_mma_c_fragment_matches_ptx():
    # PTX ISA, mma.m16n8k16 C/D: row = groupID (+8 for c2, c3), col = threadID_in_group * 2 + (i & 1).
    c = local(2, 1) * spatial(8, 4) * local(1, 2)
    assert c.shape == (16, 8)
    assert c.values_of(5) == ((1, 2), (1, 3), (9, 2), (9, 3))
    for lane, i in itertools.product(range(32), range(4)):
        assert c(lane, i) == ((lane >> 2) + 8 * (i >= 2), (lane % 4) * 2 + (i & 1))
    assert c.to_layout() == Layout(((4, 8), (2, 2)), ((32, 1), (16, 8)))  # CuTe's SM80 16x8 C layout


def test_to_layout_composes_with_a_tile_layout():
    c = local(2, 1) * spatial(8, 4) * local(1, 2)
    # Offsets in a row-major 16x8 buffer of (thread, value).
    offsets = composition(make_layout_row_major((16, 8)), c.to_layout())
    for t, v in itertools.product(range(32), range(4)):
        r, col = c(t, v)
        assert offsets((t, v)) == r * 8 + col


def test_is_valid_for():
    m = spatial(8, 4) * local(1, 2)
    assert m.is_valid_for((8, 8)) and m.is_valid_for((64, 64))
    assert not m.is_valid_for((8, 4)) and not m.is_valid_for((8,)) and not m.is_valid_for((4, 8, 8))


def test_render():
    m = spatial(2, 2) * local(1, 2)
    assert m.render() == "T0V0 T0V1 T1V0 T1V1\nT2V0 T2V1 T3V0 T3V1"
    assert spatial(2).render() == "T0V0 T1V0"
    assert (spatial(2) * replicate(2)).render() == "T0V0,T1V0 T2V0,T3V0"
    assert local(2, 1, 1).render() == "[0, :, :]\nT0V0\n\n[1, :, :]\nT0V1"


def test_errors():
    m = spatial(2, 2)
    with pytest.raises(LayoutError, match="thread 4"):
        m(4)
    with pytest.raises(LayoutError, match="value 1"):
        m(0, 1)
    with pytest.raises(LayoutError, match="outside the tile"):
        m.thread_of((2, 0))
    with pytest.raises(LayoutError, match="outside the tile"):
        m.thread_of((0,))
    with pytest.raises(LayoutError, match="positive"):
        spatial(0, 2)
    with pytest.raises(LayoutError):
        replicate(0)
