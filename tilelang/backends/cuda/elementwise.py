"""Tiles defined by value: `Alloc` (an initial value) and `Assign` (a tile expression evaluated at every
element of the result's mapping). Operands held under another mapping, reductions and transposes are
read from a scratch copy written first (staging); reductions come from `reduce.py`."""
from __future__ import annotations

from ...ir import nodes as N
from ...ir.types import ScalarType, TileType
from ...layout.plan import children
from . import cexpr as cx
from . import ctype
from . import mapping as M
from .emitter import Emitter
from .expr import cname, coords_for


class ElementwiseEmitter(Emitter):
    """`Alloc` and `Assign`; `eval_into` also computes the inputs of reductions for reduce.py."""

    def visit_Alloc(self, s: N.Alloc) -> None:
        t = self.tk.tiles[s.name]
        st = ctype.storage(t.dtype)
        if s.init is not None:
            v = self.ex.scalar(s.init)
            init = ctype.from_compute(ctype.cast(v.code, v.kind, t.dtype), t.dtype)
        else:
            init = ctype.from_compute(ctype.literal(0, t.dtype), t.dtype)
        if t.scope == "register":
            m = self.mapping(s.name)
            self.line(f"{st} {cname(s.name)}[{m.values}];")
            with self.unrolled(m.values):
                self.line(f"{cname(s.name)}[v] = {init};")
            return
        lay = self.plan.layouts[s.name]
        off = self.plan.smem_offsets[s.name]
        if s.name in self.plan.stages:
            self.line(f"{st}* const {s.name}_stages = reinterpret_cast<{st}*>(tl_smem + {off});  "
                      f"// {self.plan.stages[s.name]} stages of {lay.cosize} elements")
            return
        self.line(f"{st}* const {cname(s.name)} = reinterpret_cast<{st}*>(tl_smem + {off});")
        if s.name in self.plan.skip_init:
            return
        self.barrier()
        with self.elements(t.shape) as c:
            self.line(f"{cname(s.name)}[{lay.offset(c)}] = {init};")
        self.barrier()

    def visit_Assign(self, s: N.Assign) -> None:
        if s.name in self.plan.virtual:
            self.remark(f"'{s.name}' is recomputed where it is read")
            return
        t = self.tk.tiles[s.name]
        if s.name in self.plan.resident:
            st, lay = ctype.storage(t.dtype), self.plan.layouts[s.name]
            self.line(f"{st}* const {cname(s.name)} = reinterpret_cast<{st}*>(tl_smem + "
                      f"{self.plan.smem_offsets[s.name]});  // a gemm operand: computed into shared memory")
            self.barrier()  # the previous readers of the buffer are done
            with self.scope():
                self.eval_into(s.value, self.plan.value_mapping(s), t.shape,
                               lambda code, c: f"{cname(s.name)}[{lay.offset(c)}] = {ctype.from_compute(code, t.dtype)};")
            self.barrier()
            return
        m = self.mapping(s.name)
        if s.define:
            self.line(f"{ctype.storage(t.dtype)} {cname(s.name)}[{m.values}];")
        with self.scope():
            self.eval_into(s.value, m, t.shape, lambda code, c: f"{cname(s.name)}[v] = "
                           f"{ctype.from_compute(code, t.dtype)};")

    def eval_into(self, e: N.Expr, m: M.Mapping, shape: tuple[int, ...], store) -> None:
        """Evaluate tile expression `e` at every value of mapping `m` (over `shape`) and store it."""
        et = self.tk.type_of(e)
        eshape = et.shape if isinstance(et, TileType) else ()
        ident = eshape == tuple(shape)
        staged, reduces = [], []
        self._needs(e, ident, m, staged, reduces)
        if staged or reduces:
            self.barrier()  # earlier statements' readers of scratch are done
        red = {id(r): self.reduce(r) for r in reduces}
        bufs = {n: self.stage(n) for n in staged}
        self.sync()

        def leaf(x, coords, direct):
            if isinstance(x, N.Reduce):
                return f"{red[id(x)]}[{cx.row_major_offset(coords, self.tk.type_of(x).shape)}]"
            if direct and M.equivalent(self.mapping(x.name), m):
                return f"{cname(x.name)}[v]"
            if x.name in self.shadow:
                ring, raw = self.shadow[x.name]
                t = self.tk.tiles[x.name]
                return ctype.convert(f"{ring}[{cx.row_major_offset(coords, t.shape)}]", raw, t.dtype)
            return f"{bufs[x.name]}[{cx.row_major_offset(coords, self.tk.tiles[x.name].shape)}]"

        with self.values(m) as coords:
            val = self.ex.element(e, coords_for(eshape, tuple(shape), coords), ident, leaf)
            dt = self.tk.type_of(e).dtype
            self.line(store(val.code if isinstance(et, TileType) else ctype.cast(val.code, val.kind, dt), coords))

    def _needs(self, e: N.Expr, ident: bool, m: M.Mapping, staged: list, reduces: list) -> None:
        """Collect the tiles `e` must read through a staged copy (held under a mapping other than `m`, or
        broadcast, or transposed; a tile shadowing a ring stage is read there) and the reductions it contains."""
        t = self.tk.type_of(e)
        if isinstance(t, ScalarType):
            return
        if isinstance(e, N.TileRef) and e.name in self.plan.virtual:
            self._needs(self.plan.virtual[e.name], False, m, staged, reduces)
        elif isinstance(e, N.TileRef):
            if not (ident and M.equivalent(self.mapping(e.name), m)) and e.name not in staged \
                    and e.name not in self.shadow:
                staged.append(e.name)
        elif isinstance(e, N.Reduce):
            reduces.append(e)
        elif isinstance(e, (N.Broadcast, N.Transpose)):
            self._needs(e.x, False, m, staged, reduces)
        else:
            for child in children(e):
                ct = self.tk.type_of(child)
                same = isinstance(ct, TileType) and M.squeeze(ct.shape) == M.squeeze(t.shape)
                self._needs(child, ident and same, m, staged, reduces)
