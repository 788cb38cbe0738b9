"""Layout inference: the mapping transforms, the rules, annotations as seeds, errors, idempotence.

Plans are for a target; the small kernels here are planned for sm_80 (mma.sync) unless a test
says otherwise, and the plans are the ones the CUDA backend emits (tests/test_plan_is_what_runs.py)."""

import itertools
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tilelang
from tilelang.diagnostics import TileError
from tilelang.ir import nodes as N
from tilelang.ir.printer import kernel_str
from tilelang.layout import (
    MMA_M16N8K16_A,
    MMA_M16N8K16_B,
    MMA_M16N8K16_C,
    column_local,
    column_spatial,
    infer_layouts,
    local,
    pin_layouts,
    replicate,
    spatial,
    tv,
)
from tilelang.layout.plan import AssignPlan, CopyPlan, GemmPlan
from tilelang.layout.tiling import MmaTiling, coalesced, flat, mma_fragments, mma_tiling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_check import SMALL_GEMM  # noqa: E402

KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def cells(m):
    """coord -> sorted [(thread, value)] by brute force."""
    out = {}
    for t in range(m.num_threads):
        for v in range(m.values_per_thread):
            out.setdefault(m(t, v), []).append((t, v))
    return out


def threads_of(m):
    return {c: {t for t, _ in h} for c, h in cells(m).items()}


@st.composite
def mappings(draw, rank=None):
    """Random compositions of atoms over at most 256 (thread, value) pairs."""
    rank = rank or draw(st.integers(1, 3))
    dims = st.lists(st.integers(1, 3), min_size=rank, max_size=rank)
    makers = [spatial, column_spatial, local, column_local]
    out = local(*([1] * rank))
    for _ in range(draw(st.integers(1, 4))):
        atom = replicate(draw(st.integers(1, 3))) if draw(st.integers(0, 5)) == 0 else \
            draw(st.sampled_from(makers))(*draw(dims))
        if (out * atom).num_threads * (out * atom).values_per_thread > 256:
            break
        out = out * atom
    return out


# ----------------------------------------------------------------------------- transforms

@settings(max_examples=150, deadline=None)
@given(mappings())
def test_canonical_is_the_same_function_and_a_fixed_point(m):
    c = tv.canonical(m)
    assert (c.num_threads, c.values_per_thread, c.shape) == (m.num_threads, m.values_per_thread, m.shape)
    assert all(c(t, v) == m(t, v) for t in range(m.num_threads) for v in range(m.values_per_thread))
    assert tv.canonical(c) == c
    lin = tv.table(m)
    assert all(lin[t, v] == sum(x * math.prod(m.shape[d + 1:]) for d, x in enumerate(m(t, v)))
               for t in range(m.num_threads) for v in range(m.values_per_thread))


@settings(max_examples=150, deadline=None)
@given(mappings(), st.data())
def test_collapse_gives_the_threads_of_each_reduced_row(m, data):
    axis = data.draw(st.integers(0, len(m.shape) - 1))
    r = tv.collapse(m, [axis])
    assert r.shape == tuple(1 if d == axis else s for d, s in enumerate(m.shape))
    assert r.num_threads == m.num_threads
    expect = {}
    for c, ts in threads_of(m).items():
        key = tuple(0 if d == axis else x for d, x in enumerate(c))
        expect.setdefault(key, set()).update(ts)
    assert threads_of(r) == expect


@settings(max_examples=100, deadline=None)
@given(mappings(rank=2))
def test_transpose_swaps_coordinates(m):
    t = tv.transpose(m)
    assert all(t(th, v) == m(th, v)[::-1] for th in range(m.num_threads) for v in range(m.values_per_thread))


