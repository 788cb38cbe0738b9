"""Layout inference: give every tile a layout and every statement its instructions, for a target.

`infer_layouts(tk, target) -> LayoutPlan` is the single source of every layout decision the
backends make: each register tile's task mapping, each shared tile's layout, each gemm's
instruction and warp (group) grid, each copy's and dequant's vector width, and which tiles are
kept in shared memory or recomputed instead of stored. The CUDA backend and the TVM cuda
lowering emit what it says; `tilelang show --layouts` prints it.

The steps, in order (each statement kind's part is its rule in `rules.py`):

1. what the IR says before any choice: tiles defined by iota/full alone are *virtual*
   (recomputed where used); register tiles defined once and read only by gemms are
   *resident* (kept in shared memory, where the gemm reads them);
2. the rules' `infer`, statement kinds in `rules.ORDER`: author annotations (one reading of
   them for every backend: `annotations.py`), gemm candidates, the groups of tiles an
   elementwise statement or a register copy computes at the same coordinates, dequant runs;
3. gemm instructions (`gemm.py`): mma.sync where dtypes and shapes allow, wgmma on sm_90a
   where every gemm into an accumulator can;
4. shared layouts: the author's, else the canonical wgmma swizzle for wgmma operands, else
   the standard swizzle for mma operands of 16-bit types (conflict-free ldmatrix), else
   row-major; then wgmma's descriptors are read off the chosen layouts (an accumulator any of
   whose operands they cannot express stays on mma.sync) and mma operands that ldmatrix
   cannot read make their gemm a SIMT loop;
5. register mappings: accumulators take their instruction's fragments, annotated tiles their
   annotation; each group of tiles computed together takes a fixed mapping of one of its
   members, else the flat mapping (runs of up to 16 bytes dealt to the threads in turn, longer
   runs where packed weights are dequantized, so each thread loads whole 16-byte words);
6. statement plans and a validation of each.

A tile that two hard constraints want in incompatible layouts (an annotation and the
accumulator fragment, a fragment annotation of the wrong role) is a TileError naming both
source lines. An operand held in another mapping than its expression needs is converted
(through shared memory, at a cost the plan shows).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..diagnostics import InternalError, SourceLoc, TileError
from ..ir import nodes as N
from ..ir.printer import stmt_lines
from ..ir.types import TileType
from ..ir.visit import rewrite_stmt, sub_exprs, walk_stmts
from ..passes.infer import TypedKernel, tile_names_in_order
from ..passes.infer import infer as infer_types
from . import gemm as G
from . import tv
from . import wgmma as WG
from .annotations import Fragment, elem_bytes, register_layout, shared_layout
from .atoms import ATOMS, get_atom
from .cost import REGISTER_BUDGET, Cost, CopyAccess, FragmentAccess, fragment_instr, offset_table
from .plan import (AssignPlan, Conversion, CopyPlan, DequantPlan, GemmPlan, Instr, LayoutPlan, Path, ReducePlan,
                   TileLayout, children)
from .rules import ORDER, RULES, register
from .shared import SharedLayout, shared_dims, smem_gmma, smem_row_major, smem_swizzled, standard_swizzle
from .errors import LayoutError
from .packing import packed_layout
from .target import Target, layout_target
from .task_mapping import TaskMapping
from .tiling import coalesced, default_vector, flat, mma_fragments, mma_tiling

_ROLE_NAMES = {"A": "A operand", "B": "B operand", "C": "accumulator"}


def infer_layouts(tk: TypedKernel, target: str | Target | None = None) -> LayoutPlan:
    """The plan of `tk` for `target` (an arch such as "sm_90a" or "sm_80"; None: the default GPU).

    Remembered on the typed kernel per target, so every backend compiling it asks for (and
    refers by identity to the statements of) the same plan."""
    t = layout_target(target)
    plan = tk.plans.get(t)
    if plan is None:
        plan = tk.plans[t] = _infer(tk, t)
    return plan


def _infer(tk: TypedKernel, target: Target) -> LayoutPlan:
    st = _State(tk, target)
    for kind in ORDER:
        for _, s in st.stmts:
            if type(s) is kind:
                RULES[kind].infer(st, s)
    _choose_gemms(st)
    _choose_shared(st)
    _describe_wgmma(st)
    _fix_fragments(st)
    _resolve_mappings(st)
    _ldmatrix_fallback(st)
    _packed_layouts(st)
    plans, cost = [], Cost()
    for i, s in st.stmts:
        p, c = _rule(st, s).plan(st, i, s)
        if p is not None:
            plans.append(p)
            cost += c
    accesses = _shared_accesses(st, plans)
    regs = sum(-(-m.values_per_thread * st.tile(n).dtype.bits // 32) for n, m in st.maps.items())
    cost += Cost(register_excess=max(regs - REGISTER_BUDGET, 0), registers=regs)
    plan = LayoutPlan(tk.kernel.name, st.T, target, _tile_layouts(st, accesses), tuple(plans), cost,
                      tuple(layout for layout, _ in st.packed.values()))
    _validate(st, plan)
    return plan


def pin_layouts(tk: TypedKernel, plan: LayoutPlan) -> TypedKernel:
    """`tk` with every allocated tile annotated (`layout=`) with its layout in `plan`.

    Inference on the result reproduces `plan` (tiles defined by assignment have no
    declaration to annotate; they follow from the others)."""
    exprs = {t.name: t.expr for t in plan.tiles}

    def pin(s):
        return dataclasses.replace(s, layout=exprs[s.name]) if isinstance(s, N.Alloc) else None

    body = tuple(rewrite_stmt(s, lambda e: None, pin) for s in tk.kernel.body)
    return infer_types(dataclasses.replace(tk.kernel, body=body), tk.consts)


def _rule(st: "_State", s: N.Stmt):
    r = RULES.get(type(s))
    if r is None:
        raise InternalError(f"no layout rule for statement kind {type(s).__name__}", "layout inference",
                            st.tk.kernel.name, s.loc)
    return r


def _text(s: N.Stmt) -> str:
    return stmt_lines(s, indent="")[0].rstrip(";")


def _ebytes(dtype) -> int:
    return max(dtype.bits, 8) // 8


# ----------------------------------------------------------------------------- state

class _State:
    """What the rules share: the kernel's facts, their decisions so far."""

    def __init__(self, tk: TypedKernel, target: Target):
        self.tk, self.target, self.T = tk, target, tk.threads
        self.stmts: list[tuple[int, N.Stmt]] = list(enumerate(walk_stmts(tk.kernel.body)))
        self.order = tile_names_in_order(tk.kernel)
        self.allocs = {s.name: s for _, s in self.stmts if isinstance(s, N.Alloc)}
        self.defs = {s.name: s for _, s in self.stmts if isinstance(s, N.Assign) and s.define}
        self.gemms = [s for _, s in self.stmts if isinstance(s, N.Gemm)]
        self.virtual = _virtual_tiles(self)
        self.resident = _gemm_only_tiles(self)
        # annotations
        self.ann_map: dict[str, tuple[TaskMapping, N.LayoutExpr]] = {}
        self.ann_frag: dict[str, tuple[Fragment, N.LayoutExpr]] = {}
        self.ann_shared: dict[str, tuple[SharedLayout, N.LayoutExpr]] = {}
        # gemm instructions
        self.mma: dict[int, object] = {}           # id(Gemm) -> MmaTiling
        self.mma_accs: dict[str, object] = {}      # accumulator -> MmaTiling
        self.wg_accs: dict[str, object] = {}       # accumulator -> WgmmaTiling (candidates, then final)
        self.wgmma: dict[int, tuple] = {}          # id(Gemm) -> (WgmmaTiling, OperandPlan a, OperandPlan b)
        self.gemm_why: dict[int, str] = {}
        # tiles
        self.shared: dict[str, tuple] = {}         # name -> (SharedLayout, LayoutExpr, origin)
        self.fixed: dict[str, tuple[TaskMapping, str, SourceLoc | None]] = {}
        self.roles: dict[str, tuple[str, N.Gemm]] = {}
        self.parent: dict[str, str] = {}           # union-find of tiles computed at the same coordinates
        self.dequant_runs: dict[str, int] = {}
        self.packed: dict[str, tuple] = {}         # packed tensor -> (PackedLayout, the dequant that fixes it)
        self.maps: dict[str, TaskMapping] = {}
        self.why: dict[str, tuple[str, SourceLoc | None]] = {}
        for name in self.order:  # register tiles held in registers, each its own group to start with
            if self.is_reg(name) and name not in self.virtual and name not in self.resident:
                self.parent[name] = name

    def tile(self, name: str) -> TileType:
        return self.tk.tiles[name]

    def is_reg(self, name: str) -> bool:
        return self.tile(name).scope == "register"

    def in_shared(self, name: str) -> bool:
        """Whether a gemm reads this operand from shared memory without a conversion."""
        return self.tile(name).scope == "shared" or name in self.resident

    def type_of(self, e) -> TileType | None:
        t = self.tk.type_of(e)
        return t if isinstance(t, TileType) else None

    def set_map(self, name: str, m: TaskMapping, why: str, loc) -> None:
        self.maps[name] = m
        self.why[name] = (why, loc)

    # union-find over register tiles held in registers
    def member(self, name: str) -> bool:
        return name in self.parent

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            n = self.parent[n]
        return n

    def union(self, names: list[str]) -> None:
        names = [n for n in names if n in self.parent]
        for n in names[1:]:
            self.parent[self.find(n)] = self.find(names[0])


