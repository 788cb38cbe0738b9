"""Laws and CuTe-doc examples for tilelang.layout.algebra."""

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tilelang.layout import (
    Layout,
    LayoutError,
    coalesce,
    complement,
    composition,
    flatten,
    idx2crd,
    is_injective,
    left_inverse,
    logical_divide,
    logical_product,
    make_layout,
    make_layout_col_major,
    make_layout_row_major,
    right_inverse,
    tiled_divide,
    zipped_divide,
)

FAST = settings(max_examples=150, deadline=None)

# --- strategies -------------------------------------------------------------------

extents = st.sampled_from([1, 2, 3, 4])
strides = st.sampled_from([0, 1, 2, 3, 4, 6, 8, 12, 16])


@st.composite
def layouts(draw, max_rank=3, pow2=False):
    """Random hierarchical layouts (depth <= 2, size <= 4**4)."""
    ext = st.sampled_from([1, 2, 4]) if pow2 else extents
    strd = st.sampled_from([0, 1, 2, 4, 8, 16]) if pow2 else strides
    rank = draw(st.integers(1, max_rank))
    shape, stride = [], []
    for _ in range(rank):
        if draw(st.booleans()):
            n = draw(st.integers(1, 2))
            shape.append(tuple(draw(ext) for _ in range(n)))
            stride.append(tuple(draw(strd) for _ in range(n)))
        else:
            shape.append(draw(ext))
            stride.append(draw(strd))
    if rank == 1 and draw(st.booleans()):
        return Layout(shape[0], stride[0])
    return Layout(tuple(shape), tuple(stride))


@st.composite
def complementable(draw):
    """Injective layouts with a complement: modes of a compact layout, permuted, some dropped."""
    n = draw(st.integers(1, 4))
    exts = [draw(st.sampled_from([2, 3, 4])) for _ in range(n)]
    strd, running = [], 1
    for e in exts:
        strd.append(running)
        running *= e
    modes = list(zip(exts, strd))
    modes = draw(st.permutations(modes))
    keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    kept = [m for m, k in zip(modes, keep) if k] or [modes[0]]
    return Layout(tuple(s for s, _ in kept), tuple(d for _, d in kept))


def values(layout):
    return [layout(i) for i in range(layout.size)]


def extended(a, x):
    """A(x) for any x >= 0, with A's (coalesced) last mode extended without bound (CuTe)."""
    modes = list(zip(_leaves(coalesce(a).shape), _leaves(coalesce(a).stride)))
    offset = 0
    for i, (s, d) in enumerate(modes):
        if i == len(modes) - 1:
            return offset + x * d
        offset += (x % s) * d
        x //= s
    return offset


def _leaves(t):
    return [t] if isinstance(t, int) else [x for y in t for x in _leaves(y)]


# --- basics -----------------------------------------------------------------------


def test_coordinates_are_colexicographic():
    L = Layout((4, 2), (2, 1))
    assert [L(i) for i in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]
    assert L(5) == L((1, 1)) == L(1, 1) == 3
    H = Layout(((2, 2), 3), ((1, 4), 8))
    assert H(((1, 1), 2)) == H((3, 2)) == H(11) == 1 + 4 + 16


def test_properties_and_repr():
    L = Layout((4, (2, 3)), (2, (8, 1)))
    assert (L.size, L.cosize, L.rank, L.depth) == (24, 6 + 8 + 2 + 1, 2, 2)
    assert repr(L) == "(4,(2,3)):(2,(8,1))"
    assert repr(Layout(8, 1)) == "8:1"
    assert L[1] == Layout((2, 3), (8, 1))
    assert Layout([4, 2]) == Layout((4, 2), (1, 4))
    assert hash(Layout((4, 2), (2, 1))) == hash(make_layout_row_major((4, 2)))


def test_compact_constructors():
    assert make_layout_col_major((4, 2)) == Layout((4, 2), (1, 4))
    assert make_layout_row_major((4, 2)) == Layout((4, 2), (2, 1))
    assert make_layout_row_major(((2, 2), 3)) == Layout(((2, 2), 3), ((6, 3), 1))
    assert make_layout(Layout(4, 1), Layout(2, 4)) == Layout((4, 2), (1, 4))


def test_idx2crd_inverts_colex_index():
    shape = ((2, 3), 4)
    L = make_layout_col_major(shape)
    for i in range(L.size):
        assert L(idx2crd(i, shape)) == i


