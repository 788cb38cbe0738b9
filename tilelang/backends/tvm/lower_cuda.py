"""Lowering for the cuda target (sm_80, sm_90a), following the layout plan.

What it takes from the plan (`tilelang.layout.infer_layouts(tk, "sm_80")`: TVM has no wgmma,
so it always asks for the mma.sync plan), so that `tilelang show --layouts` is what runs:

* every register tile's task mapping: a thread holds the tile in a local array, slot v of
  thread tx holding the mapping's value v (mapping.py), and every statement computes its
  register target in that mapping (a copy between registers and shared memory moves the
  register tile's elements);
* where each tile lives: registers; shared memory in the plan's `SharedLayout` (shared tiles,
  and *resident* register tiles that only gemms read, written by the statement that defines
  them) realized as TIR buffers in smem.py; or nowhere (*virtual* iota/full tiles, whose
  defining expression is recomputed where they are read);
* each gemm's instruction: mma.sync on the plan's warp grid (mma.py), or the scalar fma loop
  where the plan says so (dtypes, shapes, or an operand layout ldmatrix cannot read);
* which global -> shared copies move 16-byte vectors (the plan's `CopyPlan.vector`), issued
  as cp.async where every tensor is 16-byte aligned (`s_aligned16`), element by element
  otherwise.

What it realizes its own way (target mechanics the plan leaves to the backend):

* mirrors: a register tile that a statement reads at other elements than its own slots hold
  (a broadcast, transpose, reduction, fma-gemm operand or register mma operand; the plan's
  "shared" conversions) keeps a row-major shared-memory mirror, rewritten between barriers
  before a statement reads it where the tile was written since (so a statement may read its
  own target across threads, and an accumulator is mirrored once after its loop);
* reductions: each output gets a power-of-two group of lanes of a warp, combined with warp
  shuffles into a shared buffer (the plan's `ReducePlan` describes the CUDA backend's);
* statements no register tile takes part in sweep their tile, row-major element q by thread
  q % threads (what the plan says of them);
* pipelines: in a `pipelined(..., stages=S)` loop the cp.async copies go to a ring of S stages
  of their tiles, S - 1 iterations in flight while one computes, one barrier per iteration;
* barriers: every statement that touches shared memory ends with one.

Grid axes bind blockIdx.x/y/z and a block's threads threadIdx.x.  Shared tiles are dynamic
shared memory (`shared.dyn`): a ring's stages can exceed 48 KiB (mirrors and reduction
results stay static: TVM's merging of dynamic buffers fails on them).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ...diagnostics import InternalError
from ...ir import nodes as N
from ...ir.visit import sub_exprs, walk_stmts
from ...layout import infer_layouts
from ...layout.plan import GemmPlan
from ...layout.task_mapping import TaskMapping
from . import mapping as M
from . import mma
from .emit import Val, cast, tir_dtype
from .lower import Alloc, Lowering, combine, reduce_dtype
from .signature import ALIGNED
from .smem import SharedBuffer

PLAN_TARGET = "sm_80"  # the plan TVM follows: mma.sync (it has no wgmma)
AXES = ("blockIdx.x", "blockIdx.y", "blockIdx.z")
CHUNK = 16  # bytes of one cp.async.cg
SHARED = "shared.dyn"


@dataclass
class CudaLowering(Lowering):
    where = "the TVM cuda lowering"
    template_name: str = "cuda.py.j2"
    mirrored: frozenset = frozenset()  # register tiles that are read across threads
    wants: set = field(default_factory=set)  # the same, as found by this lowering

    def __post_init__(self):
        super().__post_init__()
        self.plan = infer_layouts(self.tk, PLAN_TARGET)
        self.block_ids = tuple(f"b{a}" for a in range(len(self.tk.kernel.grid)))
        self.threads = self.tk.threads
        defs = {s.name: s.value for s in walk_stmts(self.tk.kernel.body) if isinstance(s, N.Assign) and s.define}
        self.virtual = {t.name: defs[t.name] for t in self.plan.tiles if t.storage == "virtual"}
        self.buffers = {t.name: SharedBuffer(t.shared, tuple(t.type.shape)) for t in self.plan.tiles
                        if t.shared is not None}  # shared tiles and resident register tiles
        mma = [p for p in self.plan.stmts if isinstance(p, GemmPlan) and p.kind == "mma"]
        # register tiles the mma reads or writes in place: kept in registers however many slots they have
        self.fragments = {p.stmt.acc.name for p in mma} | {ref.name for p in mma for ref, i in _operands(p)
                                                          if i.name == "mov"}
        self.partial: dict[str, int] = {}  # accumulators of k-split gemms not summed yet: their k groups
        self.touched = False  # the statement being lowered reads or writes shared memory
        self.staged = self.plan_stages()  # tile -> stages of its ring (pipelined copies)
        self.stage: dict[str, str] = {}  # tile -> the stage its statements use now
        self.no_sync: set = set()  # statements whose trailing barrier the pipeline provides
        self.dirty: set = set()  # mirrored tiles written since their mirror was last rewritten
        self.read_mirrors: set = set()  # mirrors read by the statements lowered so far (of this loop body)
        self.flush: set = set()  # mirrors the statement being lowered reads
        self.if_states: list = []  # per enclosing if: (mirrors stale at its start, stale after a branch)

    def generate(self) -> str:
        body = self.block(self.tk.kernel.body) or "T.evaluate(0)"
        em = self.emitter(lambda n, i: n)
        blocks = [dict(var=b, extent=cast(em.value(g), "int32").text, axis=AXES[a])
                  for a, (b, g) in enumerate(zip(self.block_ids, self.tk.kernel.grid))]
        info = self.kernel_info(noalias=self.noalias, prologue=[], blocks=blocks, threads=self.threads)
        return self.m.kernel(info, self.allocs, body) + "\n"

    # ------------------------------------------------------------------ where elements live
    def own(self, name: str) -> TaskMapping | None:
        """The plan's mapping of a register tile held in registers; None for tiles in shared memory or recomputed."""
        return self.plan.tile(name).mapping

    def slots(self, m: TaskMapping | None, name: str) -> M.Slots:
        """The slots of a statement over tile `name` in mapping `m` (None: the threads sweep the tile)."""
        shape = tuple(self.tile(name).shape)
        if m is None:
            return M.sweep(shape, self.threads)
        return M.held(M.fit(m, shape), self.threads, registers=name in self.fragments)

    def operand(self, name: str) -> str:
        """The shared buffer a gemm operand is read from: a register tile's is its mirror."""
        return f"t_{name}" if name in self.buffers else f"m_{name}"

    def use_mirror(self, name: str) -> None:
        self.wants.add(name)
        self.flush.add(name)
        self.read_mirrors.add(name)

    def stmt(self, s: N.Stmt) -> str:
        """The statement, after adding up the partial sums of k-split accumulators it touches and rewriting
        the stale mirrors it reads; its own target's goes stale."""
        sums = [self.sum_partials(a) for a in list(self.partial) if a in s.reads() | s.writes()
                and not (isinstance(s, N.Gemm) and s.acc.name == a)]
        outer, self.flush = self.flush, set()
        text = "\n".join(sums + [super().stmt(s)])
        stale = sorted(self.flush & self.dirty)
        self.dirty -= self.flush
        self.flush = outer
        if not isinstance(s, N.For):
            w = _written(s)
            if w is not None and w in self.mirrored and self.own(w) is not None:
                self.dirty.add(w)
        return "\n".join([self.mirror(x) for x in stale] + [text])

    def loop_body(self, lower) -> tuple[str, str]:
        """(mirrors to rewrite before the loop, the body with those it reads rewritten at its end)."""
        before, outer_reads = self.dirty, self.read_mirrors
        self.dirty, self.read_mirrors = set(), set()
        body = lower()
        reads = self.read_mirrors
        end = sorted(self.dirty & reads)
        self.dirty = (before - reads) | (self.dirty - reads)
        self.read_mirrors = outer_reads | reads
        pre = "\n".join(self.mirror(x) for x in sorted(before & reads))
        return pre, "\n".join([body] + [self.mirror(x) for x in end])

    def sref(self, buf: str, idx: tuple[str, ...]) -> str:
        """An element of a shared buffer: a tile's (or resident tile's) placed by the plan's layout, in
        the current stage of a ring; a mirror's or reduction result's row-major."""
        if buf.startswith("t_"):
            name = buf[2:]
            idx = self.buffers[name].index(tuple(idx))
            if name in self.staged:
                idx = (self.stage[name],) + idx
        return f"{buf}[{', '.join(idx)}]"

    def reader(self, visiting: M.Slots | None = None):
        """Element loads for a statement whose slots are `visiting` (None: it reads every operand
        across threads).  A register operand is read from this thread's own slot where that slot
        holds the element, else from its mirror; virtual tiles are recomputed."""
        def read(name: str, at: tuple[str, ...]) -> str:
            t = self.tk.tiles.get(name)
            if t is None:  # a reduction result
                self.touched = True
                return f"{name}[{', '.join(at)}]"
            if name in self.virtual:
                return cast(self.emitter(read).value(self.virtual[name], at), tir_dtype(t.dtype)).text
            if name in self.buffers:
                self.touched = True
                return self.sref(f"t_{name}", at)
            own = self.slots(self.own(name), name)
            if visiting is not None and own.coords == at and own.same_elements(visiting):
                return f"t_{name}[v]"
            self.use_mirror(name)
            self.touched = True
            return self.sref(f"m_{name}", at)
        return read

    def store_at(self, name: str, idx: tuple[str, ...]) -> str:
        if name in self.buffers:
            self.touched = True
            return self.sref(f"t_{name}", idx)
        return f"t_{name}[v]"

    def declare(self, name: str) -> None:
        t = self.tile(name)
        tdt = tir_dtype(t.dtype)
        if name in self.buffers:
            ring = (self.staged[name],) if name in self.staged else ()
            self.allocs.append(Alloc(f"t_{name}", ring + self.buffers[name].dims, tdt, SHARED))
            return
        self.allocs.append(Alloc(f"t_{name}", (self.slots(self.own(name), name).count,), tdt, "local"))
        if name in self.mirrored:
            self.allocs.append(Alloc(f"m_{name}", t.shape, tdt, "shared"))

    def over(self, name: str, m: TaskMapping | None, comment: str, body_of, mat=None) -> str:
        """A statement visiting every element of tile `name` in mapping `m` (None: a sweep):
        `body_of(idx, em, target) -> text`, `target` the element's place in `name`."""
        own = self.own(name)
        if own is not None and m != own:
            raise InternalError(f"a statement computes register tile '{name}' in {m!r}, not its mapping {own!r}",
                                "the TVM cuda lowering", self.tk.kernel.name)
        sl = self.slots(m, name)
        self.touched = False
        em = self.emitter(self.reader(sl), mat)
        body = body_of(sl.coords, em, self.store_at(name, sl.coords))
        return self.m.per_thread(comment, sl.count, sl.loop, sl.guard, body, self.touched)

    def sum_partials(self, acc: str) -> str:
        """Add up the k groups' partial accumulators (the plan split k over warp groups, the outermost
        warps): every thread then holds the full sums of its slots, as the accumulator's (replicated)
        mapping says."""
        groups = self.partial.pop(acc)
        sl = self.slots(self.own(acc), acc)
        parts = self.fresh("parts")
        self.allocs.append(Alloc(parts, (sl.count, self.threads), "float32", "shared"))
        return self.m.sum_partials(f"# {acc}: add the partial sums of its {groups} k groups", f"t_{acc}", parts,
                                   sl.count, sl.loop, self.threads, groups, self.threads // groups)

    def mirror(self, name: str) -> str:
        """Copy a register tile to its shared mirror, between barriers (other threads may still read it)."""
        sl = self.slots(self.own(name), name)
        store = f"{self.sref(f'm_{name}', sl.coords)} = t_{name}[v]"
        return self.m.sync() + "\n" + self.m.per_thread("", sl.count, sl.loop, sl.guard, store, True)

    # ------------------------------------------------------------------ reductions
    def materialize(self, e: N.Expr) -> tuple[str, dict]:
        mat: dict = {}
        text = []
        for r in self.reductions(e):
            name = self.fresh("red")
            self.allocs.append(Alloc(name, self.tk.type_of(r).shape, reduce_dtype(self.tk, r), "shared"))
            text.append(self.reduce(r, name, mat))
            mat[r] = name
        return "\n".join(text), mat

    def reduce(self, r: N.Reduce, out: str, mat: dict) -> str:
        """`group` lanes of a warp share each output: each folds a strided part of the axis, a shuffle
        tree combines them, and the first writes the result to the shared buffer `out`."""
        shape = self.tk.type_of(r.x).shape
        oshape = self.tk.type_of(r).shape
        n, outputs = shape[r.axis], math.prod(oshape)
        group = 1
        while group * 2 <= min(32, max(self.threads // outputs, 1), n):
            group *= 2
        per_pass = self.threads // group
        cd = reduce_dtype(self.tk, r)
        part = self.fresh("part")
        self.allocs.append(Alloc(part, (1,), cd, "local"))
        o = f"(rp * {per_pass} + tx // {group})"
        ocoords = M.unravel(o, oshape)
        xcoords = tuple(f"ra * {group} + tx % {group}" if d == r.axis else c for d, c in enumerate(ocoords))
        em = self.emitter(self.reader(), mat)
        x = cast(em.value(r.x, xcoords), cd).text
        fold = combine(r.op, f"{part}[0]", x)
        tree = []
        while len(tree) < int(math.log2(group)):
            offset = group >> (len(tree) + 1)
            tree.append(combine(r.op, f"{part}[0]", f"T.tvm_warp_shuffle_down(T.uint32(4294967295), {part}[0], "
                                                    f"{offset}, {group}, 32)"))
        return self.m.reduce(
            "# reduce", -(-outputs // per_pass), per_pass, group, dict(outputs=outputs, steps=-(-n // group), axis=n),
            part, self.reduce_identity(r.op, cd), f"tx % {group} == 0 and {o} < {outputs}",
            f"{out}[{', '.join(ocoords)}] = {part}[0]", fold, tree)

    # ------------------------------------------------------------------ statements
    def visit_Alloc(self, s: N.Alloc) -> str:
        self.declare(s.name)
        if s.name in self.staged:  # every iteration's copy writes all of it before it is read
            return self.comment(s)
        tdt = tir_dtype(self.tile(s.name).dtype)

        def body(idx, em, target):
            init = em.value(s.init) if s.init is not None else Val("T.int32(0)", "int32")
            return f"{target} = {cast(init, tdt).text}"
        return self.over(s.name, self.own(s.name), self.comment(s), body)

    def visit_Assign(self, s: N.Assign) -> str:
        if s.name in self.virtual:  # recomputed where it is read
            return self.comment(s)
        t = self.tile(s.name)
        if s.define:
            self.declare(s.name)
        pre, mat = self.materialize(s.value)

        def body(idx, em, target):
            return f"{target} = {cast(em.at(s.value, idx, t.shape), tir_dtype(t.dtype)).text}"
        # a resident tile is computed in its operands' mapping, straight into its shared buffer
        computed = self.over(s.name, self.plan.stmt(s).mapping, self.comment(s), body, mat)
        return "\n".join(filter(None, [pre, computed]))

    def visit_Copy(self, s: N.Copy) -> str:
        if self.async_copyable(s):
            return "\n".join([self.async_copy(s), self.m.cp_async_commit(), self.m.cp_async_wait(0), self.m.sync()])
        m = self.plan.stmt(s).mapping  # the register tile's, where one takes part; else a sweep
        if isinstance(s.src, N.GlobalRef):
            t = self.tile(s.dst.name)
            win = self.window(s.src, t.shape)
            tdt = tir_dtype(t.dtype)

            def body(idx, em, target):
                v = cast(self.load_global(win.tensor, win.element(idx)), tdt).text
                pad = cast(em.value(s.pad) if s.pad is not None else Val("T.int32(0)", "int32"), tdt).text
                return self.m.guarded(win.mask(idx), f"{target} = {v}", f"{target} = {pad}")
            return self.c.lets(win.starts) + self.over(s.dst.name, m, self.comment(s), body)
        src = self.tile(s.src.name)
        if isinstance(s.dst, N.GlobalRef):
            win = self.window(s.dst, src.shape)
            arg = next(a for a in self.sig.tensors if a.name == s.dst.tensor)

            def body(idx, em, target):
                v = cast(Val(em.read(s.src.name, idx), tir_dtype(src.dtype)), arg.dtype).text
                return self.m.guarded(win.mask(idx), f"{arg.buffer}[{', '.join(win.element(idx))}] = {v}", "")
            return self.c.lets(win.starts) + self.over(s.src.name, m, self.comment(s), body)

        def body(idx, em, target):
            v = Val(em.read(s.src.name, idx), tir_dtype(src.dtype))
            return f"{target} = {cast(v, tir_dtype(self.tile(s.dst.name).dtype)).text}"
        return self.over(s.dst.name, m, self.comment(s), body)

    # ------------------------------------------------------------------ cp.async and pipelining
    def async_copyable(self, s: N.Stmt) -> bool:
        """A global -> shared copy the plan moves in 16-byte vectors (`CopyPlan.vector`)."""
        if not (isinstance(s, N.Copy) and isinstance(s.src, N.GlobalRef) and isinstance(s.dst, N.TileRef)):
            return False
        p = self.plan.stmt(s)
        if p.mapping is not None or p.vector == 1:
            return False
        if p.vector * self.tile(s.dst.name).dtype.bits != CHUNK * 8:
            raise InternalError(f"a copy vector of {p.vector} elements is not one {CHUNK}-byte cp.async",
                                "the TVM cuda lowering", self.tk.kernel.name, s.loc)
        return True

    def async_copy(self, s: N.Copy) -> str:
        """Issue the copy's cp.async chunks (the caller commits them as a group).  The plan vectorizes
        only zero-padded copies whose rows are whole chunks, so a chunk is inside the tensor or
        wholly outside it, where cp.async's zero fill (a source size of 0, from the tensor's first
        element) pads it; every chunk goes element by element where a tensor or a row is not
        16-byte aligned."""
        t = self.tile(s.dst.name)
        win = self.window(s.src, t.shape)
        tdt = tir_dtype(t.dtype)
        vec = self.plan.stmt(s).vector
        chunks = M.sweep(tuple(t.shape[:-1]) + (t.shape[-1] // vec,), self.threads)  # the threads sweep them
        at = chunks.coords
        first = at[:-1] + (f"({at[-1]}) * {vec}",)
        elem, dim = win.element(first), win.dims[-1]
        arg = next(a for a in self.sig.tensors if a.name == s.src.tensor)
        dst = self.sref(f"t_{s.dst.name}", first)
        conds = [f"{ALIGNED} == 1"] + ([f"{dim} % {vec} == 0"] if not dim.isdigit() else [])
        inside = win.mask(first)
        src = f"{arg.buffer}[{', '.join(f'T.Select({inside}, {x}, 0)' for x in elem)}]"
        fast = self.m.cp_async(dst, src, f"T.Select({inside}, 16, 0)")
        one = at[:-1] + (f"({at[-1]}) * {vec} + e",)
        pad = cast(Val("T.int32(0)", "int32"), tdt).text
        target = self.sref(f"t_{s.dst.name}", one)
        v = cast(self.load_global(win.tensor, win.element(one)), tdt).text
        slow = self.m.each(vec, self.m.guarded(win.mask(one), f"{target} = {v}", f"{target} = {pad}"))
        body = self.m.guarded(" and ".join(conds), fast, slow)
        return self.c.lets(win.starts) + self.m.per_thread(self.comment(s), chunks.count, chunks.loop, chunks.guard,
                                                           body, False)

    def plan_stages(self) -> dict[str, int]:
        """Tiles filled by cp.async copies in pipelined loops, to be held in rings of the loop's stages.

        A copy qualifies when its tile is touched only inside that loop and written only by it, its
        window does not depend on a name the loop body binds, and the loop writes no global tensor."""
        out: dict[str, int] = {}
        body = self.tk.kernel.body
        for loop in walk_stmts(body):
            if not isinstance(loop, N.For) or not isinstance(loop.stages, N.Const) or loop.stages.value < 2:
                continue
            inner = list(walk_stmts(loop.body))
            if any(isinstance(x, N.Copy) and isinstance(x.dst, N.GlobalRef) for x in inner):
                continue
            bound = {x.name for x in inner if isinstance(x, (N.Let, N.ReadScalar))} | \
                {x.var for x in inner if isinstance(x, N.For)}
            for s in loop.body:
                if not self.async_copyable(s) or _names(s.src) & bound:
                    continue
                users = [x for x in walk_stmts(body) if s.dst.name in _tiles(x) and not isinstance(x, N.Alloc)]
                writers = [x for x in users if _written(x) == s.dst.name]
                if writers == [s] and all(any(u is x for x in inner) for u in users):
                    out[s.dst.name] = int(loop.stages.value)
        return out

    def visit_If(self, s: N.If) -> str:
        """Both branches start from the mirrors' state before the if; after it a mirror is stale if it is
        on either path (a missing else is the path that leaves the state as it was)."""
        entry = set(self.dirty)
        self.if_states.append((entry, set() if s.orelse else set(entry)))
        text = super().visit_If(s)
        self.dirty = self.if_states.pop()[1]
        return text

    def branch(self, body: tuple[N.Stmt, ...]) -> str:
        """A branch of an if, between barriers (the condition is block-uniform); the register mirrors it
        reads are rewritten at its start if stale, and those it dirties at its end, as for a loop body."""
        entry, after = self.if_states[-1]
        self.dirty = set(entry)
        pre, text = self.loop_body(lambda: self.block(body))
        after |= self.dirty
        return "\n".join(filter(None, [pre, self.m.sync(), text, self.m.sync()]))

    def visit_For(self, s: N.For) -> str:
        issue = [x for x in s.body if isinstance(x, N.Copy) and isinstance(x.dst, N.TileRef)
                 and x.dst.name in self.staged]
        em = self.emitter(lambda n, i: n)
        lo, hi = cast(em.value(s.start), "int32").text, cast(em.value(s.stop), "int32").text
        var = "v_" + s.var
        if not issue:
            self.names[s.var] = Val(var, "int32")
            pre, body = self.loop_body(lambda: self.block(s.body))
            return "\n".join(filter(None, [pre, self.c.for_(var, lo, hi, body or "T.evaluate(0)", self.comment(s))]))
        stages = self.staged[issue[0].dst.name]

        def copies(k: str, stage: str) -> str:
            self.names[s.var] = Val(k, "int32")
            for x in issue:
                self.stage[x.dst.name] = stage
            return "\n".join(self.async_copy(x) for x in issue)
        prologue = [self.m.ahead(f"{lo} + {i}", hi, copies(f"({lo} + {i})", str(i))) for i in range(stages - 1)]
        ahead = self.m.ahead(f"{var} + {stages - 1}", hi,
                             copies(f"({var} + {stages - 1})", f"({var} - {lo} + {stages - 1}) % {stages}"))
        copies(var, f"({var} - {lo}) % {stages}")
        rest = [x for x in s.body if not any(x is y for y in issue)]
        if rest and isinstance(rest[-1], N.Gemm):
            self.no_sync.add(id(rest[-1]))  # the next iteration's barrier follows it
        pre, rest_text = self.loop_body(lambda: self.block(tuple(rest)))
        body = "\n".join([self.m.cp_async_wait(stages - 2), self.m.sync(), ahead, rest_text])
        return "\n".join(filter(None, [pre] + prologue + [self.c.for_(var, lo, hi, body, self.comment(s)),
                                                          self.m.cp_async_wait(0), self.m.sync()]))

    def visit_Dequant(self, s: N.Dequant) -> str:
        t = self.tile(s.dst.name)
        win = self.window(s.src, t.shape)
        tdt = tir_dtype(t.dtype)

        def body(idx, em, target):
            v = self.dequant_value(s, win, idx, em, tdt).text
            zero = cast(Val("T.float32(0.0)", "float32"), tdt).text
            return self.m.guarded(win.mask(idx), f"{target} = {v}", f"{target} = {zero}")
        return self.c.lets(win.starts) + self.over(s.dst.name, self.plan.stmt(s).mapping, self.comment(s), body)

    def visit_Gemm(self, s: N.Gemm) -> str:
        """The plan's instruction: mma.sync on its warp grid, or a scalar loop over the accumulator's
        slots (every operand read across threads)."""
        p = self.plan.gemm(s)
        if p.kind == "mma":
            return self.mma_gemm(s, p)
        if p.kind != "fma":
            raise InternalError(f"the {PLAN_TARGET} plan gave a gemm the {p.kind} instruction", "the TVM cuda lowering",
                                self.tk.kernel.name, s.loc)
        ta, tb, tc = (self.tile(x.name) for x in (s.a, s.b, s.acc))
        k = ta.shape[0] if s.trans_a else ta.shape[1]
        sl = self.slots(self.own(s.acc.name), s.acc.name)
        n, kind, guard = sl.count, sl.loop, sl.guard
        i, j = sl.coords
        read = self.reader()
        a = read(s.a.name, ("gk", i) if s.trans_a else (i, "gk"))
        b = read(s.b.name, (j, "gk") if s.trans_b else ("gk", j))
        a_val = cast(Val(a, tir_dtype(ta.dtype)), "float32").text
        b_val = cast(Val(b, tir_dtype(tb.dtype)), "float32").text
        cdt = tir_dtype(tc.dtype)
        fill = finish = ""
        if cdt == "float32":
            acc = f"t_{s.acc.name}"
        else:  # products are summed in f32 and added to the narrower accumulator once
            acc = self.fresh("gsum")
            self.allocs.append(Alloc(acc, (n,), "float32", "local"))
            fill = self.m.per_thread("", n, kind, guard, f"{acc}[v] = T.float32(0.0)", False)
            tot = cast(Val(f"({cast(Val(f't_{s.acc.name}[v]', cdt), 'float32').text} + {acc}[v])", "float32"), cdt)
            finish = self.m.per_thread("", n, kind, guard, f"t_{s.acc.name}[v] = {tot.text}", False)
        return self.m.gemm(self.comment(s), k, n, kind, guard, acc, a_val, b_val, fill, finish) + "\n" + self.m.sync()

    def mma_gemm(self, s: N.Gemm, p: GemmPlan) -> str:
        """acc += a @ b on tensor cores: each 16-wide k step loads the warp's A and B fragments with
        ldmatrix (or reads them from an operand held as the fragment) and issues one mma per (m16, n8)
        fragment of the accumulator; each k group of a k split walks its own k steps."""
        t = p.tiling
        k = self.tile(s.a.name).shape[0 if s.trans_a else 1]
        ks = mma.kstep(t, k)
        dt = tir_dtype(self.tile(s.a.name).dtype)
        self.touched = True
        ops = {}
        for (ref, instr), size, at in zip(_operands(p), (16 * t.mi, 8 * t.ni), (mma.a_at, mma.b_at)):
            if instr.name == "mov":  # held as the fragment: the mma reads the tile's own registers
                ops[instr.role] = dict(load=False, frag=f"t_{ref.name}", at=mma.register_at(instr.role, t, k))
                continue
            if ref.name not in self.buffers:
                self.use_mirror(ref.name)
            frag = self.fresh("fa" if instr.role == "A" else "fb")
            self.allocs.append(Alloc(frag, (size,), dt, "local"))  # two k steps' fragments
            trans = s.trans_a if instr.role == "A" else s.trans_b
            ops[instr.role] = dict(load=True, frag=frag, dtype=dt, trans=self.ldmatrix_trans(p, instr.role),
                                   ref=self.sref(self.operand(ref.name), at(t, trans, ks)))
        b = ops["B"]
        odd = dict(frag=(t.ni - 1) * 4, ref=self.sref(self.operand(s.b.name), mma.b_last_at(t, s.trans_b, ks))) \
            if b["load"] and t.ni % 2 else None
        if t.wk > 1:
            self.partial[s.acc.name] = t.wk
        return self.m.mma_gemm(self.comment(s), mma.steps(t, k), ops["A"], b, t.ni // 2, odd, t.mi, t.ni,
                               f"t_{s.acc.name}", mma.ABBREV[self.tile(s.a.name).dtype.name], id(s) not in self.no_sync)

    def ldmatrix_trans(self, p: GemmPlan, role: str) -> bool:
        """Whether ldmatrix reads an operand transposed: as the plan's instruction says for a shared
        operand (which must agree with how the tile stores it), as the row-major mirror stores it
        for a register one."""
        s = p.stmt
        stored_k_major = s.trans_a if role == "A" else not s.trans_b  # the k axis is not the contiguous one
        name = next(i.name for i in p.instrs if i.role == role)
        if name == "convert.shared":
            return stored_k_major
        if not name.startswith("ldmatrix") or name.endswith(".trans") != stored_k_major:
            raise InternalError(f"the plan reads the {role} operand of a gemm with {name}, which the TVM cuda lowering "
                                f"does not emit for this orientation", "the TVM cuda lowering", self.tk.kernel.name,
                                s.loc)
        return stored_k_major


def _operands(p: GemmPlan) -> tuple[tuple[N.TileRef, object], ...]:
    """(operand, the plan's instruction reading it) for A and B of an mma gemm."""
    by_role = {i.role: i for i in p.instrs}
    return (p.stmt.a, by_role["A"]), (p.stmt.b, by_role["B"])


def _tiles(s: N.Stmt) -> set[str]:
    """Names of the tiles a statement (not a loop's body) reads or writes."""
    out = set()
    for f in dataclasses.fields(s):
        v = getattr(s, f.name)
        for x in (v if isinstance(v, tuple) else (v,)):
            if f.name in ("loc", "body") or not dataclasses.is_dataclass(x):
                continue
            out |= {e.name for e in sub_exprs(x) if isinstance(e, N.TileRef)}
    if isinstance(s, (N.Alloc, N.Assign)):
        out.add(s.name)
    return out


def _written(s: N.Stmt) -> str | None:
    if isinstance(s, N.Gemm):
        return s.acc.name
    if isinstance(s, (N.Copy, N.Dequant)):
        return s.dst.name if isinstance(s.dst, N.TileRef) else None
    return getattr(s, "name", None) if isinstance(s, (N.Assign, N.Alloc)) else None


def _names(e) -> set[str]:
    """Scalar names an expression (or window) reads."""
    return {x.name for x in sub_exprs(e) if isinstance(x, N.Var)}


def lower_cuda(tk, noalias: bool = True) -> str:
    """Lower until the set of mirrored tiles is stable (a mirror is found only where it is read)."""
    mirrored: frozenset = frozenset()
    while True:
        low = CudaLowering(tk, "cuda", noalias=noalias, mirrored=mirrored)
        text = low.generate()
        if low.wants <= mirrored:
            return text
        mirrored = mirrored | frozenset(low.wants)
