"""Lowering for the llvm (CPU) target.

Blocks are the iterations of one `T.parallel` loop over the flattened grid; each
block holds its tiles in local buffers.  Every statement is a loop nest over a
tile whose innermost loop is vectorized unless its elements are masked: windows
that lie inside their tensor take an unmasked, vectorized path, the boundary
windows a masked scalar one.  Long row reductions keep 16 partial results in a
vector so they vectorize too.

A tile copied from a global window and read only by the next statement (element
for element, or as a gemm operand) is forwarded: where the window is in bounds that
statement reads the tensor directly, converting in vector registers (a GEMV's f16
weights are never stored widened), and only the boundary path materializes the tile.
Boundary loads of 2-D tiles go row by row, so rows inside the tensor still vectorize.

A gemm with B transposed is a dot product along k (both operands contiguous) in 16
f32 lanes summed as a tree.  A gemm skips the rows of A that its zero-padded load
found outside the tensor: they would add 0 * B to their accumulator rows, which
changes nothing unless B holds inf or NaN.  So a GEMV written as a 16-row gemm
computes one row at M = 1, not 16.

Such a gemm into an f32 accumulator that nothing else in its loop touches keeps
its 16 lanes per element across the loop's iterations and sums them once after
it: the tree costs more than a k-chunk's products.  Its products are register
blocked (GEMM_BLOCKS), 4 rows of A by 4 rows of B unrolled: every B vector is
converted to f32 once for 4 rows and the 16 accumulators stay in vector registers
over k, where a row at a time would chain its FMAs and convert B once per row.
A's rows are converted to f32 once per call (every column reads them).  At M = 4
this makes the GEMV about 2x faster than one row at a time.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...ir import nodes as N
from ...ir.visit import sub_exprs, walk_stmts
from .emit import Val, cast, tir_dtype
from .lower import Alloc, Lowering, Window, combine, reduce_dtype

LANES = 16  # vector partial sums of long reductions; also the split of long vector loops
MAX_VECTOR = 64  # longest innermost loop vectorized whole
GEMM_BLOCKS = ((4, 4), (1, 4))  # register blocks (rows of A, rows of B) of a lanes gemm, largest first
MAX_LANES = 64 * 64  # accumulator elements kept in lanes across a loop (256 KiB, within L2)


def tile_loops(shape: tuple[int, ...], tag: str, vector: bool = True) -> tuple[list[dict], tuple[str, ...]]:
    """Loops over the elements of a tile and the index they produce; extent-1 axes get index 0."""
    live = [d for d, e in enumerate(shape) if e > 1]
    loops, idx = [], []
    for d, e in enumerate(shape):
        var = f"{tag}{d}"
        if e == 1:
            idx.append("0")
        elif vector and d == live[-1] and e <= MAX_VECTOR:
            loops.append(dict(var=var, extent=e, kind="vectorized"))
            idx.append(var)
        elif vector and d == live[-1] and e % LANES == 0:
            loops += [dict(var=var + "o", extent=e // LANES, kind="serial"),
                      dict(var=var + "i", extent=LANES, kind="vectorized")]
            idx.append(f"{var}o * {LANES} + {var}i")
        else:
            loops.append(dict(var=var, extent=e, kind="serial"))
            idx.append(var)
    return loops, tuple(idx)


@dataclass
class LlvmLowering(Lowering):
    where = "the TVM llvm lowering"
    template_name: str = "llvm.py.j2"

    def __post_init__(self):
        super().__post_init__()
        self.block_ids = tuple(f"b{a}" for a in range(len(self.tk.kernel.grid)))
        self.filled_rows: dict[str, str] = {}  # 2-D tile -> rows inside its tensor at its last zero-padded load
        self.lanes: dict[str, tuple[str, str]] = {}  # accumulator -> (its lanes, rows in use) while deferred
        self.f32_rows: dict[str, str] = {}  # A tile of a lanes gemm -> its f32 copy

    def generate(self) -> str:
        grid = self.grid()
        body = self.block(self.tk.kernel.body) or "T.evaluate(0)"
        n = len(grid)
        extents = [g for g, _ in grid]
        ids = [("b0", "blk")] if n == 1 else [
            (f"b{a}", " // ".join(["blk"] + ([f"({' * '.join(extents[a + 1:])})"] if a + 1 < n else [])) +
             (f" % {extents[a]}" if a else "")) for a in range(n)]
        info = self.kernel_info(noalias=self.noalias, prologue=grid, nblocks=" * ".join(extents), block_ids=ids)
        return self.m.kernel(info, self.allocs, body) + "\n"

    # ------------------------------------------------------------------ tiles
    def buf(self, name: str) -> str:
        """A tile's buffer; temporaries are named as they are."""
        return "t_" + name if name in self.tk.tiles else name

    def read(self, name: str, idx: tuple[str, ...]) -> str:
        return f"{self.buf(name)}[{', '.join(idx)}]"

    def alloc(self, name: str, shape, dtype: str) -> str:
        self.allocs.append(Alloc(name, tuple(shape), dtype))
        return name

    def materialize(self, e: N.Expr) -> tuple[str, dict]:
        """Compute the reductions inside `e` into buffers first."""
        mat: dict = {}
        text = []
        for r in self.reductions(e):
            name = self.alloc(self.fresh("red"), self.tk.type_of(r).shape, reduce_dtype(self.tk, r))
            text.append(self.reduce(r, name, mat))
            mat[r] = name
        return "\n".join(text), mat

    def reduce(self, r: N.Reduce, out: str, mat: dict) -> str:
        shape = self.tk.type_of(r.x).shape
        ax, n = r.axis, shape[r.axis]
        cd = reduce_dtype(self.tk, r)
        oshape = self.tk.type_of(r).shape
        live = [d for d, e in enumerate(shape) if e > 1]
        if n >= 2 * LANES and n % LANES == 0 and live and ax == live[-1]:
            lanes = self.alloc(self.fresh("lanes"), (LANES,), cd)
            outer, oidx = tile_loops(oshape, "o", vector=False)
            first = list(oidx)
            first[ax] = "l"
            rest = list(oidx)
            rest[ax] = f"co * {LANES} + l"
            acc_out = self.read(out, oidx)
            lane = dict(var="l", extent=LANES, kind="vectorized")
            inner = "\n".join([
                self.c.nest_body([lane], _store(self, r, mat, tuple(first), f"{lanes}[l]", cd, False)),
                self.c.nest_body([dict(var="co", start=1, extent=n // LANES, kind="serial"), lane],
                                 _store(self, r, mat, tuple(rest), f"{lanes}[l]", cd, True)),
                f"{acc_out} = {lanes}[0]",
                self.c.nest_body([dict(var="l", start=1, extent=LANES, kind="serial")],
                                 f"{acc_out} = {combine(r.op, acc_out, lanes + '[l]')}"),
            ])
            return self.c.nest_body(outer, inner) if outer else inner
        # first element along the axis initializes, the others combine in place
        loops, oidx = tile_loops(oshape, "o")
        first = self.c.nest_body(loops, _store(self, r, mat, oidx, self.read(out, oidx), cd, False))
        if n == 1:
            return first
        loops, idx = tile_loops(shape, "o", vector=ax != (live[-1] if live else ax))
        loops = [dict(l, start=1) if l["var"] == f"o{ax}" else l for l in loops]
        oidx = tuple("0" if d == ax else i for d, i in enumerate(idx))
        rest = self.c.nest_body(loops, _store(self, r, mat, idx, self.read(out, oidx), cd, True))
        return first + "\n" + rest

    # ------------------------------------------------------------------ forwarding
    def block(self, body: tuple[N.Stmt, ...]) -> str:
        outer, self.filled_rows = self.filled_rows, {}  # the lets they name are scoped to this body
        out, i = [], 0
        while i < len(body):
            fused = self.forwarded(body[i], body[i + 1]) if i + 1 < len(body) else None
            n = 2 if fused is not None else 1
            for st in body[i:i + n]:
                self.note_writes(st)
            out.append(fused if fused is not None else self.stmt(body[i]))
            i += n
        self.filled_rows = outer
        return "\n".join(out)

    def forwarded(self, cp: N.Stmt, use: N.Stmt) -> str | None:
        """`copy(G[..], t)` then one statement reading t, which nothing else reads: on the in-bounds
        path that statement reads G itself.  It is an elementwise assignment reading t at the
        element it writes, or a gemm with t as an operand."""
        if not (isinstance(cp, N.Copy) and isinstance(cp.src, N.GlobalRef) and isinstance(cp.dst, N.TileRef)):
            return None
        name = cp.dst.name
        t = self.tile(name)
        if isinstance(use, N.Gemm):
            if name not in (use.a.name, use.b.name) or name == use.acc.name:
                return None
        elif not (isinstance(use, N.Assign) and use.name != name and not self.reductions(use.value)
                  and self.tile(use.name).shape == t.shape):
            return None
        if _readers(self.tk.kernel.body, name) != [use]:
            return None
        win, _, masked = self.load_paths(cp)
        loops, idx = tile_loops(t.shape, "i")

        def read(n, i):
            if isinstance(use, N.Assign) and n in (name, use.name) and i != idx:
                raise _NotElementwise
            if n != name:
                return self.read(n, i)
            return cast(self.load_global(win.tensor, win.element(i)), tir_dtype(t.dtype)).text

        if isinstance(use, N.Gemm):
            fast = self.visit_Gemm(use, read)
        else:
            try:
                v = cast(self.emitter(read).at(use.value, idx, t.shape), tir_dtype(self.tile(use.name).dtype)).text
            except _NotElementwise:
                return None
            fast = self.m.elementwise(self.comment(use), loops, self.read(use.name, idx), v)
        slow = self.c.nest_body(masked["loops"], masked["body"]) + "\n" + self.stmt(use)
        return self.m.branch(self.comment(cp), win.starts, win.full(), fast, slow)

    # ------------------------------------------------------------------ statements
    def visit_For(self, s: N.For) -> str:
        """The loop, with the lanes of the accumulators it defers zeroed before and summed after it."""
        accs = [a for a in dict.fromkeys(g.acc.name for g in s.body if isinstance(g, N.Gemm))
                if a not in self.lanes and self.deferrable(s.body, a)]
        for a in accs:
            m, n = self.tile(a).shape
            self.lanes[a] = (self.alloc(self.fresh("lanes"), (m, n, LANES), "float32"),
                             self.alloc(self.fresh("live"), (1,), "int32"))
        text = super().visit_For(s)
        deferred = [(a, self.lanes.pop(a)) for a in accs]
        return "\n".join([f"{live}[0] = 0" for _, (_, live) in deferred] + [text] + [
            self.m.lanes_sum(self.buf(a), part, live, self.tile(a).shape[1], LANES) for a, (part, live) in deferred])

    def lanes_gemm(self, s: N.Gemm) -> bool:
        """A dot-product gemm that can accumulate in lanes of an f32 accumulator."""
        ta, tc = self.tile(s.a.name), self.tile(s.acc.name)
        return (s.trans_b and not s.trans_a and ta.shape[1] % LANES == 0 and tir_dtype(tc.dtype) == "float32"
                and s.acc.name not in (s.a.name, s.b.name) and tc.shape[0] * tc.shape[1] <= MAX_LANES)

    def deferrable(self, body: tuple[N.Stmt, ...], acc: str) -> bool:
        """Only lanes gemms touch `acc` in the loop body: its lanes need summing only after the loop."""
        return all(isinstance(s, N.Gemm) and s.acc.name == acc and self.lanes_gemm(s)
                   for s in walk_stmts(body) if not isinstance(s, N.For) and
                   (acc == _written(s) or _readers((s,), acc)))

    def visit_Alloc(self, s: N.Alloc) -> str:
        t = self.tile(s.name)
        tdt = tir_dtype(t.dtype)
        self.alloc(self.buf(s.name), t.shape, tdt)
        em = self.emitter(self.read)
        init = cast(em.value(s.init) if s.init is not None else Val("T.int32(0)", "int32"), tdt).text
        loops, idx = tile_loops(t.shape, "i")
        return self.m.elementwise(self.comment(s), loops, self.read(s.name, idx), init)

    def visit_Assign(self, s: N.Assign) -> str:
        t = self.tile(s.name)
        tdt = tir_dtype(t.dtype)
        if s.define:
            self.alloc(self.buf(s.name), t.shape, tdt)
        pre, mat = self.materialize(s.value)
        loops, idx = tile_loops(t.shape, "i")
        reads: list[tuple[str, tuple]] = []

        def read(name, i):
            reads.append((name, i))
            return self.read(name, i)

        em = self.emitter(read, mat)
        v = cast(em.at(s.value, idx, t.shape), tdt).text
        target = self.read(s.name, idx)
        if any(n == s.name and i != idx for n, i in reads):  # reads other elements of itself: go through a copy
            tmp = self.alloc(self.fresh("new"), t.shape, tdt)
            stores = [self.m.elementwise(self.comment(s), loops, f"{tmp}[{', '.join(idx)}]", v),
                      self.m.elementwise("", loops, target, f"{tmp}[{', '.join(idx)}]")]
        else:
            stores = [self.m.elementwise(self.comment(s), loops, target, v)]
        return "\n".join(([pre] if pre else []) + stores)

    def load_paths(self, s: N.Copy) -> tuple[Window, dict, dict]:
        """A global window into a tile: its vectorized in-bounds loops and its masked, padded ones."""
        t = self.tile(s.dst.name)
        win = self.window(s.src, t.shape)
        tdt = tir_dtype(t.dtype)
        em = self.emitter(self.read)
        pad = cast(em.value(s.pad) if s.pad is not None else Val("T.int32(0)", "int32"), tdt).text

        def path(vector, padding=False):
            loops, idx = tile_loops(t.shape, "i", vector)
            v = cast(self.load_global(win.tensor, win.element(idx)), tdt).text
            store = f"{self.read(s.dst.name, idx)} = "
            if vector:
                return dict(loops=loops, body=store + (pad if padding else v))
            return dict(loops=loops, body=self.m.guarded(win.mask(idx), store + v, store + pad))

        if s.pad is None and len(t.shape) == 2 and t.shape[0] > 1:
            (w, _), d = win.starts[-2], win.dims[-2]
            self.filled_rows[s.dst.name] = f"T.max(T.min({t.shape[0]}, {d} - {w}), 0)"
        return win, path(True), self.row_masked(win, t.shape, path)

    def row_masked(self, win: Window, shape: tuple[int, ...], path) -> dict:
        """The boundary path of a 2-D load row by row: rows inside the tensor whose columns all are
        take the vectorized loop, rows outside it the padding, the rest the element-masked loop."""
        if len(shape) != 2 or 1 in shape:
            return path(False)
        row = win.element(("i0", "0"))[-2]
        (c, _), e, dc = win.starts[-1], shape[1], win.dims[-1]
        row_in = f"0 <= {row} and {row} < {win.dims[-2]}"
        cols_in = f"0 <= {c} and {c} + {e} <= {dc}"

        def inner(p):  # the loops under the row loop
            return self.c.nest_body(p["loops"][1:], p["body"])

        body = self.m.guarded(f"{row_in} and {cols_in}", inner(path(True)), self.m.guarded(
            f"not ({row_in})", inner(path(True, padding=True)), inner(path(False))))
        return dict(loops=path(True)["loops"][:1], body=body.rstrip())

    def visit_Copy(self, s: N.Copy) -> str:
        if isinstance(s.src, N.GlobalRef):
            win, fast, slow = self.load_paths(s)
            return self.m.window(self.comment(s), win.starts, win.full(), fast, slow)
        if isinstance(s.dst, N.GlobalRef):
            t = self.tile(s.src.name)
            win = self.window(s.dst, t.shape)
            arg = next(a for a in self.sig.tensors if a.name == s.dst.tensor)

            def path(vector):
                loops, idx = tile_loops(t.shape, "i", vector)
                v = cast(Val(self.read(s.src.name, idx), tir_dtype(t.dtype)), arg.dtype).text
                store = f"{arg.buffer}[{', '.join(win.element(idx))}] = {v}"
                return dict(loops=loops, body=store if vector else self.m.guarded(win.mask(idx), store, ""))

            return self.m.window(self.comment(s), win.starts, win.full(), path(True), path(False))
        t = self.tile(s.dst.name)
        loops, idx = tile_loops(t.shape, "i")
        v = cast(Val(self.read(s.src.name, idx), tir_dtype(self.tile(s.src.name).dtype)), tir_dtype(t.dtype)).text
        return self.m.elementwise(self.comment(s), loops, self.read(s.dst.name, idx), v)

    def visit_Dequant(self, s: N.Dequant) -> str:
        t = self.tile(s.dst.name)
        win = self.window(s.src, t.shape)
        tdt = tir_dtype(t.dtype)

        def path(vector):
            loops, idx = tile_loops(t.shape, "i", vector)
            em = self.emitter(self.read)
            v = self.dequant_value(s, win, idx, em, tdt).text
            store = f"{self.read(s.dst.name, idx)} = "
            if vector:
                return dict(loops=loops, body=store + v)
            zero = cast(Val("T.float32(0.0)", "float32"), tdt).text
            return dict(loops=loops, body=self.m.guarded(win.mask(idx), store + v, store + zero))

        return self.m.window(self.comment(s), win.starts, win.full(), path(True), path(False))

    def visit_Gemm(self, s: N.Gemm, read=None) -> str:
        """`read(tile, idx)` may replace the operands' loads (a forwarded copy)."""
        read = read or self.read
        ta, tb, tc = (self.tile(x.name) for x in (s.a, s.b, s.acc))
        m, n = tc.shape
        k = ta.shape[0] if s.trans_a else ta.shape[1]
        rows = m if s.trans_a else self.filled_rows.get(s.a.name, m)
        dot = s.trans_b and not s.trans_a and k % LANES == 0  # both operands contiguous along k
        kk = f"ko * {LANES} + l" if dot else "gk"
        a = read(s.a.name, (kk, "gi") if s.trans_a else ("gi", kk))
        b = read(s.b.name, ("gj", kk) if s.trans_b else (kk, "gj"))
        a_val = cast(Val(a, tir_dtype(ta.dtype)), "float32").text
        b_val = cast(Val(b, tir_dtype(tb.dtype)), "float32").text
        if dot and s.acc.name in self.lanes:
            return self.gemm_lanes(s, rows, n, k, a_val, b_val)
        cdt = tir_dtype(tc.dtype)
        fill = finish = ""
        if cdt == "float32":
            acc = self.buf(s.acc.name)
        else:  # products are summed in f32 and added to the narrower accumulator once
            acc = self.alloc(self.fresh("gsum"), (m, n), "float32")
            loops, idx = tile_loops((m, n), "i")
            fill = self.m.elementwise("", loops, f"{acc}[{', '.join(idx)}]", "T.float32(0.0)")
            tot = cast(Val(f"({cast(Val(self.read(s.acc.name, idx), cdt), 'float32').text} + "
                           f"{acc}[{', '.join(idx)}])", "float32"), cdt).text
            finish = self.m.elementwise("", loops, self.read(s.acc.name, idx), tot)
        if dot:
            lanes = self.alloc(self.fresh("dot"), (LANES,), "float32")
            return self.m.gemm_dot(self.comment(s), rows, n, k // LANES, LANES, acc, lanes, a_val, b_val,
                                   fill, finish)
        return self.m.gemm(self.comment(s), rows, n, k, acc, "gi, gj", self.fresh("ga"), a_val, b_val, fill, finish)

    def gemm_lanes(self, s: N.Gemm, rows: str, n: int, k: int, a_val: str, b_val: str) -> str:
        """The products of a deferred gemm into its accumulator's lanes, in register blocks."""
        part, live = self.lanes[s.acc.name]
        a_f32 = ""
        if tir_dtype(self.tile(s.a.name).dtype) != "float32":
            a_f32 = self.f32_rows.get(s.a.name) or self.alloc(self.fresh("af"), (self.tile(s.a.name).shape[0], k),
                                                                "float32")
            self.f32_rows[s.a.name] = a_f32
            a = f"{a_f32}[gi, ko * {LANES} + l]"
        else:
            a = a_val
        nrows = self.fresh("rows")
        nests, lo = [], ""
        for r, cols in GEMM_BLOCKS:  # each block shape takes the rows the larger ones left
            c = next(c for c in (cols, 2, 1) if n % c == 0)
            span = f"({nrows} - {lo})" if lo else nrows
            loops = [dict(var="gio", extent=span if r == 1 else f"{span} // {r}", kind="serial"),
                     dict(var="gjo", extent=n // c, kind="serial"), dict(var="ko", extent=k // LANES, kind="serial")]
            loops += [dict(var=v, extent=e, kind="unroll") for v, e in (("r", r), ("c", c)) if e > 1]
            gi = (f"{lo} + " if lo else "") + ("gio" if r == 1 else f"gio * {r} + r")
            gj = "gjo" if c == 1 else f"gjo * {c} + c"
            nests.append(self.c.nest_body(loops, self.m.lanes_fma(gi, gj, part, LANES, a, b_val)))
            lo = f"{nrows} // {r} * {r}"
        return self.m.gemm_lanes(self.comment(s), nrows, rows, n, k // LANES, LANES, part, live, a_val, a_f32,
                                 "\n".join(nests))

    def note_writes(self, s: N.Stmt) -> None:
        """Forget the filled rows of tiles `s` writes; remember them for a zero-padded global load."""
        if isinstance(s, N.For):
            self.filled_rows.clear()
            return
        self.filled_rows.pop(_written(s), None)


class _NotElementwise(Exception):
    """A forwarded tile is read at another element than the one written."""


def _written(s: N.Stmt) -> str | None:
    """The tile a statement (not a loop) writes, if any."""
    if isinstance(s, N.Gemm):
        return s.acc.name
    if isinstance(s, (N.Copy, N.Dequant)):
        return s.dst.name if isinstance(s.dst, N.TileRef) else None
    return getattr(s, "name", None)


def _readers(body: tuple[N.Stmt, ...], name: str) -> list[N.Stmt]:
    """The statements (loop bodies included) that read tile `name`."""
    out = []
    for s in walk_stmts(body):
        fields = [getattr(s, f.name) for f in dataclasses.fields(s)
                  if f.name not in ("loc", "body") and not (f.name == "dst" and isinstance(s, (N.Copy, N.Dequant)))]
        exprs = [x for v in fields for x in (v if isinstance(v, tuple) else (v,)) if not isinstance(x, (str, int))]
        if any(isinstance(e, N.TileRef) and e.name == name for x in exprs if x is not None for e in sub_exprs(x)):
            out.append(s)
    return out


def _store(low: LlvmLowering, r: N.Reduce, mat: dict, idx: tuple[str, ...], target: str, cd: str,
           combine_: bool) -> str:
    """`target = x[idx]` (or combined with target) for the reduced expression x."""
    em = low.emitter(low.read, mat)
    x = cast(em.value(r.x, idx), cd).text
    return f"{target} = " + (combine(r.op, target, x) if combine_ else x)


def lower_llvm(tk, noalias: bool = True) -> str:
    return LlvmLowering(tk, "llvm", noalias=noalias).generate()
