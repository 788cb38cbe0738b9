"""Decisions taken before any code is written: task mappings, shared layouts, mma, pipelines, smem offsets.

* Register tiles get a mapping: the author's (`layout=spatial(..) * local(..)`), the
  mma accumulator fragment where a gemm can use tensor cores, the mapping of a
  same-shaped operand for tiles defined by an expression (so elementwise chains
  stay in registers), or the default flat mapping.
* A gemm uses `mma.sync.m16n8k16` when its operands are f16/bf16, its accumulator
  is f32 and the m16n8k16 fragments tile it over the block's warps.
* On sm_90a a gemm uses `wgmma.mma_async` (wgmma.py) instead when both operands are
  shared (or kept in shared memory), the accumulator's m64nNk16 fragments tile it over
  the block's warpgroups, every gemm into that accumulator can, and the operands' layouts
  (chosen as the canonical wgmma swizzles) are expressible by matrix descriptors.  In a
  pipelined loop whose wgmma operands are all pipeline stages and whose accumulators
  nothing else touches, one wgmma group stays in flight across iterations (`lag`): loads
  then run `stages - 2` iterations ahead, so the stage being overwritten is never one an
  in-flight wgmma reads.
* A `pipelined` loop whose body starts with global->shared copies (indices that
  depend only on the loop variable and names from outside the loop) gets
  `stages` buffers for each such tile, filled by cp.async ahead of the compute.
* With `tma` (sm_90a), a pipeline whose producers all load tiles in a canonical wgmma swizzle
  (tma.py) fills its stages with TMA boxes completing on one mbarrier per stage
  (`Plan.mbarriers`) instead of cp.async: loads then run `stages - lag` iterations ahead.
* Global->register copies and dequants (into registers or shared memory) of such a loop
  get a "ring": `stages` shared buffers of the window's raw global elements (packed
  bytes for sub-byte weights), filled by cp.async ahead; the statement itself stays in
  place and reads its stage from shared memory instead of global memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.types import TileType
from ...ir.visit import sub_exprs, walk_stmts
from ...layout.errors import LayoutError
from ...layout.task_mapping import TaskMapping, column_local, column_spatial, local, replicate, spatial
from ...layout.tiling import MmaTiling, mma_tiling
from ...passes.infer import TypedKernel
from . import ctype
from . import mapping as M
from . import smem as S
from . import tma as TMA
from . import wgmma as W

SMEM_ALIGN = 128
GMMA_ALIGN = 1024  # the 128-byte swizzle repeats every 8 rows of 128 bytes
_FREE_ANNOTATIONS = ("mma_a", "mma_b", "mma_c", "row_major")  # register layouts the backend chooses itself
MMA_DTYPES = ("f16", "bf16")


@dataclass(frozen=True)
class MmaGemm:
    tiling: MmaTiling
    k: int


@dataclass(frozen=True)
class WgmmaGemm:
    tiling: W.WgmmaTiling
    k: int
    a: W.OperandPlan
    b: W.OperandPlan


@dataclass(frozen=True)
class Ring:
    """Shared stages holding a register producer's global window as raw elements (bytes if packed)."""
    name: str
    shape: tuple[int, ...]   # the window in raw elements: the tile's shape, last axis in bytes if packed
    elem_bytes: int
    stage_elems: int         # elements per stage, rounded up to 16 bytes

    @property
    def row(self) -> int:
        return self.shape[-1]


@dataclass(frozen=True)
class Pipeline:
    stages: int
    producers: tuple[N.Copy, ...]       # global -> shared copies issued `stages - 1` iterations ahead
    lets: tuple[N.Let, ...]             # loop-body lets the producers' (and rings') indices need
    consumers: tuple[N.Stmt, ...]       # the rest of the body, in order (ringed statements included)
    ringed: tuple[N.Stmt, ...] = ()     # global -> register copies / dequants whose window is prefetched
    lag: int = 0                        # wgmma groups left in flight across iterations (0 or 1)

    @property
    def ahead(self) -> int:
        """Iterations between a stage's load and its use (cp.async: issued before the consumers)."""
        return self.stages - 1 - self.lag

    @property
    def tma_ahead(self) -> int:
        """The same with TMA: issued after the consumers, once iteration it - lag is done with its stage."""
        return self.stages - self.lag


