"""Lowering for the cuda target (sm_80, sm_90a).

Grid axes bind blockIdx.x/y/z and a block's threads threadIdx.x.  A register tile
uses the simplest spatial task mapping: element e (row-major) is held by thread
e % threads, in slot e // threads of that thread's local array, so an elementwise
statement over tiles of one shape never leaves its thread; register tiles shaped like the
accumulator of a tensor-core gemm use its mma fragment layout instead (mma.py).  A register tile that
some statement reads across threads (a broadcast, transpose, reduction or gemm
operand) also keeps a shared-memory mirror, rewritten between barriers after
every write (so a statement may read its own target across threads); shared
tiles and reduction results are shared buffers.  Reductions give each output a
power-of-two group of lanes of a warp and combine them with warp shuffles.
Every statement that touches shared memory ends with a barrier.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ...diagnostics import TileError
from ...ir import nodes as N
from . import mma
from .emit import Val, cast, tir_dtype
from .lower import Alloc, Lowering, combine, reduce_dtype

MAX_UNROLL = 64  # slots per thread unrolled (kept in registers); more go to local memory
AXES = ("blockIdx.x", "blockIdx.y", "blockIdx.z")


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

    def reader(self, shape=None, idx=None):
        """Element loads for a statement whose own element is `idx` of a tile of `shape`."""
        def read(name: str, at: tuple[str, ...]) -> str:
            t = self.tk.tiles.get(name)
            if t is not None and t.scope == "register":
                if t.shape == shape and at == idx == self.held(t):
                    return f"t_{name}[v]"
                self.wants.add(name)
                self.touched = True
                return f"m_{name}[{', '.join(at)}]"
            self.touched = True
            return f"{'t_' + name if t is not None else name}[{', '.join(at)}]"
        return read

    def store_at(self, name: str, idx: tuple[str, ...]) -> str:
        t = self.tile(name)
        if t.scope == "shared":
            self.touched = True
            return f"t_{name}[{', '.join(idx)}]"
        return f"t_{name}[v]"

    def declare(self, name: str) -> None:
        t = self.tile(name)
        tdt = tir_dtype(t.dtype)
        if t.scope == "shared":
            self.allocs.append(Alloc(f"t_{name}", t.shape, tdt, "shared"))
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
        text = self.m.per_thread(comment, n, kind, guard, body, self.touched)
        if t.scope == "register" and name in self.mirrored:
            text += "\n" + self.mirror(name)
        return text

    def mirror(self, name: str) -> str:
        """Copy a register tile to its shared mirror, between barriers (other threads may still read it)."""
        t = self.tile(name)
        n, kind, guard = self.slots(t.shape)
        store = f"m_{name}[{', '.join(self.held(t))}] = t_{name}[v]"
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
        text = self.m.gemm(self.comment(s), k, n, kind, guard, acc, a_val, b_val, fill, finish) + "\n" + self.m.sync()
        if s.acc.name in self.mirrored:
            text += "\n" + self.mirror(s.acc.name)
        return text

    def mma_gemm(self, s: N.Gemm, k: int, t: mma.MmaTiling) -> str:
        """acc += a @ b on tensor cores: each 16-wide k step loads the warp's A and B fragments with
        ldmatrix and issues one mma per (m16, n8) fragment of the accumulator."""
        dt = tir_dtype(self.tile(s.a.name).dtype)
        fa, fb = self.fresh("fa"), self.fresh("fb")
        self.allocs += [Alloc(fa, (8 * t.mi,), dt, "local"), Alloc(fb, (4 * t.ni,), dt, "local")]
        self.touched = True

        def buffer(name: str) -> str:
            """The shared buffer an operand is read from: a register tile's is its mirror."""
            if self.tile(name).scope == "register":
                self.wants.add(name)
                return f"m_{name}"
            return f"t_{name}"
        # .trans where the 8x8 matrices are stored k-major (A) or n-major (B)
        a = dict(buf=buffer(s.a.name), frag=fa, dtype=dt, trans=s.trans_a, at=mma.a_at(t, s.trans_a))
        b = dict(buf=buffer(s.b.name), frag=fb, dtype=dt, trans=not s.trans_b, at=mma.b_at(t, s.trans_b))
        odd = dict(frag=(t.ni - 1) * 4, at=mma.b_last_at(t, s.trans_b)) if t.ni % 2 else None
        text = self.m.mma_gemm(self.comment(s), k // 16, a, b, t.ni // 2, odd, t.mi, t.ni,
                               f"t_{s.acc.name}", mma.ABBREV[self.tile(s.a.name).dtype.name])
        if s.acc.name in self.mirrored:
            text += "\n" + self.mirror(s.acc.name)
        return text


def lower_cuda(tk, noalias: bool = True) -> str:
    """Lower until the set of mirrored tiles is stable (a mirror is found only where it is read)."""
    mirrored: frozenset = frozenset()
    while True:
        low = CudaLowering(tk, "cuda", noalias=noalias, mirrored=mirrored)
        text = low.generate()
        if low.wants <= mirrored:
            return text
        mirrored = mirrored | frozenset(low.wants)
