"""The instruction atom table: shapes, coverage and exact lane -> element maps (PTX ISA)."""

import itertools

import pytest

from tilelang.layout import ATOMS, LayoutError, find_atoms, get_atom, spatial


def coverage(mapping):
    cells = {}
    for t in range(mapping.num_threads):
        for v in range(mapping.values_per_thread):
            cells.setdefault(mapping(t, v), []).append((t, v))
    return cells


@pytest.mark.parametrize("atom", ATOMS, ids=lambda a: a.name)
def test_every_operand_covers_its_tile(atom):
    for op in atom.operands:
        assert op.mapping.shape == op.shape
        assert op.mapping.num_threads <= atom.num_threads
        cells = coverage(op.mapping)
        assert set(cells) == set(itertools.product(*map(range, op.shape)))


@pytest.mark.parametrize("name", ["mma.m16n8k16.f16.f16", "mma.m16n8k16.f32.f16", "mma.m16n8k16.f32.bf16"])
def test_mma_fragments_match_ptx(name):
    atom = get_atom(name)
    a, b, c, d = (atom.operand(x) for x in "ABCD")
    assert (a.shape, b.shape, c.shape, d.shape) == ((16, 16), (16, 8), (16, 8), (16, 8))
    assert (a.mapping.values_per_thread, b.mapping.values_per_thread, c.mapping.values_per_thread) == (8, 4, 4)
    for m in (a, b, c, d):
        assert m.mapping.num_threads == 32
        assert all(len(h) == 1 for h in coverage(m.mapping).values())  # no replication
    for lane in range(32):
        group, tig = lane >> 2, lane % 4
        for i in range(8):
            row = group + 8 * ((i >> 1) & 1)
            col = tig * 2 + (i & 1) + 8 * (i >= 4)
            assert a.mapping(lane, i) == (row, col)
        for i in range(4):
            assert b.mapping(lane, i) == (tig * 2 + (i & 1) + 8 * (i >= 2), group)
            assert c.mapping(lane, i) == (group + 8 * (i >= 2), tig * 2 + (i & 1))
    assert c.mapping.values_of(5) == ((1, 2), (1, 3), (9, 2), (9, 3))
    assert a.mapping.values_of(5)[4:] == ((1, 10), (1, 11), (9, 10), (9, 11))
    assert b.mapping.values_of(5) == ((2, 1), (3, 1), (10, 1), (11, 1))
    assert atom.attr("k") == 16 and atom.bytes_per_thread == a.bytes_per_thread + b.bytes_per_thread
    assert atom.ptx.startswith("mma.sync.aligned.m16n8k16.row.col.")


@pytest.mark.parametrize("num,trans", list(itertools.product([1, 2, 4], [False, True])))
def test_ldmatrix_lanes(num, trans):
    atom = get_atom(f"ldmatrix.x{num}" + (".trans" if trans else ""))
    src, dst = atom.operand("src"), atom.operand("dst")
    assert src.shape == dst.shape == (8 * num, 8)
    # Lanes 0 .. 8*num-1 each address one 16-byte row.
    assert src.mapping.num_threads == 8 * num == atom.attr("address_lanes")
    for lane in range(8 * num):
        assert src.mapping.values_of(lane) == tuple((lane, j) for j in range(8))
    assert src.bytes_per_thread == 16
    # Every lane receives one 32-bit register (two elements) per matrix.
    assert dst.mapping.values_per_thread == 2 * num and dst.bytes_per_thread == atom.bytes_per_thread == 4 * num
    for lane, reg, half in itertools.product(range(32), range(num), range(2)):
        r, c = lane // 4, 2 * (lane % 4) + half
        if trans:
            r, c = c, r
        assert dst.mapping(lane, 2 * reg + half) == (8 * reg + r, c)
    assert (".trans" in atom.ptx) == trans


def test_ldmatrix_x4_feeds_the_mma_a_fragment():
    """ldmatrix.x4 with lane l addressing A[l % 16, 8 * (l // 16)] yields exactly the mma A fragment."""
    ld = get_atom("ldmatrix.x4").operand("dst").mapping
    a = get_atom("mma.m16n8k16.f32.f16").operand("A").mapping
    for lane, v in itertools.product(range(32), range(8)):
        r, c = ld(lane, v)
        matrix = r // 8  # loaded from the rows addressed by lanes 8*matrix .. 8*matrix+7
        assert a(lane, v) == (8 * (matrix % 2) + r % 8, 8 * (matrix // 2) + c)


def test_copy_atoms():
    for n in (4, 8, 16):
        cp = get_atom(f"cp.async.{n}")
        assert cp.bytes_per_thread == n and cp.num_threads == 1
        assert cp.operand("dst").shape == (n,) and cp.operand("src").mapping.values_per_thread == n
    assert get_atom("cp.async.16").ptx == "cp.async.cg.shared.global"
    assert get_atom("cp.async.4").ptx == "cp.async.ca.shared.global"
    assert get_atom("ld.shared.v4.b32").bytes_per_thread == 16
    assert get_atom("st.global.v2.b32").ptx == "st.global.v2.b32"
    # A warp-wide 128-bit copy: compose the per-thread atom under spatial().
    warp = spatial(32) * get_atom("ld.global.v4.b32").operand("src").mapping
    assert warp.shape == (512,) and warp.values_of(3)[0] == (48,)


def test_shuffle_reduction():
    atom = get_atom("shfl.bfly.reduce")
    masks = atom.attr("xor_masks")
    vals = list(range(32))
    for m in masks:
        vals = [vals[lane] + vals[lane ^ m] for lane in range(32)]
    assert vals == [sum(range(32))] * 32
    out = atom.operand("out").mapping
    assert out.thread_of((0,)) == tuple((t, 0) for t in range(32))
    assert atom.operand("in").mapping(7) == (7,)


def test_find_atoms():
    assert {a.name for a in find_atoms(kind="mma", dtype="bf16")} == {"mma.m16n8k16.f32.bf16"}
    assert {a.name for a in find_atoms(kind="mma", dtype="f16")} == {"mma.m16n8k16.f16.f16", "mma.m16n8k16.f32.f16"}
    assert len(find_atoms(kind="ldmatrix", dtype="f16")) == 6
    assert find_atoms(kind="ldmatrix", dtype="f32") == ()
    assert {a.bytes_per_thread for a in find_atoms(kind="cp.async", dtype="f64")} == {8, 16}
    assert len(find_atoms(kind="cp.async")) == 3
    assert len(find_atoms()) == len(ATOMS)
    with pytest.raises(LayoutError, match="unknown atom kind"):
        find_atoms(kind="wgmma")
    with pytest.raises(LayoutError, match="unknown dtype"):
        find_atoms(dtype="f7")
    with pytest.raises(LayoutError, match="no atom named"):
        get_atom("mma.m16n8k8")
    with pytest.raises(LayoutError, match="no operand"):
        get_atom("cp.async.4").operand("A")
