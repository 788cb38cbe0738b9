"""Lowering for the cuda target (sm_80, sm_90a).

Grid axes bind blockIdx.x/y/z and a block's threads threadIdx.x.  A register tile
uses the simplest spatial task mapping: element e (row-major) is held by thread
e % threads, in slot e // threads of that thread's local array, so an elementwise
statement over tiles of one shape never leaves its thread; register tiles shaped like the
accumulator of a tensor-core gemm use its mma fragment layout instead (mma.py).  A register tile that
some statement reads across threads (a broadcast, transpose, reduction or gemm
operand) also keeps a shared-memory mirror, rewritten between barriers before a
statement reads it where the tile was written since (so a statement may read its own
target across threads, and an accumulator is mirrored once after its loop); shared
tiles and reduction results are shared buffers.  Reductions give each output a
power-of-two group of lanes of a warp and combine them with warp shuffles.
Every statement that touches shared memory ends with a barrier.

Global -> shared copies move 16-byte chunks with cp.async where the chunk lies inside
its tensor and every tensor is 16-byte aligned (`s_aligned16`), element by element
otherwise.  In a `pipelined(..., stages=S)` loop those copies go to a ring of S
stages of their tiles: S - 1 iterations are in flight while one computes, each a
cp.async group, with one barrier per iteration.  Shared tiles read by ldmatrix are
stored with an XOR swizzle of their 16-byte chunks (in the index expressions, which
TVM's buffer compaction keeps), so the 8 rows of a matrix hit distinct banks.
Shared tiles are dynamic shared memory (`shared.dyn`): a ring's stages can exceed 48 KiB
(mirrors and reduction results stay static: TVM's merging of dynamic buffers fails on them).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.visit import sub_exprs, walk_stmts
from . import mma
from .emit import Val, cast, tir_dtype
from .lower import Alloc, Lowering, combine, reduce_dtype
from .signature import ALIGNED

MAX_UNROLL = 64  # slots per thread unrolled (kept in registers); more go to local memory
AXES = ("blockIdx.x", "blockIdx.y", "blockIdx.z")
CHUNK = 16  # bytes of one vector access (cp.async.cg, ldmatrix rows)
SHARED = "shared.dyn"


@dataclass
class CudaLowering(Lowering):
    template_name: str = "cuda.py.j2"
    mirrored: frozenset = frozenset()  # register tiles that are read across threads
    wants: set = field(default_factory=set)  # the same, as found by this lowering

    def __post_init__(self):
        super().__post_init__()
        self.mma = mma.plan(self.tk)
        self.block_ids = tuple(f"b{a}" for a in range(len(self.tk.kernel.grid)))
        self.threads = self.tk.threads
        self.touched = False  # the statement being lowered reads or writes shared memory
        self.staged = self.plan_stages()  # tile -> stages of its ring (pipelined copies)
        self.stage: dict[str, str] = {}  # tile -> the stage its statements use now
        self.swizzled = {buf for s in walk_stmts(self.tk.kernel.body) if id(s) in self.mma.gemms
                         for buf in (self.operand(s.a.name), self.operand(s.b.name))}
        self.no_sync: set = set()  # statements whose trailing barrier the pipeline provides
        self.dirty: set = set()  # mirrored tiles written since their mirror was last rewritten
        self.read_mirrors: set = set()  # mirrors read by the statements lowered so far (of this loop body)
        self.flush: set = set()  # mirrors the statement being lowered reads

    def generate(self) -> str:
        body = self.block(self.tk.kernel.body) or "T.evaluate(0)"
        em = self.emitter(lambda n, i: n)
        blocks = [dict(var=b, extent=cast(em.value(g), "int32").text, axis=AXES[a])
                  for a, (b, g) in enumerate(zip(self.block_ids, self.tk.kernel.grid))]
        info = self.kernel_info(noalias=self.noalias, prologue=[], blocks=blocks, threads=self.threads)
        return self.m.kernel(info, self.allocs, body) + "\n"

    # ------------------------------------------------------------------ where elements live
    def slots(self, shape) -> tuple[int, str, str]:
        """Slots per thread, the loop kind over them, and the guard of the last partial slot."""
        numel = math.prod(shape)
        n = -(-numel // self.threads)
        guard = f"v * {self.threads} + tx < {numel}" if numel % self.threads else ""
        keep = n <= MAX_UNROLL or self.mma.layout(shape) is not None  # mma fragments must be registers
        return n, "unroll" if keep else "serial", guard

    def held(self, t) -> tuple[str, ...]:
        """The element of tile `t` that slot v of thread tx holds (register tiles) or moves (shared)."""
        lay = self.mma.layout(t.shape) if t.scope == "register" else None
        return mma.coords(lay) if lay is not None else self.coords(t.shape)

    def coords(self, shape, linear: str | None = None) -> tuple[str, ...]:
        """The coordinates of element `linear` (default: this thread's slot v) of a tile."""
        e = linear or f"(v * {self.threads} + tx)"
        live = [d for d, x in enumerate(shape) if x > 1]
        out = []
        for d, x in enumerate(shape):
            if x == 1:
                out.append("0")
                continue
            stride = math.prod(shape[d + 1:])
            c = e if stride == 1 else f"{e} // {stride}"
            out.append(c if d == live[0] else f"{c} % {x}")
        return tuple(out)

    def operand(self, name: str) -> str:
        """The shared buffer a gemm operand is read from: a register tile's is its mirror."""
        return f"m_{name}" if self.tile(name).scope == "register" else f"t_{name}"

    def swizzle(self, buf: str, idx: tuple[str, ...]) -> tuple[str, ...]:
        """XOR the 16-byte chunk of a column with bits of its row, so 8 rows of one chunk column fall
        into the 8 distinct chunks of a 128-byte bank line (rows of P chunks share a line 8 // P at a time)."""
        t = self.tile(buf[2:])
        vec = CHUNK * 8 // t.dtype.bits
        p = t.shape[-1] // vec if len(t.shape) == 2 and t.dtype.bits in (16, 32) else 0
        if buf not in self.swizzled or t.shape[-1] % vec or p < 2 or p & (p - 1):
            return idx
        r, c = idx
        rows = max(1, 8 // p)
        line = f"({r})" if rows == 1 else f"({r}) // {rows}"
        return r, f"T.bitwise_xor(({c}) // {vec}, {line} % {min(p, 8)}) * {vec} + ({c}) % {vec}"

    def use_mirror(self, name: str) -> None:
        self.wants.add(name)
        self.flush.add(name)
        self.read_mirrors.add(name)

    def stmt(self, s: N.Stmt) -> str:
        """The statement, after rewriting the stale mirrors it reads; its own target's goes stale."""
        outer, self.flush = self.flush, set()
        text = super().stmt(s)
        stale = sorted(self.flush & self.dirty)
        self.dirty -= self.flush
        self.flush = outer
        if not isinstance(s, N.For):
            w = _written(s)
            if w is not None and w in self.mirrored and self.tile(w).scope == "register":
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
        """An element of a shared tile or mirror: swizzled, and in the current stage of a ring."""
        idx = self.swizzle(buf, tuple(idx))
        if buf.startswith("t_") and buf[2:] in self.staged:
            idx = (self.stage[buf[2:]],) + idx
        return f"{buf}[{', '.join(idx)}]"

    def reader(self, shape=None, idx=None):
        """Element loads for a statement whose own element is `idx` of a tile of `shape`."""
        def read(name: str, at: tuple[str, ...]) -> str:
            t = self.tk.tiles.get(name)
            if t is not None and t.scope == "register":
                if at == self.held(t) and shape is not None and math.prod(t.shape) == math.prod(shape):
                    return f"t_{name}[v]"  # this thread's slot v holds that element (broadcasts too)
                self.use_mirror(name)
                self.touched = True
                return self.sref(f"m_{name}", at)
            self.touched = True
            return self.sref(f"t_{name}", at) if t is not None else f"{name}[{', '.join(at)}]"
        return read

    def store_at(self, name: str, idx: tuple[str, ...]) -> str:
        t = self.tile(name)
        if t.scope == "shared":
            self.touched = True
            return self.sref(f"t_{name}", idx)
        return f"t_{name}[v]"

    def declare(self, name: str) -> None:
        t = self.tile(name)
        tdt = tir_dtype(t.dtype)
        if t.scope == "shared":
            ring = (self.staged[name],) if name in self.staged else ()
            self.allocs.append(Alloc(f"t_{name}", ring + tuple(t.shape), tdt, SHARED))
            return
        self.allocs.append(Alloc(f"t_{name}", (self.slots(t.shape)[0],), tdt, "local"))
        if name in self.mirrored:
            self.allocs.append(Alloc(f"m_{name}", t.shape, tdt, "shared"))

    def over(self, name: str, comment: str, body_of, mat=None) -> str:
        """A statement computing every element of tile `name`: `body_of(idx, em, target) -> text`."""
        t = self.tile(name)
        n, kind, guard = self.slots(t.shape)
        idx = self.held(t)
        self.touched = False
        em = self.emitter(self.reader(t.shape, idx), mat)
        body = body_of(idx, em, self.store_at(name, idx))
        return self.m.per_thread(comment, n, kind, guard, body, self.touched)

    def mirror(self, name: str) -> str:
        """Copy a register tile to its shared mirror, between barriers (other threads may still read it)."""
        t = self.tile(name)
        n, kind, guard = self.slots(t.shape)
        store = f"{self.sref(f'm_{name}', self.held(t))} = t_{name}[v]"
        return self.m.sync() + "\n" + self.m.per_thread("", n, kind, guard, store, True)

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
        ocoords = self.coords(oshape, o)
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
    def stmt_alloc(self, s: N.Alloc) -> str:
        self.declare(s.name)
        if s.name in self.staged:  # every iteration's copy writes all of it before it is read
            return self.comment(s)
        tdt = tir_dtype(self.tile(s.name).dtype)

        def body(idx, em, target):
            init = em.value(s.init) if s.init is not None else Val("T.int32(0)", "int32")
            return f"{target} = {cast(init, tdt).text}"
        return self.over(s.name, self.comment(s), body)

    def stmt_assign(self, s: N.Assign) -> str:
        t = self.tile(s.name)
        if s.define:
            self.declare(s.name)
        pre, mat = self.materialize(s.value)

        def body(idx, em, target):
            return f"{target} = {cast(em.at(s.value, idx, t.shape), tir_dtype(t.dtype)).text}"
        return "\n".join(filter(None, [pre, self.over(s.name, self.comment(s), body, mat)]))

    def stmt_copy(self, s: N.Copy) -> str:
        if self.async_copyable(s):
            return "\n".join([self.async_copy(s), self.m.cp_async_commit(), self.m.cp_async_wait(0), self.m.sync()])
        if isinstance(s.src, N.GlobalRef):
            t = self.tile(s.dst.name)
            win = self.window(s.src, t.shape)
            tdt = tir_dtype(t.dtype)

            def body(idx, em, target):
                v = cast(self.load_global(win.tensor, win.element(idx)), tdt).text
                pad = cast(em.value(s.pad) if s.pad is not None else Val("T.int32(0)", "int32"), tdt).text
                return self.m.guarded(win.mask(idx), f"{target} = {v}", f"{target} = {pad}")
            return self.c.lets(win.starts) + self.over(s.dst.name, self.comment(s), body)
        if isinstance(s.dst, N.GlobalRef):
            t = self.tile(s.src.name)
            win = self.window(s.dst, t.shape)
            arg = next(a for a in self.sig.tensors if a.name == s.dst.tensor)

            def body(idx, em, target):
                v = cast(Val(self.reader(t.shape, idx)(s.src.name, idx), tir_dtype(t.dtype)), arg.dtype).text
                return self.m.guarded(win.mask(idx), f"{arg.buffer}[{', '.join(win.element(idx))}] = {v}", "")
            return self.c.lets(win.starts) + self.over(s.src.name, self.comment(s), body)
        src = self.tile(s.src.name)

        def body(idx, em, target):
            v = Val(self.reader(self.tile(s.dst.name).shape, idx)(s.src.name, idx), tir_dtype(src.dtype))
            return f"{target} = {cast(v, tir_dtype(self.tile(s.dst.name).dtype)).text}"
        return self.over(s.dst.name, self.comment(s), body)

    # ------------------------------------------------------------------ cp.async and pipelining
    def async_copyable(self, s: N.Stmt) -> bool:
        """A global -> shared copy without conversion, in whole 16-byte chunks of the tile's rows."""
        if not (isinstance(s, N.Copy) and isinstance(s.src, N.GlobalRef) and isinstance(s.dst, N.TileRef)):
            return False
        t, p = self.tile(s.dst.name), self.tk.tensor(s.src.tensor)
        if t.scope != "shared" or p.dtype.is_packed or p.dtype.name != t.dtype.name or t.dtype.bits not in (8, 16, 32):
            return False
        return t.shape[-1] % (CHUNK * 8 // t.dtype.bits) == 0 and (s.pad is None or isinstance(s.pad, N.Const))

    def async_copy(self, s: N.Copy) -> str:
        """Issue the copy's cp.async chunks (the caller commits them as a group).  Zero padding is
        cp.async's zero fill (a source size of 0, from the tensor's first element); with other
        padding, chunks not wholly inside the tensor go element by element, and so does every chunk
        where a tensor or a row is not 16-byte aligned."""
        t = self.tile(s.dst.name)
        win = self.window(s.src, t.shape)
        tdt = tir_dtype(t.dtype)
        vec = CHUNK * 8 // t.dtype.bits
        cshape = tuple(t.shape[:-1]) + (t.shape[-1] // vec,)
        chunks = math.prod(cshape)
        n = -(-chunks // self.threads)
        guard = f"v * {self.threads} + tx < {chunks}" if chunks % self.threads else ""
        at = self.coords(cshape)
        first = at[:-1] + (f"({at[-1]}) * {vec}",)
        elem, dim = win.element(first), win.dims[-1]
        arg = next(a for a in self.sig.tensors if a.name == s.src.tensor)
        dst = self.sref(f"t_{s.dst.name}", first)
        conds = [f"{ALIGNED} == 1"] + ([f"{dim} % {vec} == 0"] if not dim.isdigit() else [])
        zero_pad = s.pad is None or s.pad.value == 0
        if zero_pad:  # rows are whole chunks: a chunk is inside the tensor or wholly outside it
            inside = win.mask(first)
            src = f"{arg.buffer}[{', '.join(f'T.Select({inside}, {x}, 0)' for x in elem)}]"
            fast = self.m.cp_async(dst, src, f"T.Select({inside}, 16, 0)")
        else:
            conds += [win.mask(first), f"{elem[-1]} + {vec} <= {dim}"]
            fast = self.m.cp_async(dst, f"{arg.buffer}[{', '.join(elem)}]", "16")
        one = at[:-1] + (f"({at[-1]}) * {vec} + e",)
        pad = cast(self.emitter(lambda n_, i: n_).value(s.pad) if s.pad is not None
                   else Val("T.int32(0)", "int32"), tdt).text
        target = self.sref(f"t_{s.dst.name}", one)
        v = cast(self.load_global(win.tensor, win.element(one)), tdt).text
        slow = self.m.each(vec, self.m.guarded(win.mask(one), f"{target} = {v}", f"{target} = {pad}"))
        body = self.m.guarded(" and ".join(conds), fast, slow)
        return self.c.lets(win.starts) + self.m.per_thread(self.comment(s), n, "unroll", guard, body, False)

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
            bound = {x.name for x in inner if isinstance(x, N.Let)} | {x.var for x in inner if isinstance(x, N.For)}
            for s in loop.body:
                if not self.async_copyable(s) or _names(s.src) & bound:
                    continue
                users = [x for x in walk_stmts(body) if s.dst.name in _tiles(x) and not isinstance(x, N.Alloc)]
                writers = [x for x in users if _written(x) == s.dst.name]
                if writers == [s] and all(any(u is x for x in inner) for u in users):
                    out[s.dst.name] = int(loop.stages.value)
        return out

    def stmt_for(self, s: N.For) -> str:
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

    def stmt_dequant(self, s: N.Dequant) -> str:
        t = self.tile(s.dst.name)
        win = self.window(s.src, t.shape)
        tdt = tir_dtype(t.dtype)

        def body(idx, em, target):
            v = self.dequant_value(s, win, idx, em, tdt).text
            zero = cast(Val("T.float32(0.0)", "float32"), tdt).text
            return self.m.guarded(win.mask(idx), f"{target} = {v}", f"{target} = {zero}")
        return self.c.lets(win.starts) + self.over(s.dst.name, self.comment(s), body)

    def stmt_gemm(self, s: N.Gemm) -> str:
        ta, tb, tc = (self.tile(x.name) for x in (s.a, s.b, s.acc))
        if tc.scope != "register":
            raise TileError("the TVM cuda lowering needs a register accumulator for gemm", s.acc.loc,
                            hint="accumulate in a register tile and copy it to shared memory afterwards")
        k = ta.shape[0] if s.trans_a else ta.shape[1]
        if id(s) in self.mma.gemms:
            return self.mma_gemm(s, k, self.mma.gemms[id(s)])
        n, kind, guard = self.slots(tc.shape)
        i, j = self.held(tc)
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

    def mma_gemm(self, s: N.Gemm, k: int, t: mma.MmaTiling) -> str:
        """acc += a @ b on tensor cores: each 16-wide k step loads the warp's A and B fragments with
        ldmatrix and issues one mma per (m16, n8) fragment of the accumulator."""
        dt = tir_dtype(self.tile(s.a.name).dtype)
        fa, fb = self.fresh("fa"), self.fresh("fb")
        self.allocs += [Alloc(fa, (16 * t.mi,), dt, "local"), Alloc(fb, (8 * t.ni,), dt, "local")]  # 2 buffers
        self.touched = True
        for name in (s.a.name, s.b.name):
            if self.tile(name).scope == "register":
                self.use_mirror(name)
        a_buf, b_buf = self.operand(s.a.name), self.operand(s.b.name)
        # .trans where the 8x8 matrices are stored k-major (A) or n-major (B)
        a = dict(ref=self.sref(a_buf, mma.a_at(t, s.trans_a)), frag=fa, dtype=dt, trans=s.trans_a)
        b = dict(ref=self.sref(b_buf, mma.b_at(t, s.trans_b)), frag=fb, dtype=dt, trans=not s.trans_b)
        odd = dict(frag=(t.ni - 1) * 4, ref=self.sref(b_buf, mma.b_last_at(t, s.trans_b))) if t.ni % 2 else None
        text = self.m.mma_gemm(self.comment(s), k // 16, a, b, t.ni // 2, odd, t.mi, t.ni,
                               f"t_{s.acc.name}", mma.ABBREV[self.tile(s.a.name).dtype.name], id(s) not in self.no_sync)
        return text


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