@settings(max_examples=150, deadline=None)
@given(mappings(), st.randoms(use_true_random=False))
def test_conversion_kind_matches_ownership(a, rnd):
    ds = list(tv.digits(a))
    rnd.shuffle(ds)  # the same shape, threads and values, distributed differently
    b = tv.from_digits(ds, len(a.shape))
    owned = {}
    for c, ts in threads_of(a).items():
        for t in ts:
            owned.setdefault(t, set()).add(c)
    exchange = any(b(t, v) not in owned.get(t, ()) for t in range(b.num_threads) for v in range(b.values_per_thread))
    same = all(a(t, v) == b(t, v) for t in range(a.num_threads) for v in range(a.values_per_thread))
    assert tv.conversion_kind(a, b) == ("none" if same else "shared" if exchange else "registers")


def test_conversion_kinds_of_known_pairs():
    c = tv.canonical(spatial(4, 1) * local(1, 8) * MMA_M16N8K16_C)
    a = tv.canonical(spatial(4, 1) * local(1, 4) * MMA_M16N8K16_A)
    assert tv.conversion_kind(c, a) == "none"  # FlashAttention-2's register reuse of P
    swapped = local(2, 1) * local(1, 2) * spatial(8, 4)
    assert tv.conversion_kind(local(1, 2) * local(2, 1) * spatial(8, 4), swapped) == "registers"
    assert tv.conversion_kind(spatial(8, 4) * local(2, 2), spatial(4, 8) * local(4, 1)) == "shared"
    assert tv.conversion_kind(spatial(2, 1) * replicate(2) * local(8, 4), spatial(4, 1) * local(4, 4)) == "registers"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 96), min_size=1, max_size=3).filter(lambda s: math.prod(s) <= 8192),
       st.sampled_from([1, 2, 4, 8]), st.sampled_from([32, 64, 128, 256]))
def test_coalesced_covers_the_tile_with_vectors_along_the_last_axis(shape, nbytes, threads):
    m = coalesced(tuple(shape), nbytes, threads)
    assert m.shape == tuple(shape) and m.num_threads == threads
    assert set(tv.table(m).ravel().tolist()) == set(range(math.prod(shape)))  # table() is checked above
    vec = tv.vector_run(m, -1)
    assert vec * nbytes <= 16 or vec == 1
    numel = math.prod(shape)
    if all(s & (s - 1) == 0 for s in shape) and numel >= threads * 16 // nbytes and shape[-1] * nbytes >= 16:
        assert tv.replication(m) == 1 and vec * nbytes == 16


def test_mma_fragments_on_one_warp_are_the_ptx_atoms():
    fr = mma_fragments(MmaTiling(16, 8, 1, 1), 16, False, False)
    for got, atom in ((fr.a, MMA_M16N8K16_A), (fr.b, MMA_M16N8K16_B), (fr.c, MMA_M16N8K16_C)):
        assert cells(got) == cells(atom)


