"""Target mechanics around the layout plan: pipelines, rings, TMA boxes, barriers, smem offsets.

Every layout decision is the layout plan's (`tilelang.layout.infer_layouts`): register
mappings, shared layouts, which gemms run on wgmma / mma.sync / fma and on which grid, which
tiles are kept in shared memory or recomputed.  This module adds what only the CUDA backend
needs to emit them:

* A `pipelined` loop whose body starts with global->shared copies (indices that
  depend only on the loop variable and names from outside the loop) gets
  `stages` buffers for each such tile, filled by cp.async ahead of the compute.
  In a pipelined loop whose wgmma operands are all pipeline stages and whose accumulators
  nothing else touches, one wgmma group stays in flight across iterations (`lag`): loads
  then run `stages - 2` iterations ahead, so the stage being overwritten is never one an
  in-flight wgmma reads.
* With `tma` (sm_90a), a pipeline whose producers all load tiles in a canonical wgmma swizzle
  (tma.py) fills its stages with TMA boxes completing on one mbarrier per stage
  (`Plan.mbarriers`) instead of cp.async: loads then run `stages - lag` iterations ahead.
* Global->register copies and dequants (into registers or shared memory) of such a loop
  get a "ring": `stages` shared buffers of the window's raw global elements (packed
  bytes for sub-byte weights), filled by cp.async ahead; the statement itself stays in
  place and reads its stage from shared memory instead of global memory.
* Shared tiles (and rings, and mbarriers) get their offsets in dynamic shared memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...ir import nodes as N
from ...ir.visit import sub_exprs, walk_stmts
from ...layout import LayoutPlan, infer_layouts
from ...layout.plan import AssignPlan, GemmPlan, at_path
from ...passes.infer import TypedKernel
from . import ctype
from . import mapping as M
from . import tma as TMA
from .smem import Smem

SMEM_ALIGN = 128
GMMA_ALIGN = 1024  # the 128-byte swizzle repeats every 8 rows of 128 bytes


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
    layout: LayoutPlan
    arch: str | None = None  # the target: "sm_90a" enables wgmma
    mappings: dict[str, M.Mapping] = field(default_factory=dict)
    layouts: dict[str, Smem] = field(default_factory=dict)
    smem_offsets: dict[str, int] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)
    mma: dict[int, GemmPlan] = field(default_factory=dict)  # id(Gemm) -> its plan, mma.sync gemms
    wgmma: dict[int, GemmPlan] = field(default_factory=dict)  # id(Gemm) -> its plan, wgmma gemms
    pipelines: dict[int, Pipeline] = field(default_factory=dict)  # id(For) -> pipeline
    rings: dict[int, Ring] = field(default_factory=dict)  # id(Copy / Dequant) -> its prefetch ring
    side_rings: dict[tuple[int, str], Ring] = field(default_factory=dict)  # (id(Dequant), scale/zero tensor) -> ring
    tma: dict[str, TMA.TmaLoad] = field(default_factory=dict)  # pipelined tile -> its TMA boxes
    mbarriers: dict[int, int] = field(default_factory=dict)  # id(For) of a TMA pipeline -> its mbarriers' offset
    skip_init: set[str] = field(default_factory=set)  # shared tiles fully written before any read
    virtual: dict[str, N.Expr] = field(default_factory=dict)  # tiles recomputed where used (iota/full only)
    resident: set[str] = field(default_factory=set)  # register tiles kept in shared memory (gemm operands only)
    tiles_bytes: int = 0

    reduce_inputs: dict[int, M.Mapping] = field(default_factory=dict)  # id(Reduce) -> mapping its input is in

    def side_rings_of(self, s: N.Stmt) -> list[tuple[str, Ring]]:
        """(scale/zero tensor, ring) of the rings riding beside ringed statement `s`'s own."""
        return [(tensor, ring) for (sid, tensor), ring in self.side_rings.items() if sid == id(s)]

    def vector(self, s: N.Stmt) -> int:
        """The plan's run length for a copy or dequant: elements one access moves."""
        return self.layout.stmt(s).vector

    def value_mapping(self, s: N.Assign) -> M.Mapping:
        """The mapping an assignment's value is computed in (a resident tile's: straight into shared memory)."""
        return M.realize(self.layout.stmt(s).mapping, self.threads)