@dataclass
class Plan:
    threads: int
    arch: str | None = None  # the target: "sm_90a" enables wgmma
    mappings: dict[str, M.Mapping] = field(default_factory=dict)
    layouts: dict[str, S.SmemLayout] = field(default_factory=dict)
    smem_offsets: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    mma: dict[int, MmaGemm] = field(default_factory=dict)  # id(Gemm) -> tiling
    wgmma: dict[int, WgmmaGemm] = field(default_factory=dict)  # id(Gemm) -> tiling and descriptors
    pipelines: dict[int, Pipeline] = field(default_factory=dict)  # id(For) -> pipeline
    rings: dict[int, Ring] = field(default_factory=dict)  # id(Copy / Dequant) -> its prefetch ring
    tma: dict[str, TMA.TmaLoad] = field(default_factory=dict)  # pipelined tile -> its TMA boxes
    mbarriers: dict[int, int] = field(default_factory=dict)  # id(For) of a TMA pipeline -> its mbarriers' offset
    skip_init: set[str] = field(default_factory=set)  # shared tiles fully written before any read
    virtual: dict[str, N.Expr] = field(default_factory=dict)  # tiles recomputed where used (iota/full only)
    resident: set[str] = field(default_factory=set)  # register tiles kept in shared memory (gemm operands only)
    tiles_bytes: int = 0