@pytest.mark.parametrize(
    "make",
    [
        lambda: Layout((2, 3), (1,)),
        lambda: Layout((2, 0), (1, 2)),
        lambda: Layout(4, -1),
        lambda: Layout((2, 2), (1, 2))(4),
        lambda: Layout((2, 2), (1, 2))((1, 1, 1)),
        lambda: Layout(4, 1)[1],
    ],
)
def test_malformed_layouts_and_coordinates_raise(make):
    with pytest.raises(LayoutError):
        make()


# --- coalesce / flatten ----------------------------------------------------------------


@FAST
@given(layouts())
def test_coalesce_and_flatten_preserve_the_function(L):
    C = coalesce(L)
    assert C.size == L.size
    assert values(C) == values(L)
    assert C.depth <= 1
    assert values(flatten(L)) == values(L)


def test_coalesce_examples():
    assert coalesce(Layout((2, (1, 6)), (1, (6, 2)))) == Layout(12, 1)
    assert coalesce(Layout((2, 4), (1, 3))) == Layout((2, 4), (1, 3))
    assert coalesce(Layout((1, 1), (3, 5))) == Layout(1, 0)


# --- composition ------------------------------------------------------------------------


@FAST
@given(layouts(), layouts(max_rank=2))
def test_composition_matches_pointwise_composition(A, B):
    try:
        R = composition(A, B)
    except LayoutError:
        return
    assert R.size == B.size
    assert values(R) == [extended(A, B(i)) for i in range(B.size)]


@FAST
@given(layouts(pow2=True), layouts(max_rank=2, pow2=True))
def test_composition_of_power_of_two_layouts_with_injective_b_is_admissible(A, B):
    assume(is_injective(B))
    R = composition(A, B)
    assert values(R) == [extended(A, B(i)) for i in range(B.size)]


@FAST
@given(layouts(), st.data())
def test_composition_with_a_prefix_keeps_first_elements(A, data):
    n = data.draw(st.integers(1, A.size))
    try:
        R = composition(A, n)
    except LayoutError:
        # Only when the prefix must end part-way into a mode of A that it also passes.
        rest = n
        for s in _leaves(coalesce(A).shape)[:-1]:
            if rest <= s:
                pytest.fail(f"the first {n} elements of {A} form a layout")
            if rest % s:
                return
            rest //= s
        pytest.fail(f"the first {n} elements of {A} form a layout")
    assert values(R) == values(A)[:n]


def test_composition_examples_from_cute_docs():
    assert composition(Layout((6, 2), (8, 2)), Layout((4, 3), (3, 1))) == Layout(((2, 2), 3), ((24, 2), 8))
    assert composition(Layout(20, 2), Layout((5, 4), (4, 1))) == Layout((5, 4), (8, 2))
    assert composition(Layout((10, 2), (16, 4)), Layout((5, 4), (1, 5))) == Layout((5, (2, 2)), (16, (80, 4)))
    # By-mode composition with a tiler.
    A = Layout((12, (4, 8)), (59, (13, 1)))
    assert composition(A, (Layout(3, 4), Layout(8, 2))) == Layout((3, (2, 4)), (236, (26, 1)))
    # A's last mode extends past its size.
    assert composition(Layout(4, 2), Layout(8, 1)) == Layout(8, 2)


def test_inadmissible_compositions_raise():
    with pytest.raises(LayoutError, match="stride divisibility"):
        composition(Layout((2, 4), (1, 10)), Layout(2, 3))
    with pytest.raises(LayoutError, match="shape divisibility"):
        composition(Layout((2, 3), (1, 4)), Layout(5, 1))
    with pytest.raises(LayoutError, match="shape divisibility"):
        composition(Layout((4, 2), (1, 10)), Layout(3, 3))
    # ... but taking only the elements inside the non-divisible mode is fine.
    assert values(composition(Layout((4, 2), (1, 10)), Layout(2, 3))) == [0, 3]
    # B's modes may not carry into each other inside A (CuTe assumes they do not).
    with pytest.raises(LayoutError, match="per-mode offsets"):
        composition(Layout((2, 2), (1, 10)), Layout((2, 2), (1, 1)))
    with pytest.raises(LayoutError, match="per-mode offsets"):
        composition(Layout((3, 2), (0, 1)), Layout((2, 2), (1, 2)))


# --- complement --------------------------------------------------------------------------


@FAST
@given(complementable(), st.integers(0, 3))
def test_complement_fills_the_holes(A, extra):
    target = A.cosize * (1 + extra)
    C = complement(A, target)
    both = make_layout(A, C)
    image = values(both)
    assert len(set(image)) == len(image)  # injective: A and C meet only at 0
    assert set(values(A)) & set(values(C)) == {0}
    assert set(range(target)) <= set(image)
    assert set(image) == set(range(both.size))  # compact


