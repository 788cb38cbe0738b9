"""Layout inference: give every tile a layout and every statement its instructions.

`infer_layouts(tk) -> LayoutPlan`. The rules, applied greedily in the order Tilus uses:

1. author annotations are fixed from the start;
2. gemms: an mma.sync.m16n8k16 atom tiled over a warp grid fixes the fragments of the
   accumulator and of register operands (shared operands are read with ldmatrix);
3. elementwise propagation to a fixed point: an assignment's value, its operands and its
   target share one mapping, broadcasting operands take it with the broadcast axes
   replicated, a reduction's result is its input's with the reduced axis replicated,
   `trans` swaps axes; known mappings flow forward into undefined targets and backward
   into operand tiles that have none yet;
4. when propagation is stuck, seed the largest tile loaded from memory with a coalesced
   mapping (16-byte vectors along the contiguous axis), then tiles only stored, then the
   rest, and propagate again;
5. shared layouts last: each shared tile takes the candidate (row-major, the standard
   swizzle, padding, column-major) whose accesses (cp.async / st.shared writes, ldmatrix
   or ld.shared reads) cause the fewest bank conflicts;
6. instructions and vector widths per statement; a validation pass re-checks every
   statement's layouts.

Where the greedy rules leave a choice (the warp grid of each gemm) every candidate is
solved and the cheapest plan under `cost.Cost` wins (ties: the first, rows-first grids).
A mapping that meets a different one inside an expression is converted there (free when
each thread already holds its values, else through shared memory, at a cost); a tile
that two hard constraints (an annotation, a gemm fragment role) want in incompatible
layouts is a TileError naming both source lines.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..diagnostics import SourceLoc, TileError
from ..ir import nodes as N
from ..ir.dtypes import bf16, f16
from ..ir.printer import stmt_lines
from ..ir.types import TileType
from ..ir.visit import rewrite_stmt, walk_stmts
from ..passes.infer import TypedKernel, tile_names_in_order
from ..passes.infer import infer as infer_types
from . import tv
from .annotations import Fragment, elem_bytes, register_layout, shared_dims, shared_layout
from .atoms import ATOMS, get_atom
from .cost import REGISTER_BUDGET, Cost, CopyAccess, FragmentAccess, contiguity, offset_table, realize
from .plan import (AssignPlan, Conversion, CopyPlan, DequantPlan, GemmPlan, Instr, LayoutPlan, Path, ReducePlan,
                   StmtPlan, TileLayout, children)
from .shared import standard_swizzle
from .task_mapping import TaskMapping
from .tiling import WARP, WarpGrid, coalesced, mma_fragments, mma_shape_ok, warp_grids

MAX_CANDIDATES = 64
_ROLE_NAMES = {"A": "A operand", "B": "B operand", "C": "accumulator"}


def infer_layouts(tk: TypedKernel) -> LayoutPlan:
    """The cheapest valid plan over the warp-grid choices of the kernel's gemms."""
    ctx = _Context(tk)
    best: LayoutPlan | None = None
    first_error: TileError | None = None
    for combo in ctx.grid_combos():
        try:
            plan = _Solver(ctx, combo).solve()
        except _Unsat as e:
            first_error = first_error or e.error
            continue
        if best is None or plan.cost < best.cost:
            best = plan
    if best is None:
        assert first_error is not None
        raise first_error
    return best


def pin_layouts(tk: TypedKernel, plan: LayoutPlan) -> TypedKernel:
    """`tk` with every allocated tile annotated (`layout=`) with its layout in `plan`.

    Inference on the result reproduces `plan` (tiles defined by assignment have no
    declaration to annotate; they follow from the others)."""
    exprs = {t.name: t.expr for t in plan.tiles}

    def pin(s):
        return dataclasses.replace(s, layout=exprs[s.name]) if isinstance(s, N.Alloc) else None

    body = tuple(rewrite_stmt(s, lambda e: None, pin) for s in tk.kernel.body)
    return infer_types(dataclasses.replace(tk.kernel, body=body), tk.consts)


class _Unsat(Exception):
    """A candidate whose hard constraints conflict (the error is reported if every candidate fails)."""

    def __init__(self, error: TileError):
        self.error = error


def _text(s: N.Stmt) -> str:
    return stmt_lines(s, indent="")[0].rstrip(";")


def _ebytes(dtype) -> int:
    return max(dtype.bits, 8) // 8