def make_plan(tk: TypedKernel, arch: str | None = None, tma: bool = False) -> Plan:
    """`tma`: load pipelined wgmma operands with TMA where they allow it (sm_90a only)."""
    plan = Plan(tk.threads, arch)
    body = tk.kernel.body
    gemms = [s for s in walk_stmts(body) if isinstance(s, N.Gemm)]
    mma_tilings = _mma_accumulators(tk, gemms)
    plan.virtual = _virtual_tiles(tk)
    plan.resident = _gemm_only_tiles(tk, plan.virtual)
    wg_tilings = _wgmma_accumulators(tk, gemms, plan) if arch == "sm_90a" else {}
    fed_to_mma: set[str] = set()
    fed_to_gmma = {x.name for g in gemms if g.acc.name in wg_tilings for x in (g.a, g.b)}
    for g in gemms:
        til = mma_tilings.get(g.acc.name)
        if til is not None and _mma_ok(tk, g):
            a = tk.tiles[g.a.name]
            plan.mma[id(g)] = MmaGemm(til, a.shape[0] if g.trans_a else a.shape[1])
            fed_to_mma.update(x.name for x in (g.a, g.b) if tk.tiles[x.name].scope == "shared")
    for s in walk_stmts(body):
        if isinstance(s, N.Alloc) and tk.tiles[s.name].scope == "shared":
            t = tk.tiles[s.name]
            plan.layouts[s.name] = S.choose(t.shape, ctype.nbytes(t.dtype), s.layout, s.name in fed_to_mma,
                                            s.name in fed_to_gmma)
        if isinstance(s, N.Assign) and s.name in plan.resident:
            t = tk.tiles[s.name]
            plan.layouts[s.name] = S.choose(t.shape, ctype.nbytes(t.dtype), None, True, s.name in fed_to_gmma)
    _plan_wgmma(tk, plan, gemms, wg_tilings)
    fragments = {name: M.mma_mapping(t, tk.threads) for name, t in mma_tilings.items()}
    fragments.update({g.acc.name: W.mapping(plan.wgmma[id(g)].tiling, tk.threads)
                      for g in gemms if id(g) in plan.wgmma})
    _infer_mappings(tk, plan, fragments)
    for g in gemms:  # an mma operand in a layout ldmatrix cannot read falls back to the SIMT gemm
        if id(g) in plan.mma and not all(plan.layouts[x.name].contiguous_run(8) for x in (g.a, g.b)
                                         if x.name in plan.layouts):
            del plan.mma[id(g)]
    for s in walk_stmts(body):
        if isinstance(s, N.For):
            p = _pipeline(tk, s)
            if p is not None and _keeps_wgmma_in_flight(tk, plan, p):
                p = replace(p, lag=1)
            if p is not None:
                plan.pipelines[id(s)] = p
                for c in p.producers:
                    plan.stages[c.dst.name] = p.stages
                for r in p.ringed:
                    plan.rings[id(r)] = _ring(tk, r, f"tl_ring{len(plan.rings)}")
    _skip_init(tk, body, plan)
    offset = 0
    for name, lay in plan.layouts.items():
        if lay.block or name in fed_to_gmma:  # a swizzle atom's address bits are the hardware's: align them
            offset = -(-offset // GMMA_ALIGN) * GMMA_ALIGN
        plan.smem_offsets[name] = offset
        nbytes = lay.cosize * ctype.nbytes(tk.tiles[name].dtype) * plan.stages.get(name, 1)
        offset += -(-nbytes // SMEM_ALIGN) * SMEM_ALIGN
    for p in plan.pipelines.values():
        for r in p.ringed:
            ring = plan.rings[id(r)]
            plan.smem_offsets[ring.name] = offset
            offset += -(-ring.stage_elems * ring.elem_bytes * p.stages // SMEM_ALIGN) * SMEM_ALIGN
    if tma and arch == "sm_90a":
        offset = _plan_tma(tk, plan, offset)
    plan.tiles_bytes = offset
    return plan


# ----------------------------------------------------------------------------- mappings

def inherited_mapping(tk: TypedKernel, plan: Plan, value: N.Expr) -> M.Mapping:
    """For a value computed into a temporary: the best mapping among its same-shaped operands."""
    shape = tk.type_of(value).shape  # type: ignore[union-attr]
    found = [plan.mappings[n] for n in _elementwise_leaves(tk, plan, value, shape) if n in plan.mappings]
    return _best(found) if found else M.default(shape, tk.threads)


def _best(candidates: list[M.Mapping]) -> M.Mapping:
    """Prefer fragment layouts (they are forced on tiles by mma) over the flexible flat mapping."""
    return next((m for m in candidates if isinstance(m, M.Tasked)), candidates[0])


def _elementwise_leaves(tk: TypedKernel, plan: Plan, e: N.Expr, shape) -> list[str]:
    """Register tiles read at the value's own coordinates (no broadcast, transpose or reduction between)."""
    t = tk.type_of(e)
    if not isinstance(t, TileType) or M.squeeze(t.shape) != M.squeeze(shape):
        return []
    if isinstance(e, N.TileRef):
        return [] if e.name in plan.virtual else [e.name]
    kids = {N.BinOp: ("lhs", "rhs"), N.Unary: ("x",), N.Cast: ("x",), N.Where: ("cond", "a", "b")}.get(type(e), ())
    return [n for k in kids for n in _elementwise_leaves(tk, plan, getattr(e, k), shape)]


def _infer_mappings(tk: TypedKernel, plan: Plan, fragments: dict[str, M.Mapping]) -> None:
    """Fixed mappings (author's, mma accumulators) spread to the tiles computed elementwise with them.

    Tiles that appear together in an elementwise expression (same shape, same coordinates)
    form a group; a group takes a fixed mapping of one of its members, else the default.
    Operands left under another mapping are read through shared memory by the code."""
    fixed: dict[str, M.Mapping] = {}
    names: list[str] = []
    parent: dict[str, str] = {}

    def find(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for s in walk_stmts(tk.kernel.body):
        if isinstance(s, N.Alloc) and s.scope == "register":
            names.append(s.name)
            if s.name in fragments or s.layout is not None and s.layout.name not in _FREE_ANNOTATIONS:
                fixed[s.name] = _register_mapping(tk, s, fragments.get(s.name))
        elif isinstance(s, N.Assign) and s.define and s.name not in plan.virtual and s.name not in plan.resident:
            names.append(s.name)
    parent.update({n: n for n in names})
    dequant_runs = _dequant_runs(tk)
    for s in walk_stmts(tk.kernel.body):
        groups = []
        if isinstance(s, N.Assign) and s.name not in plan.virtual and s.name not in plan.resident:
            groups.append([s.name] + _elementwise_leaves(tk, plan, s.value, tk.tiles[s.name].shape))
        if isinstance(s, N.Copy) and isinstance(s.src, N.TileRef) and isinstance(s.dst, N.TileRef):
            groups.append([x.name for x in (s.src, s.dst) if tk.tiles[x.name].scope == "register"])
        for f in ("value",):
            for r in (x for x in sub_exprs(getattr(s, f)) if isinstance(x, N.Reduce)) if hasattr(s, f) else ():
                groups.append(_elementwise_leaves(tk, plan, r.x, tk.type_of(r.x).shape))
        for g in groups:
            g = [n for n in g if n in parent]
            for n in g[1:]:
                parent[find(n)] = find(g[0])
    comps: dict[str, list[str]] = {}
    for n in names:
        comps.setdefault(find(n), []).append(n)
    for members in comps.values():
        known = [fixed[n] for n in members if n in fixed]
        choice = _best(known) if known else M.default(tk.tiles[members[0]].shape, tk.threads,
                                                      max(dequant_runs.get(n, 8) for n in members))
        for n in members:
            shape = tk.tiles[n].shape
            if n in fixed:
                plan.mappings[n] = fixed[n]
            elif isinstance(choice, M.Flat):  # members may differ by leading 1s: same runs, own shape
                plan.mappings[n] = M.Flat(tuple(shape), tk.threads, choice.vec)
            elif choice.shape == tuple(shape):
                plan.mappings[n] = choice
            else:
                plan.mappings[n] = M.default(shape, tk.threads)


def _dequant_runs(tk: TypedKernel) -> dict[str, int]:
    """Register tiles dequantized from packed weights: runs of 16 bytes of packed fields (32 elements
    of 4 bits, 16 of 8), so that each thread loads whole 16-byte vectors of W."""
    out: dict[str, int] = {}
    for s in walk_stmts(tk.kernel.body):
        if isinstance(s, N.Dequant) and isinstance(s.dst, N.TileRef) and tk.tiles[s.dst.name].scope == "register":
            bits = tk.tensor(s.src.tensor).dtype.bits
            if bits in (1, 2, 4, 8):
                out[s.dst.name] = max(out.get(s.dst.name, 8), 128 // bits)
    return out


def _gemm_only_tiles(tk: TypedKernel, virtual: dict[str, N.Expr]) -> set[str]:
    """Tiles defined once by an expression and read only as gemm operands.

    The gemm reads operands from shared memory, so the expression is evaluated straight
    into a (swizzled) shared buffer: no registers held, no staging copy."""
    defined = {s.name for s in walk_stmts(tk.kernel.body) if isinstance(s, N.Assign) and s.define}
    out = set()
    for name in defined - set(virtual):
        ok = True
        for s in walk_stmts(tk.kernel.body):
            if isinstance(s, N.For) or (isinstance(s, N.Assign) and s.define and s.name == name):
                continue
            if isinstance(s, N.Gemm):
                if s.acc.name == name:
                    ok = False
                continue
            if name in tile_names(s):
                ok = False
        out |= {name} if ok and len(tk.tiles[name].shape) == 2 else set()
    return out


def _virtual_tiles(tk: TypedKernel) -> dict[str, N.Expr]:
    """Tiles defined by iota/full/scalars alone, only read by expressions: cheaper to recompute than to hold."""
    out: dict[str, N.Expr] = {}
    uses_elsewhere, written = set(), set()
    for s in walk_stmts(tk.kernel.body):
        if isinstance(s, N.Copy) and isinstance(s.src, N.TileRef):
            uses_elsewhere.add(s.src.name)
        if isinstance(s, N.Gemm):
            uses_elsewhere |= {s.a.name, s.b.name}
        w = written_tile(s)
        if w is not None and not (isinstance(s, N.Assign) and s.define):
            written.add(w)
    for s in walk_stmts(tk.kernel.body):
        if isinstance(s, N.Assign) and s.define and s.name not in uses_elsewhere | written:
            leaves = [x for x in sub_exprs(s.value) if isinstance(x, (N.TileRef, N.Reduce))]
            if all(isinstance(x, N.TileRef) and x.name in out for x in leaves):
                out[s.name] = s.value
    return out


def _register_mapping(tk: TypedKernel, s: N.Alloc, fragment: M.Mapping | None) -> M.Mapping:
    t = tk.tiles[s.name]
    if s.layout is not None and s.layout.name not in _FREE_ANNOTATIONS:
        task = _task_mapping(s.layout)
        if len(task.shape) < len(t.shape):
            task = TaskMapping(tuple(a.padded(len(t.shape)) for a in task.atoms))
        if len(task.shape) != len(t.shape) or not task.is_valid_for(t.shape):
            raise TileError(f"layout {s.layout} covers {list(task.shape)}, which does not tile '{s.name}' "
                            f"of shape {list(t.shape)}", s.layout.loc,
                            hint="each tile extent must be a multiple of the mapping's")
        if task.num_threads > tk.threads:
            raise TileError(f"layout {s.layout} needs {task.num_threads} threads; the block has {tk.threads}",
                            s.layout.loc)
        reps = tuple(a // b for a, b in zip(t.shape, task.shape))
        if any(r > 1 for r in reps):
            task = local(*reps) * task
        return M.Tasked(task, tk.threads, f"{s.layout} (as written)")
    if fragment is not None:
        return fragment
    return M.default(t.shape, tk.threads)


_ATOMS = {"spatial": spatial, "local": local, "repeat": local, "column_spatial": column_spatial,
          "column_local": column_local, "replicate": replicate}


def _task_mapping(e: N.LayoutExpr) -> TaskMapping:
    if e.name == "*":
        out = None
        for a in e.args:
            m = _task_mapping(a)  # type: ignore[arg-type]
            out = m if out is None else out * m
        return out  # type: ignore[return-value]
    fn = _ATOMS.get(e.name)
    if fn is None or not all(isinstance(a, int) for a in e.args):
        raise TileError(f"the CUDA backend does not know register layout '{e}'", e.loc,
                        hint="compose spatial(...), local(...), column_spatial(...), column_local(...) with *")
    try:
        return fn(*e.args)
    except LayoutError as err:
        raise TileError(str(err), e.loc) from None


# ----------------------------------------------------------------------------- mma

def _mma_accumulators(tk: TypedKernel, gemms: list[N.Gemm]) -> dict[str, MmaTiling]:
    out = {}
    for g in gemms:
        acc = tk.tiles[g.acc.name]
        if _mma_ok(tk, g):
            til = mma_tiling(acc.shape[0], acc.shape[1], tk.threads)
            if til is not None:
                out[g.acc.name] = til
    return out


def _mma_ok(tk: TypedKernel, g: N.Gemm) -> bool:
    a, b, c = (tk.tiles[x.name] for x in (g.a, g.b, g.acc))
    k = a.shape[0] if g.trans_a else a.shape[1]
    return (a.dtype.name in MMA_DTYPES and b.dtype == a.dtype and c.dtype.name == "f32" and k % 16 == 0
            and c.shape[0] % 16 == 0 and c.shape[1] % 8 == 0
            and mma_tiling(c.shape[0], c.shape[1], tk.threads) is not None)


# ----------------------------------------------------------------------------- wgmma

def _wgmma_accumulators(tk: TypedKernel, gemms: list[N.Gemm], plan: Plan) -> dict[str, W.WgmmaTiling]:
    """Accumulators every gemm into which can use wgmma (layouts and descriptors not yet checked)."""
    out: dict[str, W.WgmmaTiling] = {}
    refused: set[str] = set()
    for g in gemms:
        c = tk.tiles[g.acc.name]
        til = W.wgmma_tiling(c.shape[0], c.shape[1], tk.threads) if c.scope == "register" else None
        operands_shared = all(tk.tiles[x.name].scope == "shared" or x.name in plan.resident for x in (g.a, g.b))
        if til is None or not operands_shared or not _mma_ok(tk, g) or g.acc.name in refused:
            refused.add(g.acc.name)
            out.pop(g.acc.name, None)
        else:
            out[g.acc.name] = til
    return out


def _plan_wgmma(tk: TypedKernel, plan: Plan, gemms: list[N.Gemm], tilings: dict[str, W.WgmmaTiling]) -> None:
    """Descriptors for the gemms of `tilings`' accumulators, read off the chosen layouts; an
    accumulator any of whose gemms' operands cannot be described stays on mma.sync."""
    chosen: list[tuple[N.Gemm, WgmmaGemm | None]] = [(g, _wgmma_gemm(tk, plan, g, tilings[g.acc.name]))
                                                     for g in gemms if g.acc.name in tilings]
    failed = {g.acc.name for g, wg in chosen if wg is None}
    for g, wg in chosen:
        if wg is not None and g.acc.name not in failed:
            plan.wgmma[id(g)] = wg
            plan.mma.pop(id(g), None)


def _wgmma_gemm(tk: TypedKernel, plan: Plan, g: N.Gemm, til: W.WgmmaTiling) -> WgmmaGemm | None:
    a = tk.tiles[g.a.name]
    eb = ctype.nbytes(a.dtype)
    k = a.shape[0] if g.trans_a else a.shape[1]
    lay_a, lay_b = plan.layouts.get(g.a.name), plan.layouts.get(g.b.name)
    if lay_a is None or lay_b is None:
        return None
    # A is [m, k] (K-major) or [k, m] (trans_a: M-major); B is [k, n] (N-major) or [n, k] (trans_b: K-major)
    pa = W.operand_plan(lay_a, eb, not g.trans_a, (lambda mn, kk: (kk, mn)) if g.trans_a else (lambda mn, kk: (mn, kk)),
                        k, til.m, til.rows, til.wgm, 64)
    pb = W.operand_plan(lay_b, eb, g.trans_b, (lambda mn, kk: (mn, kk)) if g.trans_b else (lambda mn, kk: (kk, mn)),
                        k, til.n, til.cols, til.wgn, til.inst_n)
    return None if pa is None or pb is None else WgmmaGemm(til, k, pa, pb)


def _keeps_wgmma_in_flight(tk: TypedKernel, plan: Plan, p: Pipeline) -> bool:
    """Whether the loop's wgmma gemms may leave their last group running into the next iteration:
    three or more stages, operands all pipeline stages, accumulators touched by nothing else."""
    gemms = [s for s in walk_stmts(p.consumers) if isinstance(s, N.Gemm) and id(s) in plan.wgmma]
    if p.stages < 3 or not gemms or not all(any(s is c for c in p.consumers) for s in gemms):
        return False
    staged = {c.dst.name for c in p.producers}
    if any(x.name not in staged for g in gemms for x in (g.a, g.b)):
        return False
    accs = {g.acc.name for g in gemms}
    return all(isinstance(s, N.Gemm) and id(s) in plan.wgmma or not (tile_names(s) & accs)
               for s in walk_stmts(p.consumers) if not isinstance(s, N.For))


# ----------------------------------------------------------------------------- TMA

def _plan_tma(tk: TypedKernel, plan: Plan, offset: int) -> int:
    """TMA boxes for the pipelines whose producers all allow them (and that fill no rings), and
    8 bytes of shared memory per stage for their mbarriers, from `offset`; the new end."""
    for s in walk_stmts(tk.kernel.body):
        p = plan.pipelines.get(id(s))
        if p is None or p.ringed or not p.producers:
            continue
        loads = [TMA.tma_load(tk, c, plan.layouts[c.dst.name]) for c in p.producers]
        if any(ld is None for ld in loads):
            continue
        plan.tma.update((ld.tile, ld) for ld in loads)
        plan.mbarriers[id(s)] = offset
        offset += -(-8 * p.stages // SMEM_ALIGN) * SMEM_ALIGN
    return offset


# ----------------------------------------------------------------------------- pipelines

def _pipeline(tk: TypedKernel, loop: N.For) -> Pipeline | None:
    if loop.stages is None or not isinstance(loop.stages, N.Const) or loop.stages.value < 2:
        return None
    defined_inside = {s.name for s in walk_stmts(loop.body) if isinstance(s, (N.Let, N.Alloc, N.Assign))}
    lets: dict[str, N.Let] = {}
    producers: list[N.Copy] = []
    ringed: list[N.Stmt] = []
    consumers: list[N.Stmt] = []
    mentioned: set[str] = set()  # tiles touched by the body so far: a copy into one cannot move ahead
    for s in loop.body:
        if isinstance(s, N.Let):
            lets[s.name] = s
        elif _ringable(tk, s) and _depends_only_on(s, loop.var, lets, defined_inside):
            ringed.append(s)  # stays a consumer too: it reads its stage where it stands
        elif (isinstance(s, N.Copy) and isinstance(s.src, N.GlobalRef)
                and isinstance(s.dst, N.TileRef) and tk.tiles[s.dst.name].scope == "shared"
                and s.dst.name not in defined_inside and s.dst.name not in mentioned
                and _depends_only_on(s, loop.var, lets, defined_inside)):
            producers.append(s)
            continue
        if not isinstance(s, N.For):
            mentioned |= tile_names(s)
        else:
            mentioned |= set().union(*(tile_names(b) for b in walk_stmts(s.body) if not isinstance(b, N.For)))
        consumers.append(s)
    stored = {s.dst.tensor for s in walk_stmts(tk.kernel.body) if isinstance(s, N.Copy)
              and isinstance(s.dst, N.GlobalRef)}
    producers = [c for c in producers if c.src.tensor not in stored]  # loads may not run ahead of stores
    ringed = [r for r in ringed if not {r.src.tensor, getattr(r, "scale", None), getattr(r, "zero", None)} & stored]
    consumers = [s for s in loop.body if not any(s is c for c in producers)]
    if not producers:
        return Pipeline(loop.stages.value, (), _lets_needed(ringed, lets), tuple(consumers), tuple(ringed)) \
            if ringed else None
    written = {c.dst.name for c in producers}
    if len(written) != len(producers):
        return None
    inside = list(walk_stmts(tuple(consumers)))
    for s in walk_stmts(tk.kernel.body):  # the tiles must be touched only by this loop's consumers
        if isinstance(s, N.Alloc) or any(s is p for p in producers) or not _mentions_any(s, written):
            continue
        if not any(s is c for c in inside) or written_tile(s) in written:
            return None
    return Pipeline(loop.stages.value, tuple(producers), _lets_needed(producers + ringed, lets), tuple(consumers),
                    tuple(ringed))


def _ringable(tk: TypedKernel, s: N.Stmt) -> bool:
    """A global -> register copy (zero padding, unpacked) or a dequant (into registers or shared memory)
    whose window rows are whole 16-byte chunks (cp.async moves 16 bytes at a time)."""
    if not (isinstance(s, (N.Copy, N.Dequant)) and isinstance(s.src, N.GlobalRef) and isinstance(s.dst, N.TileRef)
            and (tk.tiles[s.dst.name].scope == "register" or isinstance(s, N.Dequant))):
        return False
    src, t = tk.tensor(s.src.tensor), tk.tiles[s.dst.name]
    if isinstance(s, N.Copy):
        zero_pad = s.pad is None or (isinstance(s.pad, N.Const) and s.pad.value == 0)
        return zero_pad and not src.dtype.is_packed and t.shape[-1] * ctype.nbytes(src.dtype) % 16 == 0
    return src.dtype.bits <= 8 and t.shape[-1] * src.dtype.bits % 128 == 0


def _ring(tk: TypedKernel, s: N.Stmt, name: str) -> Ring:
    src, t = tk.tensor(s.src.tensor), tk.tiles[s.dst.name]
    if isinstance(s, N.Dequant):
        shape, eb = tuple(t.shape[:-1]) + (t.shape[-1] * src.dtype.bits // 8,), 1
    else:
        shape, eb = tuple(t.shape), ctype.nbytes(src.dtype)
    n = 1
    for d in shape:
        n *= d
    return Ring(name, shape, eb, -(-n * eb // 16) * 16 // eb)


def _vars(e) -> set[str]:
    return {x.name for x in sub_exprs(e) if isinstance(x, N.Var)}


def _depends_only_on(c: N.Copy | N.Dequant, var: str, lets: dict[str, N.Let], inside: set[str]) -> bool:
    names = set().union(*(_vars(i) for i in c.src.indices)) | (_vars(getattr(c, "pad", None) or N.Const(0)))
    seen = set()
    while names:
        n = names.pop()
        if n in seen:
            continue
        seen.add(n)
        if n == var or n not in inside:
            continue
        if n not in lets:
            return False
        names |= _vars(lets[n].value)
    return True


def _lets_needed(producers: list, lets: dict[str, N.Let]) -> tuple[N.Let, ...]:
    names = set()
    for c in producers:
        pad = getattr(c, "pad", None)
        for i in c.src.indices + ((pad,) if pad is not None else ()):
            names |= _vars(i)
    changed = True
    while changed:
        more = set().union(*(_vars(lets[n].value) for n in names if n in lets)) if names else set()
        changed = not more <= names
        names |= more
    return tuple(l for n, l in lets.items() if n in names)


def tile_names(s: N.Stmt) -> set[str]:
    """Tiles a statement reads or writes (not looking into loop bodies)."""
    out = set()
    for f in ("src", "dst", "a", "b", "acc", "value", "init"):
        v = getattr(s, f, None)
        if v is not None and not isinstance(v, (str, bool, tuple)):
            out |= {x.name for x in sub_exprs(v) if isinstance(x, N.TileRef)}
    if isinstance(s, (N.Alloc, N.Assign)):
        out.add(s.name)
    return out


def _mentions_any(s: N.Stmt, names: set[str]) -> bool:
    return not isinstance(s, N.For) and bool(tile_names(s) & names)


def written_tile(s: N.Stmt) -> str | None:
    if isinstance(s, (N.Copy, N.Dequant)) and isinstance(s.dst, N.TileRef):
        return s.dst.name
    if isinstance(s, N.Gemm):
        return s.acc.name
    if isinstance(s, N.Assign):
        return s.name
    return None


# ----------------------------------------------------------------------------- shared init

def _skip_init(tk: TypedKernel, body: tuple[N.Stmt, ...], plan: Plan) -> None:
    """Shared tiles whose first use overwrites them whole need no zero fill."""
    for i, s in enumerate(body):
        if isinstance(s, N.For):
            _skip_init(tk, s.body, plan)
        if not (isinstance(s, N.Alloc) and s.scope == "shared"):
            continue
        for j in range(i + 1, len(body)):
            later = body[j]
            first = _first_use(later, s.name)
            if first == "write" and not (isinstance(later, N.For) and _used_in(body[j + 1:], s.name)):
                plan.skip_init.add(s.name)
            if first is not None:
                break


def _first_use(s: N.Stmt, name: str) -> str | None:
    if isinstance(s, N.For):
        for b in s.body:
            u = _first_use(b, name)
            if u is not None:
                return u
        return None
    if name not in tile_names(s):
        return None
    full_write = isinstance(s, (N.Copy, N.Dequant)) and isinstance(s.dst, N.TileRef) and s.dst.name == name
    if full_write and isinstance(s, N.Copy) and isinstance(s.src, N.TileRef) and s.src.name == name:
        return "read"
    return "write" if full_write else "read"


def _used_in(stmts: tuple[N.Stmt, ...], name: str) -> bool:
    return any(name in tile_names(s) for s in walk_stmts(stmts) if not isinstance(s, N.For))