# ----------------------------------------------------------------------------- 1. what the IR says

def _written_tile(s: N.Stmt) -> str | None:
    if isinstance(s, (N.Copy, N.Dequant)) and isinstance(s.dst, N.TileRef):
        return s.dst.name
    if isinstance(s, N.Gemm):
        return s.acc.name
    if isinstance(s, N.Assign):
        return s.name
    return None


def _virtual_tiles(st: _State) -> dict[str, N.Expr]:
    """Tiles defined by iota/full/scalars alone, only read by expressions: cheaper to recompute than to hold."""
    out: dict[str, N.Expr] = {}
    uses_elsewhere, written = set(), set()
    for _, s in st.stmts:
        if isinstance(s, (N.Copy, N.AtomicAdd)) and isinstance(s.src, N.TileRef):
            uses_elsewhere.add(s.src.name)
        if isinstance(s, N.Gemm):
            uses_elsewhere |= {s.a.name, s.b.name}
        w = _written_tile(s)
        if w is not None and not (isinstance(s, N.Assign) and s.define):
            written.add(w)
    for _, s in st.stmts:
        if isinstance(s, N.Assign) and s.define and s.name not in uses_elsewhere | written:
            leaves = [x for x in sub_exprs(s.value) if isinstance(x, (N.TileRef, N.Reduce))]
            if all(isinstance(x, N.TileRef) and x.name in out for x in leaves):
                out[s.name] = s.value
    return out


def _gemm_only_tiles(st: _State) -> set[str]:
    """2-d tiles defined once by an expression and read only as gemm operands: the expression is
    evaluated straight into a (swizzled) shared buffer, where the gemm reads it."""
    out = set()
    for name in set(st.defs) - set(st.virtual):
        ok = True
        for _, s in st.stmts:
            if isinstance(s, N.For) or (isinstance(s, N.Assign) and s.define and s.name == name):
                continue
            if isinstance(s, N.Gemm):
                ok &= s.acc.name != name
                continue
            if name in s.reads() | s.writes():
                ok = False
        if ok and len(st.tile(name).shape) == 2:
            out.add(name)
    return out


# ----------------------------------------------------------------------------- 2. the rules

def _alloc_infer(st: _State, s: N.Alloc) -> None:
    """Author annotations, read once for every backend; register tiles join the mapping groups."""
    tile = st.tile(s.name)
    if s.layout is None:
        return
    if tile.scope == "shared":
        st.ann_shared[s.name] = (shared_layout(s.layout, tile), s.layout)
    else:
        got = register_layout(s.layout, tile, st.T)
        if isinstance(got, Fragment):
            st.ann_frag[s.name] = (got, s.layout)
        else:
            st.ann_map[s.name] = (got, s.layout)


def _gemm_infer(st: _State, s: N.Gemm) -> None:
    if st.tile(s.acc.name).scope != "register":
        raise TileError(f"the gemm accumulator '{s.acc.name}' must be a register tile", s.acc.loc,
                        hint="declare it with register(...) and copy it to shared memory afterwards if needed")