def test_complement_examples_from_cute_docs():
    assert complement(Layout(4, 1), 24) == Layout(6, 4)
    assert complement(Layout(6, 4), 24) == Layout(4, 1)
    assert complement(Layout((4, 6), (1, 4)), 24) == Layout(1, 0)
    assert complement(Layout(4, 2), 24) == Layout((2, 3), (1, 8))
    assert complement(Layout((2, 4), (1, 6)), 24) == Layout(3, 2)
    assert complement(Layout((2, 2), (1, 6)), 24) == Layout((3, 2), (2, 12))


def test_complement_requires_nested_strides():
    with pytest.raises(LayoutError, match="no complement"):
        complement(Layout((2, 2), (1, 3)))
    with pytest.raises(LayoutError, match="no complement"):
        complement(Layout((2, 2), (1, 1)))


# --- inverses ----------------------------------------------------------------------------


@FAST
@given(layouts())
def test_right_inverse(L):
    R = right_inverse(L)
    assert all(L(R(i)) == i for i in range(R.size))


@FAST
@given(complementable())
def test_left_and_right_inverse_of_injective_layouts(L):
    Li = left_inverse(L)
    assert all(Li(L(i)) == i for i in range(L.size))
    image = set(values(L))
    prefix = next(n for n in range(L.size + 1) if n not in image)
    assert right_inverse(L).size == prefix  # R reaches the whole contiguous prefix of the image
    if set(values(L)) == set(range(L.size)):  # bijective: R is a full inverse
        R = right_inverse(L)
        assert R.size == L.size
        assert all(R(L(i)) == i for i in range(L.size))


def test_inverse_examples():
    assert right_inverse(Layout((4, 4), (4, 1))) == Layout((4, 4), (4, 1))
    assert right_inverse(Layout((2, 3), (3, 1))) == Layout((3, 2), (2, 1))
    assert right_inverse(Layout(4, 2)) == Layout(1, 0)  # offset 1 is never produced
    with pytest.raises(LayoutError, match="not injective"):
        left_inverse(Layout((2, 2), (1, 0)))


# --- division and product -------------------------------------------------------------------


@FAST
@given(layouts(), st.data())
def test_logical_divide_by_contiguous_tile_regroups_the_same_function(A, data):
    t = data.draw(st.sampled_from([d for d in range(1, A.size + 1) if A.size % d == 0]))
    try:
        D = logical_divide(A, t)
    except LayoutError:
        return
    assert D.rank == 2 and D[0].size == t and D[1].size == A.size // t
    assert values(D) == values(A)


@FAST
@given(layouts(), complementable())
def test_logical_divide_is_composition_with_tile_and_rest(A, B):
    try:
        D = logical_divide(A, B)
    except LayoutError:
        return
    full = make_layout(B, complement(B, A.size))
    assert values(D) == [extended(A, full(i)) for i in range(full.size)]
    assert D[0].size == B.size


def test_zipped_and_tiled_divide_reproduce_the_2d_function():
    A = Layout((8, 6), (6, 1))  # row-major 8x6
    Z = zipped_divide(A, (2, 3))
    assert Z == Layout(((2, 3), (4, 2)), ((6, 1), (12, 3)))
    for i0, i1, j0, j1 in itertools.product(range(2), range(3), range(4), range(2)):
        assert Z(((i0, i1), (j0, j1))) == A((i0 + 2 * j0, i1 + 3 * j1))
    T = tiled_divide(A, (2, 3))
    assert T.rank == 3 and values(T) == values(Z)
    assert logical_divide(A, (2, 3)) == Layout(((2, 4), (3, 2)), ((6, 12), (1, 3)))


def test_logical_divide_example_from_cute_docs():
    A = Layout((4, 2, 3), (2, 1, 8))
    assert logical_divide(A, Layout(4, 2)) == Layout(((2, 2), (2, 3)), ((4, 1), (2, 8)))


@FAST
@given(complementable(), complementable())
def test_logical_product_size_law(A, B):
    try:
        P = logical_product(A, B)
    except LayoutError:
        return
    assert P.size == A.size * B.size
    assert P[0] == A
    assert is_injective(P)


def test_logical_product_example_from_cute_docs():
    P = logical_product(Layout((2, 2), (4, 1)), Layout(6, 1))
    assert P == Layout(((2, 2), (2, 3)), ((4, 1), (2, 8)))