def make_plan(tk: TypedKernel, arch: str | None = None, tma: bool = False) -> Plan:
    """`tma`: load pipelined wgmma operands with TMA where they allow it (sm_90a only)."""
    lp = infer_layouts(tk, arch or "sm_80")
    plan = Plan(tk.threads, lp, arch)
    body = tk.kernel.body
    for t in lp.tiles:
        if t.storage == "virtual":
            plan.virtual[t.name] = next(s.value for s in walk_stmts(body) if isinstance(s, N.Assign) and s.define
                                        and s.name == t.name)
        elif t.mapping is not None:
            plan.mappings[t.name] = M.realize(t.mapping, tk.threads, t.origin)
        else:
            plan.layouts[t.name] = Smem(t.shared, tuple(t.type.shape))
            if t.storage == "resident":
                plan.resident.add(t.name)
    for p in lp.stmts:
        if isinstance(p, GemmPlan) and p.kind == "mma":
            plan.mma[id(p.stmt)] = p
        elif isinstance(p, GemmPlan) and p.kind == "wgmma":
            plan.wgmma[id(p.stmt)] = p
        elif isinstance(p, AssignPlan):
            for r in p.reduces:
                plan.reduce_inputs[id(at_path(p.stmt.value, r.path))] = M.realize(r.input, tk.threads)
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
                    plan.rings[id(r)] = _ring(tk, lp, r, f"tl_ring{len(plan.rings)}")
                    for side in _side_tensors(tk, r):
                        plan.side_rings[(id(r), side)] = _side_ring(tk, r, side, f"tl_side{len(plan.side_rings)}")
    _skip_init(tk, body, plan)
    fed_to_gmma = {x.name for g in plan.wgmma.values() for x in (g.stmt.a, g.stmt.b)}
    offset = 0
    for name, lay in plan.layouts.items():
        if lay.block or name in fed_to_gmma:  # a swizzle atom's address bits are the hardware's: align them
            offset = -(-offset // GMMA_ALIGN) * GMMA_ALIGN
        plan.smem_offsets[name] = offset
        nbytes = lay.cosize * ctype.nbytes(tk.tiles[name].dtype) * plan.stages.get(name, 1)
        offset += -(-nbytes // SMEM_ALIGN) * SMEM_ALIGN
    for p in plan.pipelines.values():
        for r in p.ringed:
            for ring in [plan.rings[id(r)]] + [side for _, side in plan.side_rings_of(r)]:
                plan.smem_offsets[ring.name] = offset
                offset += -(-ring.stage_elems * ring.elem_bytes * p.stages // SMEM_ALIGN) * SMEM_ALIGN
    if tma and arch == "sm_90a":
        offset = _plan_tma(tk, plan, offset)
    plan.tiles_bytes = offset
    return plan


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
    defined_inside = {s.name for s in walk_stmts(loop.body) if isinstance(s, (N.Let, N.Alloc, N.Assign, N.ReadScalar))}
    lets: dict[str, N.Let] = {}
    producers: list[N.Copy] = []
    ringed: list[N.Stmt] = []
    consumers: list[N.Stmt] = []
    mentioned: set[str] = set()  # tiles touched by the body so far: a copy into one cannot move ahead
    for s in loop.body:
        if isinstance(s, N.Let):
            lets[s.name] = s
        elif _offset_window(s):
            pass  # element offsets and stops: loaded where it stands (no ring, cp.async or TMA ahead of time)
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


def _offset_window(s: N.Stmt) -> bool:
    """A copy or dequant whose global window has an element offset (`A[pos:, j]`)."""
    refs = [x for x in (getattr(s, "src", None), getattr(s, "dst", None)) if isinstance(x, N.GlobalRef)]
    return any(isinstance(i, N.ElemOffset) for r in refs for i in r.indices)


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
    if src.storage == "packed":  # a tile of the packed order is one contiguous stretch of whole 16-byte chunks
        return True
    return src.dtype.bits <= 8 and t.shape[-1] * src.dtype.bits % 128 == 0


def _ring(tk: TypedKernel, lp: LayoutPlan, s: N.Stmt, name: str) -> Ring:
    src, t = tk.tensor(s.src.tensor), tk.tiles[s.dst.name]
    if src.storage == "packed":
        shape, eb = (lp.packed_layout(src.name).block_bytes,), 1
    elif isinstance(s, N.Dequant):
        shape, eb = tuple(t.shape[:-1]) + (t.shape[-1] * src.dtype.bits // 8,), 1
    else:
        shape, eb = tuple(t.shape), ctype.nbytes(src.dtype)
    n = 1
    for d in shape:
        n *= d
    return Ring(name, shape, eb, -(-n * eb // 16) * 16 // eb)


def _side_tensors(tk: TypedKernel, s: N.Stmt) -> list[str]:
    """The scale (and zero-point) tensors of a ringed packed dequant that ride in rings of their own.

    Each thread's scales are otherwise global loads at the top of every iteration, one exposed memory
    latency per k-step (the weights themselves were prefetched stages ahead).  A stage holds the tile's
    [rows, BK / G] groups; a row of them is one cp.async of 4, 8 or 16 bytes, so the group size must be
    a constant dividing BK and a row's groups one of those sizes."""
    if not (isinstance(s, N.Dequant) and tk.tensor(s.src.tensor).storage == "packed"
            and isinstance(s.group, N.Const)):
        return []
    bk, g = tk.tiles[s.dst.name].shape[-1], s.group.value
    sides = [x for x in (s.scale, s.zero) if x is not None]
    if bk % g or len(tk.tensor(sides[0]).dims) != 2:
        return []
    return [x for x in sides if bk // g * ctype.nbytes(tk.tensor(x).dtype) in (4, 8, 16)]


def _side_ring(tk: TypedKernel, s: N.Dequant, tensor: str, name: str) -> Ring:
    rows, bk = tk.tiles[s.dst.name].shape
    eb = ctype.nbytes(tk.tensor(tensor).dtype)
    shape = (rows, bk // s.group.value)
    return Ring(name, shape, eb, -(-shape[0] * shape[1] * eb // 16) * 16 // eb)


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