@pytest.mark.parametrize("wm,wn", [(4, 1), (2, 2), (1, 4)])
def test_mma_fragments_tile_warps_and_replicate_operands(wm, wn):
    m, n, k = 64, 64, 32
    fr = mma_fragments(MmaTiling(m, n, wm, wn), k, False, False)
    for (i, j), holders in cells(fr.c).items():
        (t, _), = holders
        assert t // 32 == (i // (m // wm)) * wn + j // (n // wn)
        assert t % 32 == (i % 8) * 4 + (j % 8) // 2
    for (i, kk), holders in cells(fr.a).items():  # every warp of the grid row holds the A rows it needs
        assert {t // 32 for t, _ in holders} == {(i // (m // wm)) * wn + c for c in range(wn)}
        assert {t % 32 for t, _ in holders} == {(i % 8) * 4 + (kk % 8) // 2}
    for (kk, j), holders in cells(fr.b).items():
        assert {t // 32 for t, _ in holders} == {r * wn + j // (n // wn) for r in range(wm)}


def test_mma_tiling_uses_every_warp_with_the_fewest_fragment_loads_or_none():
    """The accumulator tiling both GPU backends give their mma gemms."""
    t = mma_tiling(64, 64, 128)
    assert (t.wm, t.wn, t.mi, t.ni) == (2, 2, 2, 4)
    assert (mma_tiling(16, 32, 128).wm, mma_tiling(16, 32, 128).wn) == (1, 4)
    assert mma_tiling(16, 64, 128).wn == 4
    assert mma_tiling(48, 8, 128) is None  # 4 warps cannot tile 48 x 8 with m16n8 fragments
    assert mma_tiling(16, 8, 128) is None  # too small for four warps: the backends' scalar path
    assert mma_tiling(20, 32, 128) is None and mma_tiling(64, 64, 96 + 8) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=3), st.sampled_from([1, 2, 4, 8]),
       st.sampled_from([32, 64, 128, 256]))
def test_flat_deals_runs_to_the_threads_in_turn(shape, vec, threads):
    """Run q of the row-major tile (vec elements along the last axis) is held by thread q % threads."""
    m = flat(tuple(shape), threads, vec)
    runs = math.prod(shape) // vec
    if shape[-1] % vec or (runs > threads and runs % threads):
        assert m is None  # a partial last pass: not a product of atoms (the backends guard it)
        return
    if m is None:  # the runs fill whole passes, but no product of atoms deals them in this order
        return
    assert m.num_threads == min(runs, threads)
    for t in range(m.num_threads):
        for v in range(m.values_per_thread):
            q = (v // vec) * threads + t
            flat_index = q * vec + v % vec
            assert m(t, v) == tuple(int(x) for x in divmod_all(flat_index, shape))


def divmod_all(e, shape):
    out = []
    for d in reversed(shape):
        out.append(e % d)
        e //= d
    return reversed(out)


# ----------------------------------------------------------------------------- rules on small kernels

def lower(src: str, **consts):
    (k,) = tilelang.loads(src, "t.tile").values()
    return k.lower(**consts)


def plan_of(src: str, target: str = "sm_80", **consts):
    tk = lower(src, **consts)
    return tk, infer_layouts(tk, target)


def stmt(tk, pred):
    from tilelang.ir.visit import walk_stmts
    return next(s for s in walk_stmts(tk.kernel.body) if pred(s))


BIAS = """
kernel k(X: f16[M, N], Bias: f16[N], Y: f16[M, N], BM: const = 16, BN: const = 128)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(128)
{
    x = register(f32[BM, BN]);
    b = register(f32[BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(Bias[block_id(1)], b);
    s = sum(x, axis=1);
    y = x + b + s;
    copy(y, Y[block_id(0), block_id(1)]);
}
"""


def test_elementwise_tiles_share_the_flat_mapping_and_broadcasts_convert():
    """Tiles computed at the same coordinates take one mapping (runs of 8 dealt to the threads in
    turn); a broadcast operand in its own mapping is read through shared memory, and the plan says so."""
    tk, plan = plan_of(BIAS)
    x, b, y = (plan.mapping(n) for n in "xby")
    assert y == x == flat((16, 128), 128, 8)
    assert plan.tile("x").origin.startswith("flat, runs of 8")
    assert b == flat((128,), 128, 1)
    assign = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Assign) and s.name == "y"))
    assert {p for p, _ in assign.exprs} == {(), (0,), (1,), (0, 0), (0, 1)}
    assert {c.path for c in assign.conversions} == {(0, 1), (1,)}  # the bias and the row sums
    assert all(c.kind == "shared" for c in assign.conversions) and plan.cost.round_trips >= 2
    copy_x = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Copy) and s.dst == N.TileRef("x")))
    assert copy_x.vector == 8 and copy_x.instrs[0].name == "ld.global.v4.b32"  # 8 halfs: 16 bytes