def _assign_infer(st: _State, s: N.Assign) -> None:
    """The target and the operands read at its own coordinates share a mapping; so do the operands
    of a reduction, at the reduction input's coordinates."""
    if s.name in st.virtual or s.name in st.resident:
        groups = []
    else:
        groups = [[s.name] + _elementwise_leaves(st, s.value, st.tile(s.name).shape)]
    for r in (x for x in sub_exprs(s.value) if isinstance(x, N.Reduce)):
        groups.append(_elementwise_leaves(st, r.x, st.type_of(r.x).shape))
    for g in groups:
        st.union(g)


def _copy_infer(st: _State, s: N.Copy) -> None:
    for g in (s.src, s.dst):
        if isinstance(g, N.GlobalRef) and st.tk.tensor(g.tensor).storage == "packed":
            raise TileError(f"'{g.tensor}' is stored packed (its order is the plan's): only dequant reads it", g.loc,
                            hint=f"dequant({g.tensor}[...], tile, scale=..., group=...) into a register tile")
    if isinstance(s.src, N.TileRef) and isinstance(s.dst, N.TileRef):
        st.union([x.name for x in (s.src, s.dst) if st.is_reg(x.name)])


def _dequant_infer(st: _State, s: N.Dequant) -> None:
    """Register tiles dequantized from packed weights want runs of 16 bytes of packed fields (32
    elements of 4 bits, 16 of 8), so that each thread loads whole 16-byte words of W."""
    if st.tk.tensor(s.src.tensor).storage == "packed" and not st.is_reg(s.dst.name):
        raise TileError(f"'{s.src.tensor}' is stored packed in the order of the register tile it is dequantized "
                        f"into; '{s.dst.name}' is a shared tile", s.dst.loc,
                        hint="dequantize it into a register(...) tile (a gemm reads that straight from registers)")
    if st.is_reg(s.dst.name):
        bits = st.tk.tensor(s.src.tensor).dtype.bits
        if bits in (1, 2, 4, 8):
            st.dequant_runs[s.dst.name] = max(st.dequant_runs.get(s.dst.name, 8), 128 // bits)


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape without leading 1s: [1, N] and [N] hold the same elements in the same order."""
    i = 0
    while i < len(shape) - 1 and shape[i] == 1:
        i += 1
    return tuple(shape[i:])


def _elementwise_leaves(st: _State, e, shape) -> list[str]:
    """Register tiles read at the value's own coordinates (no broadcast, transpose or reduction between)."""
    t = st.type_of(e)
    if t is None or _squeeze(t.shape) != _squeeze(tuple(shape)):
        return []
    if isinstance(e, N.TileRef):
        return [] if e.name in st.virtual else [e.name]
    kids = {N.BinOp: ("lhs", "rhs"), N.Unary: ("x",), N.Cast: ("x",), N.Where: ("cond", "a", "b")}.get(type(e), ())
    return [n for k in kids for n in _elementwise_leaves(st, getattr(e, k), shape)]


# ----------------------------------------------------------------------------- 3. gemm instructions

def _choose_gemms(st: _State) -> None:
    split = {g.acc.name for g in st.gemms if _summed_once(st, g.acc.name)}
    held = lambda name: name in st.parent  # noqa: E731 - register operands held in registers
    for g in st.gemms:
        til = G.mma_accumulator(st.tk, g, g.acc.name in split, held)
        prev = st.mma_accs.get(g.acc.name)
        if til is not None and prev is not None and prev != til:  # gemms into one accumulator: one tiling
            til = G.mma_accumulator(st.tk, g)
        if til is not None:
            st.mma_accs[g.acc.name] = til
            st.mma[id(g)] = til
        else:
            st.gemm_why[id(g)] = "no mma.sync atom fits its dtypes and shapes"
    if st.target.wgmma:
        st.wg_accs = G.wgmma_accumulators(st.tk, st.gemms, st.in_shared)


def _summed_once(st: _State, acc: str) -> bool:
    """Whether an accumulator is only summed into by its gemms, then read: zero-initialized, and every
    other statement touching it comes after the last top-level statement holding one of its gemms.
    Such an accumulator may split k over warp groups, its partial sums added once, before the read."""
    alloc = st.allocs.get(acc)
    if alloc is None or alloc.init is not None:
        return False
    body = st.tk.kernel.body
    last_gemm, first_other = -1, len(body)
    for i, top in enumerate(body):
        for s in walk_stmts((top,)):
            if isinstance(s, N.Gemm) and s.acc.name == acc:
                last_gemm = i
            elif not isinstance(s, (N.Alloc, N.For)) and acc in s.reads() | s.writes() and not (
                    isinstance(s, N.Gemm) and acc not in s.writes()):
                first_other = min(first_other, i)
    return last_gemm < first_other


# ----------------------------------------------------------------------------- 4. shared layouts

def _choose_shared(st: _State) -> None:
    fed_gmma = {x.name for g in st.gemms if g.acc.name in st.wg_accs for x in (g.a, g.b)}
    fed_mma = {x.name for g in st.gemms if id(g) in st.mma for x in (g.a, g.b) if st.tile(x.name).scope == "shared"}
    fed_mma |= st.resident
    names = [n for n in st.order if st.tile(n).scope == "shared"] + [n for n in st.order if n in st.resident]
    for name in names:
        tile = st.tile(name)
        if name in st.ann_shared:
            layout, expr = st.ann_shared[name]
            st.shared[name] = (layout, expr, f"annotated `{expr}`")
            continue
        rows, cols = shared_dims(tile.shape)
        eb = elem_bytes(tile)
        layout = None
        if name in fed_gmma and len(tile.shape) == 2:
            layout, why = smem_gmma(rows, cols, eb), "a wgmma operand: the canonical layout its descriptor reads"
        if layout is None and name in fed_mma and len(tile.shape) == 2 and eb == 2:
            try:
                layout, why = smem_swizzled(rows, cols, eb), "an mma operand: ldmatrix reads it without bank conflicts"
            except LayoutError:
                layout = None
        if layout is None:
            layout, why = smem_row_major(rows, cols, eb), "row-major (no instruction asks for another layout)"
        if name in st.resident:
            why = f"kept in shared memory (only gemms read it); {why}"
        st.shared[name] = (layout, _shared_expr(layout), why)


def _shared_expr(layout: SharedLayout) -> N.LayoutExpr:
    """A layout as the annotation that gives it back."""
    if layout.swizzle is not None and not layout.block:
        sw = layout.swizzle
        return N.LayoutExpr("swizzle", (sw.bits, sw.base, sw.shift))
    if layout.block or layout.swizzle is not None:
        return N.LayoutExpr("gmma")
    if layout.row_stride == 1 and layout.rows > 1:
        return N.LayoutExpr("col_major")
    if layout.row_stride != layout.cols:
        return N.LayoutExpr("padded", (layout.row_stride - layout.cols,))
    return N.LayoutExpr("row_major")


def _describe_wgmma(st: _State) -> None:
    """Descriptors for the gemms of the wgmma accumulators, read off the chosen layouts; an
    accumulator any of whose gemms' operands they cannot express stays on mma.sync."""
    chosen = [(g, G.wgmma_operands(st.tk, g, st.wg_accs[g.acc.name], st.shared[g.a.name][0],
                                   st.shared[g.b.name][0]))
              for g in st.gemms if g.acc.name in st.wg_accs]
    failed = {g.acc.name for g, d in chosen if d is None}
    for g, d in chosen:
        if g.acc.name in failed:
            st.gemm_why[id(g)] = "not wgmma: an operand layout no wgmma descriptor can express"
            continue
        st.wgmma[id(g)] = (st.wg_accs[g.acc.name], *d)
        st.mma.pop(id(g), None)
    for acc in failed:
        st.wg_accs.pop(acc)


def _ldmatrix_fallback(st: _State) -> None:
    """An mma operand in a layout ldmatrix cannot read makes its gemm a SIMT loop."""
    for g in st.gemms:
        if id(g) in st.mma and not all(G.ldmatrix_readable(st.shared[x.name][0]) for x in (g.a, g.b)
                                       if x.name in st.shared):
            del st.mma[id(g)]
            st.gemm_why[id(g)] = "an operand layout ldmatrix cannot read (8 consecutive elements of a row apart)"


# ----------------------------------------------------------------------------- 5. register mappings

def _fix_fragments(st: _State) -> None:
    """Accumulators take their instruction's fragments; annotated tiles their annotation; a tile
    two of these want differently is the author's error."""
    for name, (m, expr) in st.ann_map.items():
        st.fixed[name] = (m, f"annotated `{expr}`", expr.loc)
    for g in st.gemms:
        name = g.acc.name
        if name in st.wg_accs:
            til = st.wg_accs[name]
            frag, text = WG.accumulator(til), f"the accumulator of `{_text(g)}` (wgmma, {WG.describe(til)})"
        elif name in st.mma_accs:
            til = st.mma_accs[name]
            frag = mma_fragments(til, G.dims(st.tk, g)[2], False, False).c
            text = f"the accumulator of `{_text(g)}` (mma.sync, {til.wm}x{til.wn} warps)"
        else:
            continue
        _require(st, name, frag, "C", g, text)
    for g in st.gemms:  # operands annotated with a fragment role: that gemm's fragment of the role
        til = st.mma_accs.get(g.acc.name)
        if til is None:
            continue
        fr = mma_fragments(til, G.dims(st.tk, g)[2], g.trans_a, g.trans_b)
        for ref, m, role in ((g.a, fr.a, "A"), (g.b, fr.b, "B")):
            if ref.name in st.ann_frag:
                _require(st, ref.name, m, role, g, f"the {_ROLE_NAMES[role]} of `{_text(g)}`")
    for g in st.gemms:  # register operands nothing else fixes are held as the fragment: mma reads them directly
        til = st.mma.get(id(g))
        if til is None:
            continue
        fr = mma_fragments(til, G.dims(st.tk, g)[2], g.trans_a, g.trans_b)
        for ref, m, role in ((g.a, fr.a, "A"), (g.b, fr.b, "B")):
            if ref.name in st.parent and not any(n in st.fixed for n in _group(st, ref.name)):
                st.fixed[ref.name] = (m, f"the {_ROLE_NAMES[role]} of `{_text(g)}`, read from registers", g.loc)
    for name, (frag, expr) in st.ann_frag.items():  # fragment roles no gemm gave a fragment
        if name not in st.fixed:
            st.fixed[name] = (_default_fragment(st, name, frag.role, expr), f"annotated `{expr}`", expr.loc)


def _group(st: _State, name: str) -> list[str]:
    root = st.find(name)
    return [n for n in st.parent if st.find(n) == root]


def _default_fragment(st: _State, name: str, role: str, expr: N.LayoutExpr) -> TaskMapping:
    """The `role` fragment of an mma.sync over all warps that fits the tile's shape (A: warps down
    the rows, B: warps across the columns)."""
    shape = st.tile(name).shape
    til = k = None
    if len(shape) == 2:
        r, c = shape
        til, k = {"A": (mma_tiling(r, 8, st.T), c), "B": (mma_tiling(16, c, st.T), r),
                  "C": (mma_tiling(r, c, st.T), 16)}[role]
    if til is None or k % 16:
        raise TileError(f"`{expr}` needs a 2-d tile whose extents are multiples of the mma.m16n8k16 {role} fragment "
                        f"over the block's {st.T // 32} warps", expr.loc,
                        hint="use a tile shape such as 64 x 64, or a spatial(...) * local(...) layout")
    fr = mma_fragments(til, k, False, False)
    return {"A": fr.a, "B": fr.b, "C": fr.c}[role]


def _require(st: _State, name: str, m: TaskMapping, role: str, g: N.Gemm, text: str) -> None:
    tile = st.tile(name)
    ann = st.ann_frag.get(name)
    if ann is not None and ann[0].role != role:
        raise TileError(
            f"register tile '{name}' is annotated `{ann[1]}` (the mma {_ROLE_NAMES[ann[0].role]} fragment) but "
            f"this gemm uses it as its {_ROLE_NAMES[role]}", g.loc,
            related=((f"'{name}' is annotated here", ann[1].loc),),
            hint=f"annotate it layout=mma_{role.lower()} or drop the annotation; or convert through shared "
                 f"memory: {_copy_hint(name, tile, role)}")
    if name in st.ann_map and tv.conversion_kind(st.ann_map[name][0], m) != "none":
        expr = st.ann_map[name][1]
        raise TileError(
            f"register tile '{name}' is annotated `{expr}`, but this gemm needs it in the "
            f"{_ROLE_NAMES[role]} fragment layout of its instruction ({m!r})", g.loc,
            related=((f"'{name}' is annotated here", expr.loc),),
            hint=f"drop the annotation or write layout=mma_{role.lower()}; or keep the annotation and convert "
                 f"through shared memory: {_copy_hint(name, tile, role)}")
    prev = st.fixed.get(name)
    if prev is not None and prev[0] != m and name not in st.ann_map:
        raise TileError(f"register tile '{name}' is {text} and {prev[1]} at {prev[2]}: the two fragments give "
                        f"its elements to different threads", g.loc, related=((f"'{name}' gets its layout here",
                                                                              prev[2]),),
                        hint=f"a register tile has one layout: give this gemm its own tile "
                             f"({_copy_hint(name, tile, role)})")
    if name not in st.ann_map:
        st.fixed[name] = (m, text, g.loc)
        st.roles[name] = (role, g)


def _copy_hint(name: str, tile: TileType, role: str) -> str:
    """How to route a tile through a conversion (a copy between register tiles goes through shared memory)."""
    decl = f"{name}2 = register({tile.dtype}[{', '.join(map(str, tile.shape))}]);"
    if role == "C":
        return f"accumulate into `{decl}` and `copy({name}2, {name});` after the gemm"
    return f"`{decl} copy({name}, {name}2);` and pass '{name}2' to this gemm"


def _packed_layouts(st: _State) -> None:
    """A packed tensor is stored in the order of the register tile every dequant of it fills."""
    for _, s in st.stmts:
        if not (isinstance(s, N.Dequant) and st.tk.tensor(s.src.tensor).storage == "packed"):
            continue
        p, t, m = st.tk.tensor(s.src.tensor), st.tile(s.dst.name), st.maps[s.dst.name]
        if len(t.shape) != 2 or len(p.dims) != 2:
            raise TileError(f"packed tensor '{p.name}' must be 2-d and dequantized into a 2-d tile", s.loc)
        layout = packed_layout(p.name, tuple(t.shape), p.dtype.bits, m)
        if layout is None:
            raise TileError(f"'{s.dst.name}' is held by several threads per element ({tv.as_expr(m)}): a packed "
                            f"order stores each element once", s.loc,
                            hint="dequantize into a tile one gemm reads as an mma operand, or declare the tensor "
                                 "without `@ packed`")
        prev = st.packed.get(p.name)
        if prev is not None and prev[0] != layout:
            raise TileError(f"packed tensor '{p.name}' is dequantized into tiles of two layouts", s.loc,
                            related=((f"'{p.name}' is also dequantized here", prev[1].loc),),
                            hint="dequantize it into tiles of one shape that one kind of gemm reads")
        st.packed[p.name] = (layout, s)


def _resolve_mappings(st: _State) -> None:
    """Each group takes the first fixed mapping among its members, else the flat mapping."""
    comps: dict[str, list[str]] = {}
    for n in st.order:
        if n in st.parent:
            comps.setdefault(st.find(n), []).append(n)
    for members in comps.values():
        known = [n for n in members if n in st.fixed]
        if known:
            choice, why_known = st.fixed[known[0]][0], known[0]
            vec = None
        else:
            choice, why_known = None, None
            vec = default_vector(st.tile(members[0]).shape, st.T, max(st.dequant_runs.get(n, 8) for n in members))
        for n in members:
            shape = st.tile(n).shape
            decl = st.allocs.get(n) or st.defs.get(n)
            if n in st.fixed:
                m, why, loc = st.fixed[n]
                st.set_map(n, m, why, loc)
            elif choice is not None and choice.shape == tuple(shape):
                st.set_map(n, choice, f"computed together with '{why_known}'", decl.loc)
            else:
                v = vec if vec is not None else default_vector(shape, st.T)
                m = _flat_default(tuple(shape), st.tile(n), st.T, v)
                reason = f"flat, runs of {v}" + (" (whole 16-byte words of packed fields)" if v > 8 else "")
                st.set_map(n, m, reason if choice is None else f"{reason} (its group's mapping has another shape)",
                           decl.loc)


# ----------------------------------------------------------------------------- 6. statement plans

def _shared_accesses(st: _State, plans: list) -> dict[str, list]:
    """How each shared tile (resident ones included) is written and read by the code the plan asks
    for, for the bank-conflict cost: copies and dequants as their threads move vectors (a sweep
    where no register tile takes part), resident values as their threads store them, mma operands
    as ldmatrix reads them."""
    acc: dict[str, list] = {}

    def add(name: str, kind: str, m: TaskMapping | None, vec: int) -> None:
        t = st.tile(name)
        e = _ebytes(t.dtype)
        m = m or flat(tuple(t.shape), st.T, vec) or coalesced(tuple(t.shape), e, st.T)
        acc.setdefault(name, []).append(CopyAccess(kind, m, min(vec, max(16 // e, 1)), e, shared_dims(t.shape)[1]))

    for p in plans:
        s = p.stmt
        if isinstance(p, (CopyPlan, DequantPlan)):
            sides = ((s.src, "read"), (s.dst, "write")) if isinstance(s, N.Copy) else ((s.dst, "write"),)
            for side, kind in sides:
                if isinstance(side, N.TileRef) and side.name in st.shared:
                    add(side.name, kind, p.mapping, p.vector)
        elif isinstance(p, AssignPlan) and s.name in st.resident:
            add(s.name, "write", p.mapping, 1)
        elif isinstance(p, GemmPlan) and p.kind == "mma":
            fr = mma_fragments(st.mma[id(s)], G.dims(st.tk, s)[2], s.trans_a, s.trans_b)
            for ref, role, frag, trans in ((s.a, "A", fr.a, s.trans_a), (s.b, "B", fr.b, s.trans_b)):
                if ref.name in st.shared:
                    t = st.tile(ref.name)
                    acc.setdefault(ref.name, []).append(FragmentAccess(role, *G.dims(st.tk, s), st.mma[id(s)], trans,
                                                                       frag, _ebytes(t.dtype), t.shape[1]))
    return acc


def _run(m: TaskMapping) -> int:
    return tv.vector_run(m, -1)


def _global_instr(op: str, vec: int, dtype, role: str) -> Instr:
    bits = dtype.bits if dtype.is_packed else _ebytes(dtype) * 8
    while vec > 1 and vec * bits not in (8, 16, 32, 64, 128):
        vec //= 2
    width = {8: "b8", 16: "b16", 32: "b32", 64: "v2.b32", 128: "v4.b32"}.get(vec * bits, "b8")
    name = f"{op}.global.{width}"
    return Instr(name, role, vec, _atom_or_none(name))


def _in_pipeline(st: _State, s: N.Stmt) -> bool:
    for _, loop in st.stmts:
        if isinstance(loop, N.For) and loop.stages is not None and isinstance(loop.stages, N.Const) \
                and loop.stages.value > 1 and any(x is s for x in loop.body):
            return True
    return False


def _divisible(e, n: int) -> bool:
    """Whether scalar expression `e` is provably a multiple of `n` (for every value of its names)."""
    if n == 1:
        return True
    if isinstance(e, N.Const):
        return isinstance(e.value, int) and e.value % n == 0
    if isinstance(e, N.BinOp) and e.op == "mul":
        return _divisible(e.lhs, n) or _divisible(e.rhs, n)
    if isinstance(e, N.BinOp) and e.op in ("add", "sub"):
        return _divisible(e.lhs, n) and _divisible(e.rhs, n)
    if isinstance(e, N.BinOp) and e.op == "shl" and isinstance(e.rhs, N.Const) and isinstance(e.rhs.value, int):
        return _divisible(e.lhs, n) or (1 << e.rhs.value) % n == 0
    return False


def _offset_vector(ref: N.GlobalRef, vec: int) -> int:
    """The widest run a window with element offsets allows: runs of the last axis are vector accesses
    only where its offset is provably a multiple of the run and no `stop` cuts it (rows given by
    element offsets leave the runs alone); narrower (down to one element) otherwise."""
    last = ref.indices[-1]
    if not isinstance(last, N.ElemOffset):
        return vec
    if last.stop is not None:
        return 1
    while vec > 1 and not _divisible(last.start, vec):
        vec //= 2
    return vec


def _copy_plan(st: _State, i: int, s: N.Copy):
    """The plan of a copy; windows with element offsets narrow it (`_offset_vector`)."""
    plan, cost = _tile_copy_plan(st, i, s)
    ref = s.src if isinstance(s.src, N.GlobalRef) else s.dst if isinstance(s.dst, N.GlobalRef) else None
    if ref is None or _offset_vector(ref, plan.vector) == plan.vector:
        return plan, cost
    vec = _offset_vector(ref, plan.vector)
    p = st.tk.tensor(ref.tensor)
    op, role = ("ld", "load") if ref is s.src else ("st", "store")
    if plan.mapping is None and ref is s.src:  # global -> shared moves whole 16-byte chunks or single elements
        vec = 1
        instrs = (_global_instr("ld", 1, p.dtype, "load"), Instr("st.shared", "store", 1))
    else:
        instrs = (_global_instr(op, vec, p.dtype, role),) + plan.instrs[1:]
    return dataclasses.replace(plan, instrs=instrs, vector=vec), cost


def _tile_copy_plan(st: _State, i: int, s: N.Copy):
    src, dst = s.src, s.dst
    reg = lambda x: isinstance(x, N.TileRef) and st.is_reg(x.name) and x.name in st.maps  # noqa: E731
    cost = Cost()
    if isinstance(src, N.GlobalRef) and not reg(dst):  # global -> shared: 16-byte chunks where possible
        t, p = st.tile(dst.name), st.tk.tensor(src.tensor)
        layout = st.shared[dst.name][0]
        n = 16 // _ebytes(t.dtype)
        zero_pad = s.pad is None or (isinstance(s.pad, N.Const) and s.pad.value == 0)
        vec = n if (p.dtype == t.dtype and not p.dtype.is_packed and zero_pad and t.shape[-1] % n == 0
                    and layout.contiguous_run(n)) else 1
        if vec > 1:
            name = "cp.async.16" if _in_pipeline(st, s) else "ld.global.v4.b32"
            instrs = (Instr(name, "load", vec, _atom_or_none(name)),) + \
                (() if name.startswith("cp.async") else (Instr("st.shared.v4.b32", "store", vec),))
        else:
            instrs = (_global_instr("ld", 1, p.dtype, "load"), Instr("st.shared", "store", 1))
        cost += Cost(global_instrs=-(-t.numel // vec))
        return CopyPlan(i, s, None, instrs, "none", 1, vec), cost
    if isinstance(src, N.GlobalRef) or isinstance(dst, N.GlobalRef):
        tile = dst if isinstance(src, N.GlobalRef) else src
        g = src if isinstance(src, N.GlobalRef) else dst
        p = st.tk.tensor(g.tensor)
        op, role = ("ld", "load") if g is src else ("st", "store")
        if reg(tile):
            m = st.maps[tile.name]
            vec = 1 if p.dtype.is_packed else _run(m)
            ins = _global_instr(op, vec, p.dtype, role)
            cost += Cost(global_instrs=m.num_threads * (m.values_per_thread // ins.vector))
            return CopyPlan(i, s, m, (ins,), "none", tv.replication(m), vec), cost
        ins = _global_instr(op, 1, p.dtype, role)  # shared -> global: the threads sweep the tile
        cost += Cost(global_instrs=st.tile(tile.name).numel)
        return CopyPlan(i, s, None, (ins, Instr("ld.shared", "load")), "none", 1, 1), cost
    if reg(src) and reg(dst):
        conversion = tv.conversion_kind(st.maps[src.name], st.maps[dst.name])
        if conversion == "shared":
            cost += Cost(round_trips=1)
        return CopyPlan(i, s, st.maps[dst.name], (Instr("mov" if conversion != "shared" else "convert.shared",
                                                        "convert"),), conversion), cost
    side = dst if reg(dst) else src if reg(src) else None  # shared -> shared: the threads sweep the tile
    return CopyPlan(i, s, st.maps[side.name] if side is not None else None,
                    (Instr("ld.shared" if reg(dst) else "st.shared", "load" if reg(dst) else "store"),),
                    "none", 1, 1), cost


def _atomic_add_plan(st: _State, i: int, s: N.AtomicAdd):
    """One atomic add per element a thread holds (of replicated elements, one replica adds)."""
    m = st.maps[s.src.name]
    ins = Instr("red.global.add", "store", 1)
    return CopyPlan(i, s, m, (ins,), "none", tv.replication(m), 1), Cost(global_instrs=m.num_threads * m.values_per_thread)


def _shared_dequant_run(shape: tuple[int, ...], bits: int, threads: int) -> int:
    """Elements per run when dequantizing into a shared tile: up to 16 bytes of packed fields per
    load while every thread still gets a run, at least 8 (one 16-byte store of f16 pairs)."""
    runs = [v for v in (128 // bits, 64 // bits, 32 // bits, 8, 4, 2, 1) if v >= 1 and shape[-1] % v == 0]
    numel = math.prod(shape)
    return next((v for v in runs if numel // v >= threads or v <= 8), runs[-1])


def _dequant_plan(st: _State, i: int, s: N.Dequant):
    t = st.tile(s.dst.name)
    p = st.tk.tensor(s.src.tensor)
    if s.src.tensor in st.packed:  # each thread's runs of fields are contiguous in the packed order
        m = st.maps[s.dst.name]
        vec = st.packed[s.src.tensor][0].run
    elif st.is_reg(s.dst.name):
        m = st.maps[s.dst.name]
        vec = _run(m)
    else:  # into shared memory: the threads sweep the tile, `vec` fields at a time
        m = None
        vec = _shared_dequant_run(tuple(t.shape), p.dtype.bits, st.T)
    chunk = vec
    while chunk * p.dtype.bits > 128 and chunk % 2 == 0:
        chunk //= 2
    ld = _global_instr("ld", chunk, p.dtype, "load")
    instrs = [ld]
    cost = Cost(global_instrs=-(-t.numel // chunk))
    if not st.is_reg(s.dst.name):
        instrs.append(Instr("st.shared", "store", min(vec, 8)))
    return DequantPlan(i, s, m, tuple(instrs), vec), cost


def _gemm_plan(st: _State, i: int, s: N.Gemm):
    m, n, k = G.dims(st.tk, s)
    acc = st.maps[s.acc.name]
    ab = st.tile(s.a.name).dtype.name
    if id(s) in st.wgmma:
        til, da, db = st.wgmma[id(s)]
        name = f"wgmma.m64n{til.inst_n}k16.f32.{ab}"
        return GemmPlan(i, s, "wgmma", None, til, None, None, acc, (Instr(name, "mma", 1),), da, db), Cost()
    if id(s) in st.mma:
        til = st.mma[id(s)]
        fr = mma_fragments(til, k, s.trans_a, s.trans_b)
        atom = get_atom(f"mma.m16n8k16.f32.{ab}")
        instrs, cost = [], Cost()
        for ref, role, frag, trans in ((s.a, "A", fr.a, s.trans_a), (s.b, "B", fr.b, s.trans_b)):
            if ref.name in st.shared:
                t = st.tile(ref.name)
                name, vec, _ = fragment_instr(st.shared[ref.name][0], FragmentAccess(
                    role, m, n, k, til, trans, frag, _ebytes(t.dtype), t.shape[1]))
                instrs.append(Instr(name, role, vec, _atom_or_none(name)))
            elif st.maps.get(ref.name) == frag:  # held as the fragment: the mma reads the registers
                instrs.append(Instr("mov", role, 2))
            else:
                instrs.append(Instr("convert.shared", role))  # staged to shared memory for ldmatrix
                cost += Cost(round_trips=1)
        instrs.append(Instr(atom.name, "mma", 1, atom))
        return GemmPlan(i, s, "mma", atom, til, fr.a, fr.b, acc, tuple(instrs), why=st.gemm_why.get(id(s), "")), cost
    return GemmPlan(i, s, "fma", None, None, None, None, acc, (Instr("fma.f32", "mma"),),
                    why=st.gemm_why.get(id(s), "")), Cost()


def _assign_plan(st: _State, i: int, s: N.Assign):
    if s.name in st.virtual:  # recomputed where it is used
        return None, None
    tile = st.tile(s.name)
    # a resident tile's value is computed by threads in its operands' mapping, straight into shared memory
    root = _inherited(st, s.value) if s.name in st.resident else st.maps[s.name]
    exprs: list[tuple[Path, TaskMapping]] = []
    convs: list[Conversion] = []
    reds: list[ReducePlan] = []
    _place(st, s.value, _operand(root, tile.shape, st.type_of(s.value).shape), (), exprs, convs, reds)
    cost = Cost(round_trips=sum(c.kind == "shared" for c in convs) + sum(r.cross_warp > 1 for r in reds),
                shuffles=sum(len(r.xor_masks) for r in reds))
    return AssignPlan(i, s, root, tuple(exprs), tuple(convs), tuple(reds)), cost


def _inherited(st: _State, e) -> TaskMapping:
    """The mapping an expression is computed in where it needs a temporary (a reduction's input, a
    resident tile's value): a held tile's own; else the first of its operand tiles read at its
    coordinates whose mapping is not flat (a fragment, an annotation), else the first such
    operand's; else the flat mapping of its shape."""
    if isinstance(e, N.TileRef) and e.name in st.maps:
        return st.maps[e.name]
    t = st.type_of(e)
    found = [st.maps[n] for n in _elementwise_leaves(st, e, t.shape) if n in st.maps]
    shaped = [m for m in found if not _is_flat(m, st.T)]
    if shaped or found:
        return (shaped or found)[0]
    return _flat_default(tuple(t.shape), t, st.T)


def _is_flat(m: TaskMapping, threads: int) -> bool:
    return flat(m.shape, threads, tv.vector_run(m, -1)) == m


def _flat_default(shape: tuple[int, ...], t: TileType, threads: int, vec: int | None = None) -> TaskMapping:
    """The flat mapping (`coalesced` where runs do not split into whole passes over the threads)."""
    v = default_vector(shape, threads) if vec is None else vec
    return flat(shape, threads, v) or coalesced(shape, _ebytes(t.dtype), threads)


def _place(st: _State, e, m: TaskMapping, path: Path, exprs, convs, reds) -> None:
    """Record the mapping every tile-valued node is consumed in, and where values convert."""
    t = st.type_of(e)
    if t is None:
        return
    exprs.append((path, m))
    if isinstance(e, N.TileRef):
        src = st.maps.get(e.name)
        if src is not None:
            kind = tv.conversion_kind(src, m)
            if kind != "none":
                convs.append(Conversion(path, src, m, kind))
    elif isinstance(e, (N.BinOp, N.Unary, N.Cast, N.Where)):
        for j, c in enumerate(children(e)):
            ct = st.type_of(c)
            if ct is not None:
                _place(st, c, _operand(m, t.shape, ct.shape), path + (j,), exprs, convs, reds)
    elif isinstance(e, N.Broadcast):
        _place(st, e.x, _operand(m, t.shape, st.type_of(e.x).shape), path + (0,), exprs, convs, reds)
    elif isinstance(e, N.Transpose):
        _place(st, e.x, tv.transpose(m), path + (0,), exprs, convs, reds)
    elif isinstance(e, N.Reduce):
        x = _inherited(st, e.x)
        _place(st, e.x, x, path + (0,), exprs, convs, reds)
        out = tv.collapse(x, [e.axis])
        kind = tv.conversion_kind(out, m)
        if kind != "none":
            convs.append(Conversion(path, out, m, kind))
        reds.append(_reduce_plan(path, e.axis, x, out))


def _operand(m: TaskMapping, out_shape: tuple[int, ...], op_shape: tuple[int, ...]) -> TaskMapping:
    """The mapping an operand of shape `op_shape` needs when the result (shape `out_shape`) has `m`:
    broadcast axes (extent 1, or missing on the left) replicated."""
    lead = len(out_shape) - len(op_shape)
    axes = list(range(lead)) + [lead + d for d, x in enumerate(op_shape) if x == 1 and out_shape[lead + d] != 1]
    collapsed = tv.collapse(m, axes) if axes else m
    return tv.drop_leading(collapsed, lead) if lead else collapsed


def _reduce_plan(path: Path, axis: int, x: TaskMapping, out: TaskMapping) -> ReducePlan:
    in_thread = 1
    masks: list[int] = []
    cross = 1
    stride = 1
    for d in reversed(tv.digits(x)):
        if d.kind == "L":
            in_thread *= d.extent if d.dim == axis else 1
            continue
        if d.kind == "S" and d.dim == axis:
            pow2 = d.extent & (d.extent - 1) == 0 and stride & (stride - 1) == 0
            for j in range(d.extent.bit_length() - 1 if pow2 else 0):
                if stride << j < 32:
                    masks.append(stride << j)
                else:
                    cross *= 2
            if not pow2:
                cross *= d.extent
        stride *= d.extent
    shuffle = get_atom("shfl.bfly.reduce") if masks else None
    return ReducePlan(path, axis, x, out, in_thread, tuple(sorted(masks, reverse=True)), cross, shuffle)


def _atom_or_none(name: str):
    return next((a for a in ATOMS if a.name == name), None)


# ----------------------------------------------------------------------------- tiles and validation

def _tile_layouts(st: _State, accesses: dict[str, list]) -> tuple[TileLayout, ...]:
    out = []
    for name in st.order:
        t = st.tile(name)
        if name in st.shared:
            layout, expr, why = st.shared[name]
            out.append(TileLayout(name, t, expr, shared=layout, storage="resident" if name in st.resident else "shared",
                                  origin=why, accesses=tuple(accesses.get(name, ()))))
        elif name in st.virtual:
            out.append(TileLayout(name, t, None, storage="virtual",
                                  origin="recomputed where it is used (iota/full values are cheaper than registers)"))
        else:
            m = st.maps[name]
            out.append(TileLayout(name, t, tv.as_expr(m), mapping=m, origin=st.why[name][0]))
    return tuple(out)


def _validate(st: _State, plan: LayoutPlan) -> None:
    """Re-check every tile's and statement's layouts; a failure is a bug in the rules above."""
    def bug(msg: str, loc=None):
        raise InternalError(msg, "layout inference", plan.kernel, loc)

    T = plan.threads
    for t in plan.tiles:
        if t.mapping is not None:
            m = t.mapping
            if m.shape != t.type.shape or m.num_threads > T:
                bug(f"tile '{t.name}' {t.type} got mapping {m!r} of shape {m.shape} over {m.num_threads} threads")
            if np.unique(tv.table(m)).size != t.type.numel:
                bug(f"mapping {m!r} of tile '{t.name}' misses elements")
            if t.name in st.ann_map and st.ann_map[t.name][0] != m:
                bug(f"tile '{t.name}' lost its annotation")
        elif t.shared is not None:
            off = offset_table(t.shared)
            if np.unique(off).size != off.size or off.max() >= t.shared.cosize:
                bug(f"shared layout of '{t.name}' is not injective within its storage")
    for p in plan.stmts:
        _rule(st, p.stmt).validate(plan, p)


def _validate_gemm(plan: LayoutPlan, p: GemmPlan) -> None:
    if p.kind == "mma":
        for ref, frag in ((p.stmt.acc, p.c),):
            tl = plan.tile(ref.name)
            if tl.mapping is not None and tv.conversion_kind(tl.mapping, frag) != "none":
                raise InternalError(f"'{ref.name}' does not hold the {frag!r} fragment", "layout inference",
                                    plan.kernel, p.stmt.loc)
    if p.kind == "wgmma" and (p.a_desc is None or p.b_desc is None):
        raise InternalError("a wgmma gemm without descriptors", "layout inference", plan.kernel, p.stmt.loc)


def _validate_copy(plan: LayoutPlan, p: CopyPlan) -> None:
    if p.mapping is None:
        return
    for side in (p.stmt.src, p.stmt.dst):
        if isinstance(side, N.TileRef) and plan.tile(side.name).type.shape != p.mapping.shape:
            raise InternalError(f"copy mapping {p.mapping!r} does not cover '{side.name}'", "layout inference",
                                plan.kernel, p.stmt.loc)


def _validate_assign(plan: LayoutPlan, p: AssignPlan) -> None:
    for r in p.reduces:
        if tv.collapse(r.input, [r.axis]) != r.output:
            raise InternalError("reduction result mapping", "layout inference", plan.kernel, p.stmt.loc)


register(N.Alloc, infer=_alloc_infer)
register(N.Gemm, infer=_gemm_infer, plan=_gemm_plan, validate=_validate_gemm)
register(N.Assign, infer=_assign_infer, plan=_assign_plan, validate=_validate_assign)
register(N.Copy, infer=_copy_infer, plan=_copy_plan, validate=_validate_copy)
register(N.Dequant, infer=_dequant_infer, plan=_dequant_plan)
register(N.AtomicAdd, plan=_atomic_add_plan)
register(N.Let)
register(N.For)
register(N.ReadScalar)
register(N.If)