# ----------------------------------------------------------------------------- what does not depend on choices

class _Context:
    """The kernel's statements, annotations and gemm candidates."""

    def __init__(self, tk: TypedKernel):
        self.tk = tk
        self.threads = tk.threads
        self.stmts: list[tuple[int, N.Stmt]] = list(enumerate(walk_stmts(tk.kernel.body)))
        self.order = tile_names_in_order(tk.kernel)
        self.allocs = {s.name: s for _, s in self.stmts if isinstance(s, N.Alloc)}
        self.defs = {s.name: s for _, s in self.stmts if isinstance(s, N.Assign) and s.define}
        self.map_ann: dict[str, tuple[TaskMapping, N.LayoutExpr]] = {}
        self.frag_ann: dict[str, tuple[Fragment, N.LayoutExpr]] = {}
        self.shared_ann: dict = {}
        for name, s in self.allocs.items():
            if s.layout is None:
                continue
            tile = tk.tiles[name]
            if tile.scope == "shared":
                self.shared_ann[name] = (shared_layout(s.layout, tile), s.layout)
            else:
                got = register_layout(s.layout, tile, self.threads)
                (self.frag_ann if isinstance(got, Fragment) else self.map_ann)[name] = (got, s.layout)
        self.gemms = [(i, s) for i, s in self.stmts if isinstance(s, N.Gemm)]
        self.grids = [self._grids(s) for _, s in self.gemms]

    def tile(self, name: str) -> TileType:
        return self.tk.tiles[name]

    def gemm_dims(self, s: N.Gemm) -> tuple[int, int, int]:
        a, c = self.tile(s.a.name), self.tile(s.acc.name)
        k = a.shape[0] if s.trans_a else a.shape[1]
        return c.shape[0], c.shape[1], k

    def mma_ok(self, s: N.Gemm) -> bool:
        a, c = self.tile(s.a.name), self.tile(s.acc.name)
        return a.dtype in (f16, bf16) and mma_shape_ok(*self.gemm_dims(s)) and c.scope == "register"

    def _grids(self, s: N.Gemm) -> tuple[WarpGrid | None, ...]:
        if self.tile(s.acc.name).scope != "register":
            raise TileError(f"the gemm accumulator '{s.acc.name}' must be a register tile", s.acc.loc,
                            hint="declare it with register(...) and copy it to shared memory afterwards if needed")
        if not self.mma_ok(s):
            return (None,)
        m, n, _ = self.gemm_dims(s)
        return warp_grids(m, n, self.threads // WARP)

    def grid_combos(self):
        total = math.prod(len(g) for g in self.grids)
        if total <= MAX_CANDIDATES:
            return itertools.product(*self.grids)
        # too many: give every gemm its i-th candidate (or its last)
        return [tuple(g[min(i, len(g) - 1)] for g in self.grids) for i in range(max(map(len, self.grids)))]


# ----------------------------------------------------------------------------- one candidate

@dataclass
class _Why:
    text: str
    loc: SourceLoc | None


class _Solver:
    def __init__(self, ctx: _Context, combo: tuple):
        self.ctx = ctx
        self.tk = ctx.tk
        self.T = ctx.threads
        self.grid_of = {i: g for (i, _), g in zip(ctx.gemms, combo)}
        self.maps: dict[str, TaskMapping] = {}
        self.why: dict[str, _Why] = {}
        self.roles: dict[str, tuple[str, N.Gemm]] = {}
        for name, (m, expr) in ctx.map_ann.items():
            self._set(name, m, f"annotated `{expr}`", expr.loc)

    # --------------------------------------------------------------- helpers
    def _set(self, name: str, m: TaskMapping, text: str, loc) -> None:
        self.maps[name] = m
        self.why[name] = _Why(text, loc)

    def _is_reg(self, name: str) -> bool:
        return self.ctx.tile(name).scope == "register"

    def _type(self, e) -> TileType | None:
        t = self.tk.type_of(e)
        return t if isinstance(t, TileType) else None

    # --------------------------------------------------------------- driver
    def solve(self) -> LayoutPlan:
        for i, s in self.ctx.gemms:
            self._gemm(i, s)
        self._fragment_annotations()
        while True:
            self._propagate()
            if not self._seed():
                break
        shared = self._shared_layouts()
        stmts, cost = self._statements(shared)
        regs = sum(-(-m.values_per_thread * self.ctx.tile(n).dtype.bits // 32) for n, m in self.maps.items())
        cost += Cost(register_excess=max(regs - REGISTER_BUDGET, 0), registers=regs)
        tiles = self._tile_layouts(shared)
        plan = LayoutPlan(self.tk.kernel.name, self.T, tiles, stmts, cost)
        _validate(self.ctx, plan)
        return plan

    # --------------------------------------------------------------- 2. gemms
    def _gemm(self, i: int, s: N.Gemm) -> None:
        grid = self.grid_of[i]
        if grid is None:  # SIMT fallback: only the accumulator's mapping matters here
            acc = self.ctx.tile(s.acc.name)
            if s.acc.name not in self.maps:
                self._set(s.acc.name, coalesced(acc.shape, _ebytes(acc.dtype), self.T),
                          f"the accumulator of `{_text(s)}` (no mma atom fits: fma loop)", s.loc)
            return
        fr = mma_fragments(*self.ctx.gemm_dims(s), grid, s.trans_a, s.trans_b)
        for ref, m, role in ((s.acc, fr.c, "C"), (s.a, fr.a, "A"), (s.b, fr.b, "B")):
            if self._is_reg(ref.name):
                self._require(ref.name, m, role, s, grid)

    def _require(self, name: str, m: TaskMapping, role: str, s: N.Gemm, grid: WarpGrid) -> None:
        tile = self.ctx.tile(name)
        ann = self.ctx.frag_ann.get(name)
        if ann is not None and ann[0].role != role:
            raise _Unsat(TileError(
                f"register tile '{name}' is annotated `{ann[1]}` (the mma {_ROLE_NAMES[ann[0].role]} fragment) but "
                f"this gemm uses it as its {_ROLE_NAMES[role]}", s.loc,
                related=((f"'{name}' is annotated here", ann[1].loc),),
                hint=f"annotate it layout=mma_{role.lower()} or drop the annotation; or convert through shared "
                     f"memory: {_copy_hint(name, tile, role)}"))
        if name not in self.maps:
            self._set(name, m, f"the {_ROLE_NAMES[role]} of `{_text(s)}` ({grid})", s.loc)
            self.roles[name] = (role, s)
            return
        if tv.conversion_kind(self.maps[name], m) == "shared":
            why = self.why[name]
            if name in self.ctx.map_ann:
                msg = (f"register tile '{name}' is annotated `{self.ctx.map_ann[name][1]}`, but this gemm needs it in "
                       f"the mma.m16n8k16 {_ROLE_NAMES[role]} fragment layout ({m!r})")
                note = f"'{name}' is annotated here"
                hint = (f"drop the annotation or write layout=mma_{role.lower()}; or keep the annotation and convert "
                        f"through shared memory: {_copy_hint(name, tile, role)}")
            else:
                prev_role = self.roles.get(name, (None, None))[0]
                other = f"the {_ROLE_NAMES[prev_role]} of the gemm" if prev_role else why.text
                msg = (f"register tile '{name}' is the {_ROLE_NAMES[role]} of this gemm and {other} at {why.loc}: "
                       f"the two mma fragments give its elements to different threads")
                note = f"'{name}' is {other} here" if prev_role else f"'{name}' gets its layout here"
                hint = (f"a register tile has one layout: give this gemm its own tile, {_copy_hint(name, tile, role)} "
                        f"(a conversion through shared memory), or keep '{name}' in shared memory, where ldmatrix "
                        f"reads it in either role")
            raise _Unsat(TileError(msg, s.loc, related=((note, why.loc),), hint=hint))

    def _fragment_annotations(self) -> None:
        """Fragment-role annotations on tiles no gemm fixed: that role's fragment, default warp grid."""
        warps = self.T // WARP
        for name, (frag, expr) in self.ctx.frag_ann.items():
            if name in self.maps:
                continue
            shape = self.ctx.tile(name).shape
            dims = {"A": (shape[0], 8, shape[-1]), "B": (16, shape[-1], shape[0]), "C": (shape[0], shape[-1], 16)}
            m, n, k = dims[frag.role] if len(shape) == 2 else (0, 0, 0)
            grids = warp_grids(m, n, warps) if mma_shape_ok(m, n, k) else ()
            if not grids:
                raise _Unsat(TileError(f"`{expr}` needs a 2-d tile whose extents are multiples of the "
                                       f"mma.m16n8k16 {frag.role} fragment", expr.loc,
                                       hint="use a tile shape such as 64 x 64, or a spatial(...) * local(...) layout"))
            fr = mma_fragments(m, n, k, grids[0], False, False)
            self._set(name, {"A": fr.a, "B": fr.b, "C": fr.c}[frag.role], f"annotated `{expr}`", expr.loc)

    # --------------------------------------------------------------- 3. elementwise propagation
    def _propagate(self) -> None:
        changed = True
        while changed:
            changed = False
            for _, s in self.ctx.stmts:
                if isinstance(s, N.Assign) and self._is_reg(s.name):
                    changed |= self._assign_step(s)
                elif isinstance(s, N.Copy) and all(isinstance(x, N.TileRef) and self._is_reg(x.name)
                                                   for x in (s.src, s.dst)):
                    a, b = s.src.name, s.dst.name
                    for x, y in ((a, b), (b, a)):
                        if x in self.maps and y not in self.maps:
                            self._set(y, self.maps[x], f"copied with `{_text(s)}`", s.loc)
                            changed = True

    def _assign_step(self, s: N.Assign) -> bool:
        tile = self.ctx.tile(s.name)
        root = self.maps.get(s.name)
        vshape = self._type(s.value).shape
        if root is None:
            nat = self._nat(s.value)
            if nat is None or vshape != tile.shape:
                return False
            self._set(s.name, nat, f"the value of `{_text(s)}`", s.loc)
            root = nat
        return self._demand(s.value, _operand(root, tile.shape, vshape), s)

    def _nat(self, e) -> TaskMapping | None:
        """The mapping an expression has from its operands alone (None: not determined yet)."""
        t = self._type(e)
        if t is None:
            return None
        if isinstance(e, N.TileRef):
            return self.maps.get(e.name)
        if isinstance(e, N.Reduce):
            x = self._nat(e.x)
            return None if x is None else tv.collapse(x, [e.axis])
        if isinstance(e, N.Transpose):
            x = self._nat(e.x)
            return None if x is None else tv.transpose(x)
        if isinstance(e, (N.BinOp, N.Unary, N.Cast, N.Where)):
            for c in children(e):
                ct = self._type(c)
                if ct is not None and ct.shape == t.shape:
                    m = self._nat(c)
                    if m is not None:
                        return m
        return None

    def _demand(self, e, m: TaskMapping, s: N.Assign) -> bool:
        """Give operand tiles without a mapping the one this expression needs of them."""
        if isinstance(e, N.TileRef):
            if e.name not in self.maps and self._is_reg(e.name):
                self._set(e.name, m, f"an operand of `{_text(s)}`", s.loc)
                return True
            return False
        changed = False
        shape = self._type(e).shape
        if isinstance(e, (N.BinOp, N.Unary, N.Cast, N.Where)):
            for c in children(e):
                ct = self._type(c)
                if ct is not None:
                    changed |= self._demand(c, _operand(m, shape, ct.shape), s)
        elif isinstance(e, N.Broadcast):
            changed |= self._demand(e.x, _operand(m, shape, self._type(e.x).shape), s)
        elif isinstance(e, N.Transpose):
            changed |= self._demand(e.x, tv.transpose(m), s)
        return changed

    # --------------------------------------------------------------- 4. seeds
    def _seed(self) -> bool:
        """Give one stuck register tile a coalesced mapping; False when none is left."""
        loads, stores, shared_writes = [], [], []
        for i, s in self.ctx.stmts:
            if isinstance(s, N.Copy) and isinstance(s.dst, N.TileRef) and self._unmapped(s.dst.name):
                loads.append((i, s.dst.name, s, self._elem_bytes_of(s.src)))
            elif isinstance(s, N.Dequant) and self._unmapped(s.dst.name):
                loads.append((i, s.dst.name, s, None))
            elif isinstance(s, N.Copy) and isinstance(s.src, N.TileRef) and self._unmapped(s.src.name):
                (stores if isinstance(s.dst, N.GlobalRef) else shared_writes).append(
                    (i, s.src.name, s, self._elem_bytes_of(s.dst)))
        for group, what in ((loads, "loaded by"), (stores, "stored by"), (shared_writes, "copied by")):
            if group:
                i, name, s, nbytes = min(group, key=lambda g: (-self.ctx.tile(g[1]).numel, g[0]))
                shape = self.ctx.tile(name).shape
                if nbytes is None:  # dequant: 16 bytes of packed integers per thread
                    bits = self.tk.tensor(s.src.tensor).dtype.bits
                    m = coalesced(shape, 1, self.T, max(128 // bits, 1))
                else:
                    m = coalesced(shape, nbytes, self.T)
                self._set(name, m, f"coalesced, {what} `{_text(s)}`", s.loc)
                return True
        for name in self.ctx.order:
            if self._unmapped(name):
                t = self.ctx.tile(name)
                self._set(name, coalesced(t.shape, _ebytes(t.dtype), self.T), "default (nothing constrains it)",
                          (self.ctx.allocs.get(name) or self.ctx.defs.get(name)).loc)
                return True
        return False

    def _unmapped(self, name: str) -> bool:
        return self._is_reg(name) and name not in self.maps

    def _elem_bytes_of(self, x) -> int:
        """Element size of one side of a copy (what limits its vectors there)."""
        if isinstance(x, N.GlobalRef):
            d = self.tk.tensor(x.tensor).dtype
            return 1 if d.is_packed else _ebytes(d)
        return _ebytes(self.ctx.tile(x.name).dtype)

    # --------------------------------------------------------------- 5. shared layouts
    def _shared_accesses(self) -> dict[str, list]:
        acc: dict[str, list] = {n: [] for n in self.ctx.order if not self._is_reg(n)}
        for i, s in self.ctx.stmts:
            if isinstance(s, N.Copy):
                for side, kind in ((s.src, "read"), (s.dst, "write")):
                    if isinstance(side, N.TileRef) and side.name in acc:
                        acc[side.name].append(self._copy_access(s, side.name, kind))
            elif isinstance(s, N.Dequant) and s.dst.name in acc:
                t = self.ctx.tile(s.dst.name)
                e = _ebytes(t.dtype)
                acc[s.dst.name].append(CopyAccess("write", coalesced(t.shape, e, self.T), max(16 // e, 1), e,
                                                  shared_dims(t.shape)[1]))
            elif isinstance(s, N.Gemm) and self.grid_of[i] is not None:
                fr = mma_fragments(*self.ctx.gemm_dims(s), self.grid_of[i], s.trans_a, s.trans_b)
                for ref, role, frag, trans in ((s.a, "A", fr.a, s.trans_a), (s.b, "B", fr.b, s.trans_b)):
                    if ref.name in acc:
                        t = self.ctx.tile(ref.name)
                        acc[ref.name].append(FragmentAccess(role, *self.ctx.gemm_dims(s), self.grid_of[i], trans,
                                                            frag, _ebytes(t.dtype), t.shape[1]))
        return acc

    def _copy_mapping(self, s: N.Copy) -> TaskMapping:
        """Who moves which element: the register side's mapping, else coalesced over the tile."""
        for side in (s.dst, s.src):
            if isinstance(side, N.TileRef) and self._is_reg(side.name):
                return self.maps[side.name]
        name = (s.dst if isinstance(s.dst, N.TileRef) else s.src).name
        return coalesced(self.ctx.tile(name).shape, max(self._elem_bytes_of(s.src), self._elem_bytes_of(s.dst)),
                         self.T)

    def _copy_access(self, s: N.Copy, name: str, kind: str) -> CopyAccess:
        """The shared side of a copy: vectors of up to 16 bytes on both sides of the copy."""
        t = self.ctx.tile(name)
        e = _ebytes(t.dtype)
        other = s.dst if kind == "read" else s.src
        widest = e if isinstance(other, N.TileRef) and self._is_reg(other.name) else max(e, self._elem_bytes_of(other))
        return CopyAccess(kind, self._copy_mapping(s), max(16 // widest, 1), e, shared_dims(t.shape)[1])

    def _shared_layouts(self) -> dict[str, tuple]:
        """name -> (SharedLayout, LayoutExpr, accesses, origin)."""
        out = {}
        for name, accesses in self._shared_accesses().items():
            tile = self.ctx.tile(name)
            if name in self.ctx.shared_ann:
                layout, expr = self.ctx.shared_ann[name]
                out[name] = (layout, expr, accesses, f"annotated `{expr}`")
                continue
            best = None
            for idx, expr in enumerate(_shared_candidates(tile)):
                layout = shared_layout(expr, tile)
                rs = [realize(layout, a) for a in accesses]
                key = (sum(r.conflicts for r in rs), sum(r.wavefronts for r in rs), layout.cosize, idx)
                if best is None or key < best[0]:
                    best = (key, layout, expr)
            why = "fewest bank conflicts" if accesses else "not accessed"
            out[name] = (best[1], best[2], accesses, why)
        return out

    # --------------------------------------------------------------- 6. statements
    def _statements(self, shared: dict) -> tuple[tuple[StmtPlan, ...], Cost]:
        plans: list[StmtPlan] = []
        cost = Cost()
        for name, (layout, _, accesses, _) in shared.items():
            rs = [realize(layout, a) for a in accesses]
            cost += Cost(bank_conflicts=sum(r.conflicts for r in rs), smem_wavefronts=sum(r.wavefronts for r in rs))
        for i, s in self.ctx.stmts:
            if isinstance(s, N.Copy):
                p, c = self._copy_plan(i, s, shared)
            elif isinstance(s, N.Gemm):
                p, c = self._gemm_plan(i, s, shared)
            elif isinstance(s, N.Dequant):
                p, c = self._dequant_plan(i, s, shared)
            elif isinstance(s, N.Assign) and self._is_reg(s.name):
                p, c = self._assign_plan(i, s)
            else:
                continue
            plans.append(p)
            cost += c
        return tuple(plans), cost

    def _global_instr(self, op: str, m: TaskMapping, dtype, role: str) -> tuple[Instr, Cost]:
        """A global load/store moving each thread's contiguous run of `m` in vectors of up to 16 bytes."""
        bits = dtype.bits if dtype.is_packed else _ebytes(dtype) * 8
        vec = tv.vector_run(m, -1)
        while vec > 1 and vec * bits not in (8, 16, 32, 64, 128):
            vec //= 2
        width = {8: "b8", 16: "b16", 32: "b32", 64: "v2.b32", 128: "v4.b32"}.get(vec * bits, "b8")
        name = f"{op}.global.{width}"
        count = m.num_threads * (m.values_per_thread // vec)
        return Instr(name, role, vec, _atom_or_none(name)), Cost(global_instrs=count)

    def _copy_plan(self, i: int, s: N.Copy, shared: dict) -> tuple[CopyPlan, Cost]:
        m = self._copy_mapping(s)
        src, dst = s.src, s.dst
        instrs: list[Instr] = []
        cost = Cost()
        reg = lambda x: isinstance(x, N.TileRef) and self._is_reg(x.name)  # noqa: E731
        conversion = "none"
        if reg(src) and reg(dst):
            conversion = tv.conversion_kind(self.maps[src.name], self.maps[dst.name])
            if conversion == "shared":
                cost += Cost(round_trips=1)
            instrs.append(Instr("mov" if conversion != "shared" else "convert.shared", "convert"))
        elif isinstance(src, N.GlobalRef) and isinstance(dst, N.TileRef) and not reg(dst):
            layout = shared[dst.name][0]
            src_t, dst_t = self.tk.tensor(src.tensor).dtype, self.ctx.tile(dst.name).dtype
            ld, c = self._global_instr("ld", m, src_t, "load")
            cost += c
            vec = min(ld.vector, contiguity(layout, 1))
            if src_t == dst_t and vec * _ebytes(dst_t) in (4, 8, 16):
                n = vec * _ebytes(dst_t)
                instrs.append(Instr(f"cp.async.{n}", "load", vec, get_atom(f"cp.async.{n}")))
            else:
                r = realize(layout, self._copy_access(s, dst.name, "write"))
                instrs += [ld, Instr(r.instr, "store", r.vec, _atom_or_none(r.instr))]
        else:
            for side, op, role in ((src, "ld", "load"), (dst, "st", "store")):
                if isinstance(side, N.GlobalRef):
                    ins, c = self._global_instr(op, m, self.tk.tensor(side.tensor).dtype, role)
                    instrs.append(ins)
                    cost += c
                elif not reg(side):
                    r = realize(shared[side.name][0], self._copy_access(s, side.name, "read" if op == "ld" else "write"))
                    instrs.append(Instr(r.instr, role, r.vec, _atom_or_none(r.instr)))
        return CopyPlan(i, s, m, tuple(instrs), conversion, tv.replication(m)), cost

    def _gemm_plan(self, i: int, s: N.Gemm, shared: dict) -> tuple[GemmPlan, Cost]:
        grid = self.grid_of[i]
        if grid is None:
            return GemmPlan(i, s, None, None, None, None, self.maps[s.acc.name],
                            (Instr("fma.f32", "mma"),)), Cost()
        m, n, k = self.ctx.gemm_dims(s)
        fr = mma_fragments(m, n, k, grid, s.trans_a, s.trans_b)
        ab = self.ctx.tile(s.a.name).dtype.name
        acc = "f16" if self.ctx.tile(s.acc.name).dtype == f16 and ab == "f16" else "f32"
        atom = get_atom(f"mma.m16n8k16.{acc}.{ab}")
        instrs = []
        for ref, role, frag, trans in ((s.a, "A", fr.a, s.trans_a), (s.b, "B", fr.b, s.trans_b)):
            if not self._is_reg(ref.name):
                r = realize(shared[ref.name][0], FragmentAccess(role, m, n, k, grid, trans, frag,
                                                                _ebytes(self.ctx.tile(ref.name).dtype),
                                                                self.ctx.tile(ref.name).shape[1]))
                instrs.append(Instr(r.instr, role, r.vec, _atom_or_none(r.instr)))
        instrs.append(Instr(atom.name, "mma", 1, atom))
        return GemmPlan(i, s, atom, grid, fr.a, fr.b, fr.c, tuple(instrs)), Cost()

    def _dequant_plan(self, i: int, s: N.Dequant, shared: dict) -> tuple[DequantPlan, Cost]:
        t = self.ctx.tile(s.dst.name)
        if self._is_reg(s.dst.name):
            m = self.maps[s.dst.name]
        else:
            m = coalesced(t.shape, _ebytes(t.dtype), self.T)
        ld, cost = self._global_instr("ld", m, self.tk.tensor(s.src.tensor).dtype, "load")
        instrs = [ld]
        if not self._is_reg(s.dst.name):
            e = _ebytes(t.dtype)
            r = realize(shared[s.dst.name][0], CopyAccess("write", m, max(16 // e, 1), e, shared_dims(t.shape)[1]))
            instrs.append(Instr(r.instr, "store", r.vec, _atom_or_none(r.instr)))
        return DequantPlan(i, s, m, tuple(instrs)), cost

    def _assign_plan(self, i: int, s: N.Assign) -> tuple[AssignPlan, Cost]:
        tile = self.ctx.tile(s.name)
        root = self.maps[s.name]
        exprs: list[tuple[Path, TaskMapping]] = []
        convs: list[Conversion] = []
        reds: list[ReducePlan] = []
        self._place(s.value, _operand(root, tile.shape, self._type(s.value).shape), (), exprs, convs, reds)
        cost = Cost(round_trips=sum(c.kind == "shared" for c in convs) + sum(r.cross_warp > 1 for r in reds),
                    shuffles=sum(len(r.xor_masks) for r in reds))
        return AssignPlan(i, s, root, tuple(exprs), tuple(convs), tuple(reds)), cost

    def _place(self, e, m: TaskMapping, path: Path, exprs, convs, reds) -> None:
        """Record the mapping every tile-valued node is consumed in, and where values convert."""
        t = self._type(e)
        if t is None:
            return
        exprs.append((path, m))
        if isinstance(e, N.TileRef):
            src = self.maps[e.name]
            kind = tv.conversion_kind(src, m)
            if kind != "none":
                convs.append(Conversion(path, src, m, kind))
        elif isinstance(e, (N.BinOp, N.Unary, N.Cast, N.Where)):
            for j, c in enumerate(children(e)):
                ct = self._type(c)
                if ct is not None:
                    self._place(c, _operand(m, t.shape, ct.shape), path + (j,), exprs, convs, reds)
        elif isinstance(e, N.Broadcast):
            self._place(e.x, _operand(m, t.shape, self._type(e.x).shape), path + (0,), exprs, convs, reds)
        elif isinstance(e, N.Transpose):
            self._place(e.x, tv.transpose(m), path + (0,), exprs, convs, reds)
        elif isinstance(e, N.Reduce):
            xt = self._type(e.x)
            x = self._nat(e.x) or coalesced(xt.shape, _ebytes(xt.dtype), self.T)
            self._place(e.x, x, path + (0,), exprs, convs, reds)
            out = tv.collapse(x, [e.axis])
            kind = tv.conversion_kind(out, m)
            if kind != "none":
                convs.append(Conversion(path, out, m, kind))
            reds.append(_reduce_plan(path, e.axis, x, out))

    # --------------------------------------------------------------- tiles
    def _tile_layouts(self, shared: dict) -> tuple[TileLayout, ...]:
        out = []
        for name in self.ctx.order:
            t = self.ctx.tile(name)
            if name in shared:
                layout, expr, accesses, why = shared[name]
                conflicts = sum(realize(layout, a).conflicts for a in accesses)
                out.append(TileLayout(name, t, expr, shared=layout, bank_conflicts=conflicts, origin=why))
            else:
                m = self.maps[name]
                out.append(TileLayout(name, t, tv.as_expr(m), mapping=m, origin=self.why[name].text))
        return tuple(out)


# ----------------------------------------------------------------------------- rules as functions

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
                if stride << j < WARP:
                    masks.append(stride << j)
                else:
                    cross *= 2
            if not pow2:
                cross *= d.extent
        stride *= d.extent
    shuffle = get_atom("shfl.bfly.reduce") if masks else None
    return ReducePlan(path, axis, x, out, in_thread, tuple(sorted(masks, reverse=True)), cross, shuffle)


def _shared_candidates(tile: TileType) -> list[N.LayoutExpr]:
    rows, cols = shared_dims(tile.shape)
    e = elem_bytes(tile)
    out = [N.LayoutExpr("row_major")]
    if cols & (cols - 1) == 0 and cols * e >= 32 and e <= 16:
        sw = standard_swizzle(cols, e)
        out.append(N.LayoutExpr("swizzle", (sw.bits, sw.base, sw.shift)))
    out.append(N.LayoutExpr("padded", (max(16 // e, 1),)))
    if rows > 1:
        out.append(N.LayoutExpr("col_major"))
    return out


def _atom_or_none(name: str):
    return next((a for a in ATOMS if a.name == name), None)


def _copy_hint(name: str, tile: TileType, role: str) -> str:
    """How to route a tile through a conversion (a copy between register tiles goes through shared memory)."""
    decl = f"{name}2 = register({tile.dtype}[{', '.join(map(str, tile.shape))}]);"
    if role == "C":
        return f"accumulate into `{decl}` and `copy({name}2, {name});` after the gemm"
    return f"`{decl} copy({name}, {name}2);` and pass '{name}2' to this gemm"


# ----------------------------------------------------------------------------- validation

def _validate(ctx: _Context, plan: LayoutPlan) -> None:
    """Re-check every tile's and statement's layouts; a failure is a bug in the rules above."""
    def bug(msg: str, loc=None):
        raise TileError(f"internal error in layout inference: {msg}", loc,
                        hint="please report this kernel; annotating the tile's layout may work around it")

    T = plan.threads
    for t in plan.tiles:
        if t.mapping is not None:
            m = t.mapping
            if m.shape != t.type.shape or m.num_threads != T:
                bug(f"tile '{t.name}' {t.type} got mapping {m!r} of shape {m.shape} over {m.num_threads} threads")
            if np.unique(tv.table(m)).size != t.type.numel:
                bug(f"mapping {m!r} of tile '{t.name}' misses elements")
            if t.name in ctx.map_ann and ctx.map_ann[t.name][0] != m:
                bug(f"tile '{t.name}' lost its annotation")
        else:
            off = offset_table(t.shared)
            if np.unique(off).size != off.size or off.max() >= t.shared.cosize:
                bug(f"shared layout of '{t.name}' is not injective within its storage")
    for p in plan.stmts:
        if isinstance(p, GemmPlan) and p.grid is not None:
            for ref, frag in ((p.stmt.a, p.a), (p.stmt.b, p.b), (p.stmt.acc, p.c)):
                tl = plan.tile(ref.name)
                if tl.mapping is not None and tv.conversion_kind(tl.mapping, frag) == "shared":
                    bug(f"'{ref.name}' does not hold the {frag!r} fragment", p.stmt.loc)
        elif isinstance(p, CopyPlan):
            for side in (p.stmt.src, p.stmt.dst):
                if isinstance(side, N.TileRef) and plan.tile(side.name).type.shape != p.mapping.shape:
                    bug(f"copy mapping {p.mapping!r} does not cover '{side.name}'", p.stmt.loc)
        elif isinstance(p, AssignPlan):
            for r in p.reduces:
                if tv.collapse(r.input, [r.axis]) != r.output:
                    bug("reduction result mapping", p.stmt.loc)