def test_reduction_plan_covers_each_row_exactly():
    tk, plan = plan_of(BIAS)
    (red,) = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Assign) and s.name == "s")).reduces
    x = plan.mapping("x")
    holders = threads_of(x)
    for i in range(16):
        ts = set().union(*(holders[(i, j)] for j in range(128)))
        t0 = min(ts)
        closure = {t0}
        for mask in red.xor_masks:
            closure |= {t ^ mask for t in closure}
        assert closure <= ts
        assert len(ts) == len(closure) * red.cross_warp
        assert 128 == red.in_thread * len(ts)
    assert red.shuffle.name == "shfl.bfly.reduce" and red.xor_masks


ATTN = KERNELS / "attention.tile"


def test_flash_attention_keeps_p_in_the_accumulator_layout_and_pt_in_shared_memory():
    """Softmax runs in the mma accumulator layout of S = QK^T; P, read only by the second gemm, is
    evaluated straight into a swizzled shared tile where ldmatrix reads it (no register copy)."""
    k = tilelang.load(ATTN)["attention_prefill"]
    tk = k.lower()
    for target in ("sm_80", "sm_90a"):
        plan = infer_layouts(tk, target)
        assert plan.mapping("p") == plan.mapping("qk") == plan.mapping("sc")
        assert plan.tile("pt").storage == "resident" and plan.shared("pt").swizzle is not None
        assert plan.tile("rows").storage == plan.tile("cols").storage == "virtual"
        pt = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Assign) and s.name == "pt"))
        assert pt.mapping == plan.mapping("p") and not pt.conversions
    kinds = {p.kind for p in infer_layouts(tk, "sm_90a").stmts if isinstance(p, GemmPlan)}
    assert kinds == {"wgmma"}  # both gemms read shared (and resident) tiles in canonical layouts


def test_conversion_through_shared_memory_is_recorded_where_needed():
    k = tilelang.load(ATTN)["attention_decode"]
    tk = k.lower()
    plan = infer_layouts(tk)
    a = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Assign) and s.name == "m_new"))
    (conv, *_) = a.conversions
    assert conv.kind == "shared" and conv.dst == plan.mapping("m_new")


GEMM = SMALL_GEMM


def test_gemm_instructions():
    tk, plan = plan_of(GEMM)
    g = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Gemm)))
    assert g.kind == "mma" and (g.tiling.wm, g.tiling.wn) == (2, 2)
    assert [i.name for i in g.instrs] == ["ldmatrix.x4", "ldmatrix.x4.trans", "mma.m16n8k16.f32.f16"]
    assert g.instrs[-1].atom.name == "mma.m16n8k16.f32.f16"
    copy_a = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Copy) and s.dst == N.TileRef("a")))
    assert [i.name for i in copy_a.instrs] == ["ld.global.v4.b32", "st.shared.v4.b32"] and copy_a.mapping is None
    store = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Copy) and isinstance(s.dst, N.GlobalRef)))
    assert store.instrs[0].name == "st.global.v2.b32" and store.instrs[0].vector == 2
    assert plan.tile("a").expr == N.LayoutExpr("swizzle", (2, 3, 3))
    tk, hopper = plan_of(GEMM, "sm_90a")
    g = hopper.stmt(stmt(tk, lambda s: isinstance(s, N.Gemm)))
    assert g.kind == "wgmma" and g.instrs[0].name == "wgmma.m64n64k16.f32.f16"
    assert g.a_desc.k_major and not g.b_desc.k_major
    assert hopper.shared("a").scheme.startswith("wgmma canonical 64B")


def test_pipelined_copies_are_cp_async():
    src = GEMM.replace("    copy(A[block_id(0), 0], a);\n    copy(B[0, block_id(1)], b);\n    gemm(a, b, acc);",
                       "    for kk in pipelined(cdiv(K, 32), stages=3) {\n        copy(A[block_id(0), kk], a);\n"
                       "        copy(B[kk, block_id(1)], b);\n        gemm(a, b, acc);\n    }")
    tk, plan = plan_of(src)
    copy_a = stmt(tk, lambda s: isinstance(s, N.Copy) and s.dst == N.TileRef("a"))
    (ins,) = plan.instrs(copy_a)
    assert ins.name == "cp.async.16" and ins.atom.attr("bytes") == 16 and ins.vector == 8


def test_plan_answers_backend_questions():
    tk, plan = plan_of(GEMM)
    grid = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Gemm))).tiling
    for i, j in ((0, 0), (9, 3), (63, 63), (17, 40)):
        (thread, reg), = plan.holders("acc", (i, j))
        warp = (i // (64 // grid.wm)) * grid.wn + j // (64 // grid.wn)
        assert thread == 32 * warp + (i % 8) * 4 + (j % 8) // 2  # the PTX C fragment
        assert plan.values("acc", thread)[reg] == (i, j)
        assert reg % 4 == (j % 2) + 2 * ((i % 16) // 8)
    # Sw<2,3,3> on 64 x 32 halfs: 16-byte chunk c of row r is stored at chunk c ^ ((r // 2) % 4)
    for r, c in ((0, 0), (2, 0), (5, 17), (63, 31)):
        assert plan.byte_offset("a", (r, c)) == r * 64 + (((c // 8) ^ ((r // 2) % 4)) * 8 + c % 8) * 2
    assert plan.storage_bytes("a") == 64 * 32 * 2
    tk, plan = plan_of(BIAS)
    y = stmt(tk, lambda s: isinstance(s, N.Assign) and s.name == "y")
    # the bias, as the sum consumes it: x's mapping with the broadcast rows replicated
    assert plan.expr_mapping(y, y.value.lhs.rhs) == tv.drop_leading(tv.collapse(plan.mapping("x"), [0]), 1)


def test_gemm_without_an_mma_atom_falls_back_to_fma():
    tk, plan = plan_of(GEMM.replace("f16", "f32"))
    g = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Gemm)))
    assert g.kind == "fma" and g.atom is None and g.instrs[0].name == "fma.f32" and "no mma.sync atom" in g.why


def test_annotations_are_respected():
    src = GEMM.replace("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=padded(8));") \
        .replace("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=mma_c);")
    src = src.replace("copy(acc, C[block_id(0), block_id(1)]);",
                      "r = register(f32[64, 64], layout=spatial(16, 8) * local(4, 8));\n    copy(acc, r);\n"
                      "    y = r * 2.0;\n    copy(y, C[block_id(0), block_id(1)]);")
    tk, plan = plan_of(src)
    assert plan.tile("a").expr == N.LayoutExpr("padded", (8,))
    assert plan.shared("a").cosize == 63 * 40 + 32
    assert plan.mapping("r") == tv.canonical(spatial(16, 8) * local(4, 8))
    # acc, r and y are computed together (a copy, an elementwise statement): they take the first fixed
    # mapping among them, the accumulator's; r keeps its annotation and is converted where it is read
    assert plan.mapping("y") == plan.mapping("acc")
    conv = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Copy) and s.dst == N.TileRef("r")))
    assert conv.conversion == "shared"
    y = plan.stmt(stmt(tk, lambda s: isinstance(s, N.Assign) and s.name == "y"))
    assert [c.kind for c in y.conversions] == ["shared"]
    assert plan.cost.round_trips == 2
    # a padded operand is no layout a wgmma descriptor reads: on sm_90a the gemm stays on mma.sync
    tk, hopper = plan_of(src, "sm_90a")
    g = hopper.stmt(stmt(tk, lambda s: isinstance(s, N.Gemm)))
    assert g.kind == "mma" and "descriptor" in g.why


def test_an_annotation_wgmma_can_read_keeps_wgmma():
    src = GEMM.replace("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=swizzle(2, 3, 3));") \
        .replace("b = shared(f16[32, 64]);", "b = shared(f16[32, 64], layout=gmma);")
    tk, plan = plan_of(src, "sm_90a")
    assert plan.stmt(stmt(tk, lambda s: isinstance(s, N.Gemm))).kind == "wgmma"


def test_annotation_smaller_than_the_tile_repeats_over_it():
    src = BIAS.replace("x = register(f32[BM, BN]);", "x = register(f32[BM, BN], layout=spatial(4, 32) * local(1, 4));")
    tk, plan = plan_of(src)
    m = plan.mapping("x")
    assert m.values_per_thread == 16 and cells(m)[(4, 0)] == [(0, 4)]


# ----------------------------------------------------------------------------- errors

def error_of(src: str) -> TileError:
    with pytest.raises(TileError) as e:
        infer_layouts(lower(src))
    return e.value


def line_of(src: str, text: str) -> int:
    return next(i for i, line in enumerate(src.splitlines(), 1) if text in line)


def test_annotation_contradicting_the_accumulator_names_both_lines():
    src = GEMM.replace("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=spatial(16, 8) * local(4, 8));")
    e = error_of(src)
    assert e.loc.line == line_of(src, "gemm(a, b, acc)")
    assert [loc.line for _, loc in e.related] == [line_of(src, "layout=spatial")]
    assert "accumulator" in e.message and "layout=mma_c" in e.hint and "copy(acc2, acc)" in e.hint


def test_fragment_role_annotation_contradicting_the_gemm():
    src = GEMM.replace("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=mma_a);")
    e = error_of(src)
    assert e.loc.line == line_of(src, "gemm(")
    assert e.related[0][1].line == line_of(src, "layout=mma_a")


TWO_ROLES = """
kernel k(A: f16[M, K], B: f16[K, N], C: f32[M, N])
    grid(cdiv(M, 64), cdiv(N, 64)) threads(128)
{
    x = register(f16[64, 64]);
    w = shared(f16[64, 64]);
    acc1 = register(f32[64, 64]);
    acc2 = register(f32[64, 64]);
    copy(A[block_id(0), 0], x);
    copy(B[0, block_id(1)], w);
    gemm(x, w, acc1);
    gemm(w, x, acc2);
    y = acc1 + acc2;
    copy(y, C[block_id(0), block_id(1)]);
}
"""


def test_a_register_operand_is_held_as_its_first_gemms_fragment():
    """A register operand nothing else constrains takes the mma fragment of the first gemm reading it, which
    then reads it straight from registers; a gemm wanting it in another role stages it through shared memory
    (the plan shows the round trip)."""
    tk, plan = plan_of(TWO_ROLES)
    g1, g2 = (p for p in plan.stmts if isinstance(p, GemmPlan))
    assert plan.mapping("x") == g1.a and "read from registers" in plan.tile("x").origin
    assert [i.name for i in g1.instrs][0] == "mov" and "convert.shared" in [i.name for i in g2.instrs]
    assert plan.cost.round_trips == 2  # x for the second gemm, and acc2 (another warp grid) in y = acc1 + acc2


def test_the_suggested_fixes_work():
    src = GEMM.replace("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=spatial(16, 8) * local(4, 8));")
    fixed = src.replace("gemm(a, b, acc);", "acc2 = register(f32[64, 64]);\n    gemm(a, b, acc2);\n    copy(acc2, acc);")
    plan_of(fixed)


@pytest.mark.parametrize("layout,scope,needle", [
    ("row_major", "register", "shared-memory layout"),
    ("spatial(4, 32)", "shared", "register layout"),
    ("spatial(16, 16) * local(4, 4)", "register", "over 256 threads but the kernel runs 128"),
    ("spatial(16, 8) * local(3, 8)", "register", "does not divide"),
    ("blocked(2)", "register", "unknown layout"),
    ("swizzle(3, 3, 1)", "shared", "|shift| must be at least bits"),
    ("padded", "shared", "takes 1 integer arguments"),
])
def test_bad_annotations_are_located(layout, scope, needle):
    src = GEMM.replace("acc = register(f32[64, 64]);", f"t = {scope}(f32[64, 64], layout={layout});\n"
                                                      "    acc = register(f32[64, 64]);")
    e = error_of(src)
    assert needle in e.message
    assert e.loc.line == line_of(src, "t = ") and e.loc.col == src.splitlines()[e.loc.line - 1].index(layout) + 1


def test_swizzle_that_leaves_the_tile_is_rejected():
    src = GEMM.replace("a = shared(f16[64, 32]);", "a = shared(f16[64, 32]);\n    t = shared(f16[10, 10], layout=swizzle(3, 3, 3));")
    e = error_of(src)
    assert "does not permute the 10 x 10 offsets" in e.message and e.loc.line == line_of(src, "t = shared")


# ----------------------------------------------------------------------------- whole kernels

def all_kernels():
    for f in sorted(KERNELS.glob("*.tile")):
        for name, k in tilelang.load(f).items():
            yield pytest.param(k, id=f"{f.stem}.{name}")


@pytest.mark.parametrize("kernel", list(all_kernels()))
def test_inference_is_deterministic_and_idempotent(kernel):
    tk = kernel.lower()
    plan = infer_layouts(tk)
    assert infer_layouts(kernel.lower()) == plan
    pinned = pin_layouts(tk, plan)
    assert all(s.layout is not None for s in _allocs(pinned.kernel))
    assert infer_layouts(pinned) == plan
    # the same through the annotations as text, as an author would paste them
    (again,) = tilelang.loads(kernel_str(pinned.kernel), "pinned.tile").values()
    assert infer_layouts(again.lower()) == plan


def _allocs(kernel):
    from tilelang.ir.visit import walk_stmts
    return [s for s in walk_stmts(kernel.body) if isinstance(s, N.Alloc)]


def check_plan_invariants(tk, plan):
    for t in plan.tiles:
        if t.mapping is not None:
            m = t.mapping
            assert m.shape == t.type.shape and m.num_threads <= tk.threads
            coords = {m(th, v) for th in range(m.num_threads) for v in range(m.values_per_thread)}
            assert len(coords) == t.type.numel
            th = m.num_threads - 1
            for v, c in enumerate(plan.values(t.name, th)):
                assert (th, v) in plan.holders(t.name, c)
        elif t.shared is not None:
            offs = {plan.offset(t.name, c) for c in itertools.product(*map(range, t.type.shape))}
            assert len(offs) == t.type.numel and max(offs) < plan.shared(t.name).cosize
    for p in plan.stmts:
        for i in getattr(p, "instrs", ()):
            assert i.vector >= 1
        if isinstance(p, CopyPlan) and p.mapping is not None:
            assert p.mapping.num_threads <= tk.threads


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([("gemm.tile", "gemm"), ("softmax.tile", "softmax"), ("rmsnorm.tile", "rmsnorm"),
                        ("gemv.tile", "gemv"), ("attention.tile", "attention_prefill")]),
       st.sampled_from([1, 3, 8, 16, 48, 64]), st.sampled_from([8, 24, 32, 40, 64, 100]),
       st.sampled_from([16, 24, 32, 64]))
def test_random_tile_sizes_give_valid_plans(which, a, b, c):
    f, name = which
    k = tilelang.load(KERNELS / f)[name]
    consts = {"gemm": dict(BM=a, BN=b, BK=c), "softmax": dict(BM=a, BN=b), "rmsnorm": dict(BM=a, BH=b),
              "gemv": dict(BN=a, BK=b), "attention_prefill": dict(BM=a, BN=b, BD=c)}[name]
    try:
        tk = k.lower(**consts)
    except TileError:
        return  # e.g. does not fit the launch: the verifier's business
    check_plan_invariants(tk, infer_layouts(tk))
