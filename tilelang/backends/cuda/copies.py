"""`Copy` between global memory, registers and shared memory: masked windows of global tensors,
vector runs where rows and pointers allow, 16-byte chunks (cp.async in pipelines) into shared tiles."""
from __future__ import annotations

from dataclasses import dataclass

from ...ir import nodes as N
from ...ir.dtypes import DType
from . import cexpr as cx
from . import ctype
from . import mapping as M
from .emitter import Emitter
from .expr import cname


@dataclass
class Window:
    """A window of a global tensor: start of each dim, bound of each dim (the tensor's dim, or less
    where an element-offset window has a stop), strides (C names)."""
    tensor: N.TensorParam
    full: tuple[int, ...]
    starts: list[str]
    dims: list[str]
    strides: list[str]
    lead: int  # tensor dims before the tile's (indexed by element, the tile has extent 1 there)

    def coord(self, i: int, c: list[str]) -> str:
        """Tensor coordinate along dim i of the tile element at `c`."""
        if i < self.lead:
            return self.starts[i]
        t = c[i - self.lead]
        return self.starts[i] if t == "0" else f"{self.starts[i]} + {t}"

    def inbounds(self, c: list[str], skip_last: bool = False) -> str:
        dims = self.dims[:-1] if skip_last else self.dims
        conds = [f"tl::in_range({self.coord(i, c)}, {d})" for i, d in enumerate(dims)]
        return " && ".join(conds) or "true"

    def contains(self) -> str:
        """Whether the whole window lies inside the tensor (block-uniform)."""
        conds = []
        for i, (d, ext) in enumerate(zip(self.dims, self.full)):
            if i >= self.lead:
                conds.append(f"{self.starts[i]} >= 0 && {self.starts[i]} + {ext} <= {d}")
            else:
                conds.append(f"tl::in_range({self.starts[i]}, {d})")
        return " && ".join(conds)

    def offset(self, c: list[str], skip_last: bool = False) -> str:
        n = len(self.dims) - (1 if skip_last else 0)
        return " + ".join(f"({self.coord(i, c)}) * {self.strides[i]}" for i in range(n)) or "0"

    def origin(self) -> str:
        """Offset of the window's first element."""
        return " + ".join(f"{st} * {sd}" for st, sd in zip(self.starts, self.strides)) or "0"

    def relative(self, c: list[str]) -> str:
        """Offset of the tile element at `c` from the window's first element."""
        terms = [f"({t}) * {self.strides[self.lead + i]}" for i, t in enumerate(c) if t != "0"]
        return "(" + " + ".join(terms) + ")" if terms else "0"


class CopyEmitter(Emitter):
    """`Copy` in every direction; `window` and `packed_field` also serve dequant.py and pipeline.py, whose
    producers fill shared tiles by `load_global_shared`."""

    def visit_Copy(self, s: N.Copy) -> None:
        if id(s) in self.ring_ptr:  # its window was prefetched into a ring stage
            self.copy_from_ring(s, self.ring_ptr[id(s)])
            return
        src, dst = s.src, s.dst
        if isinstance(src, N.GlobalRef):
            t = self.tk.tiles[dst.name]  # type: ignore[union-attr]
            if t.scope == "register":
                with self.scope():
                    self.load_global(s)
            else:
                self.barrier()
                with self.scope():
                    self.load_global_shared(s, asynchronous=False)
                self.barrier()
            return
        st = self.tk.tiles[src.name]
        if isinstance(dst, N.GlobalRef):
            with self.scope():
                if st.scope == "register":
                    self.store_global(s)
                else:
                    self.store_global_from_shared(src.name, dst)
            return
        dt = self.tk.tiles[dst.name]
        if dt.scope == "register" and st.scope == "register":
            self.visit(N.Assign(dst.name, N.Cast(N.TileRef(src.name), dt.dtype), False, s.loc))
        elif dt.scope == "register":
            with self.scope(), self.values(self.mapping(dst.name)) as c:
                v = f"{self.tile_ptr(src.name)}[{self.plan.layouts[src.name].offset(c)}]"
                self.line(f"{cname(dst.name)}[v] = {ctype.convert(v, st.dtype, dt.dtype)};")
        else:
            self.barrier()
            lay = self.plan.layouts[dst.name]
            if st.scope == "register":
                with self.scope(), self.values(self.mapping(src.name)) as c:
                    v = ctype.convert(f"{cname(src.name)}[v]", st.dtype, dt.dtype)
                    self.line(f"{self.tile_ptr(dst.name)}[{lay.offset(c)}] = {v};")
            else:
                with self.scope(), self.elements(dt.shape) as c:
                    v = f"{self.tile_ptr(src.name)}[{self.plan.layouts[src.name].offset(c)}]"
                    self.line(f"{self.tile_ptr(dst.name)}[{lay.offset(c)}] = {ctype.convert(v, st.dtype, dt.dtype)};")
            self.barrier()

    def window(self, ref: N.GlobalRef, shape: tuple[int, ...]) -> Window:
        """The window of `ref` a tile of `shape` covers; its start in each dim is computed once, here."""
        p = self.tk.tensor(ref.tensor)
        full = (1,) * (len(p.dims) - len(shape)) + tuple(shape)
        w = self.fresh("w")
        starts = []
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
        for i, (idx, ext) in enumerate(zip(ref.indices, full)):
            name = f"{w}_{i}"
            if isinstance(idx, N.ElemOffset):  # starts at an element; a stop bounds the axis like its edge
                self.line(f"const long long {name} = (long long)({self.ex.scalar(idx.start).code});")
                if idx.stop is not None:
                    bound = f"{w}_b{i}"
                    self.line(f"const long long {bound} = tl::min_ll((long long)({dims[i]}), "
                              f"(long long)({self.ex.scalar(idx.stop).code}));")
                    dims[i] = bound
            else:
                self.line(f"const long long {name} = (long long)({self.ex.scalar(idx).code}) * {ext};")
            starts.append(name)
        return Window(p, full, starts, dims, [f"{cname(p.name)}st{i}" for i in range(len(p.dims))],
                      len(p.dims) - len(shape))

    def load_global(self, s: N.Copy) -> None:
        """Global window -> register tile, one run of consecutive elements at a time."""
        ref, name, pad = s.src, s.dst.name, s.pad
        self.global_access(write=False)
        t = self.tk.tiles[name]
        w = self.window(ref, t.shape)
        padv = self._pad(pad, t.dtype)
        p = w.tensor
        dst = cname(name)

        def vector(ptr: str, run: int) -> list[str]:
            vt = f"tl::Vec<{ctype.storage(p.dtype)}, {run}>"
            return [f"const {vt} r = *reinterpret_cast<const {vt}*>({ptr});",
                    *(f"{dst}[v + {u}] = {ctype.convert(f'r.v[{u}]', p.dtype, t.dtype)};" for u in range(run))]

        def scalar(c: list[str], ok: str, ptr: str, u: int) -> str:
            val = self._load_elem(w, c, f"{w.offset(c)}", t.dtype) if p.dtype.is_packed else \
                ctype.convert(f"{ptr}[{u}]", p.dtype, t.dtype)
            return f"{dst}[v + {u}] = ({ok}) ? {val} : {padv};"

        self._runs(self.mapping(name), self.plan.vector(s), w, vector, scalar)

    def _runs(self, m: M.Mapping, run: int, w: Window, vector, scalar) -> None:
        """Visit this thread's values in runs of `run` consecutive elements of a row (the plan's vector).

        A run wholly inside the tensor, on a row whose length is a multiple of the run and
        a base pointer aligned for it, is one vector access (`vector(ptr, run)` lines);
        any other run is accessed element by element (`scalar(coords, in_bounds, ptr, u)`)."""
        p = w.tensor
        if run > 1:
            align = min(16, run * ctype.nbytes(p.dtype))
            self.line(f"const bool vec = {w.dims[-1]} % {run} == 0 && tl::aligned_to({cname(p.name)}, {align});")
        with self.value_runs(m, run) as names:
            lead = w.inbounds(names, skip_last=True)
            last = w.coord(len(w.dims) - 1, names)
            self.line(f"const bool row = {lead};")
            if not p.dtype.is_packed:
                self.line(f"{'const ' if p.name not in self.written_tensors else ''}"
                          f"{ctype.storage(p.dtype)}* const ptr = {cname(p.name)} + {w.offset(names)};")
            if run > 1:
                with self.scope(f"if (vec && row && tl::in_range({last}, {w.dims[-1]}))"):
                    for l in vector("ptr", run):
                        self.line(l)
                head = "else"
            else:
                head = ""
            with self.scope(head):
                for u in range(run):
                    cu = names[:-1] + [names[-1] if u == 0 else f"{names[-1]} + {u}"]
                    self.line(scalar(cu, f"row && tl::in_range({last} + {u}, {w.dims[-1]})" if u else
                                     f"row && tl::in_range({last}, {w.dims[-1]})", "ptr", u))

    def _pad(self, pad: N.Expr | None, dt: DType) -> str:
        if pad is None:
            return ctype.from_compute(ctype.literal(0, dt), dt)
        v = self.ex.scalar(pad)
        return ctype.from_compute(ctype.cast(v.code, v.kind, dt), dt)

    def _load_elem(self, w: Window, c: list[str], off: str, dt: DType) -> str:
        """One in-bounds element of the window at tile coordinate `c`, converted to `dt` (storage)."""
        p = w.tensor
        if p.dtype.is_packed:
            q = self.packed_field(w, c)
            return ctype.from_compute(ctype.cast(q, "int", dt), dt)
        return ctype.convert(f"{cname(p.name)}[{off}]", p.dtype, dt)

    def packed_field(self, w: Window, c: list[str]) -> str:
        """The integer value of the sub-byte field of the window at tile coordinate `c`."""
        p = w.tensor
        row = w.offset(c, skip_last=True)
        col = f"{w.starts[-1]} + {c[-1]}" if c[-1] != "0" else w.starts[-1]
        return (f"tl::load_packed<{p.dtype.bits}, {'true' if p.dtype.is_signed else 'false'}>"
                f"({cname(p.name)} + {row}, {col})")

    def store_global(self, s: N.Copy) -> None:
        """Register tile -> global window; elements outside the tensor are not written."""
        name, ref = s.src.name, s.dst
        self.global_access(write=True)
        t = self.tk.tiles[name]
        w = self.window(ref, t.shape)
        p = w.tensor
        src = cname(name)

        def vector(ptr: str, run: int) -> list[str]:
            vt = f"tl::Vec<{ctype.storage(p.dtype)}, {run}>"
            return [f"{vt} r;", *(f"r.v[{u}] = {ctype.convert(f'{src}[v + {u}]', t.dtype, p.dtype)};"
                                  for u in range(run)), f"*reinterpret_cast<{vt}*>({ptr}) = r;"]

        def scalar(c: list[str], ok: str, ptr: str, u: int) -> str:
            return f"if ({ok}) {ptr}[{u}] = {ctype.convert(f'{src}[v + {u}]', t.dtype, p.dtype)};"

        self._runs(self.mapping(name), self.plan.vector(s), w, vector, scalar)

    def visit_AtomicAdd(self, s: N.AtomicAdd) -> None:
        """Register tile -> global window, one atomicAdd per element (f32; f16 on sm_70+, bf16 on sm_80+);
        elements outside the tensor are not touched."""
        name = s.src.name
        with self.scope():
            self.global_access(write=True)
            t = self.tk.tiles[name]
            w = self.window(s.dst, t.shape)
            p = w.tensor

            def scalar(c: list[str], ok: str, ptr: str, u: int) -> str:
                return f"if ({ok}) atomicAdd({ptr} + {u}, {ctype.convert(f'{cname(name)}[v + {u}]', t.dtype, p.dtype)});"

            self._runs(self.mapping(name), 1, w, None, scalar)

    def store_global_from_shared(self, name: str, ref: N.GlobalRef) -> None:
        """Shared tile -> global window, element by element; elements outside the tensor are not written."""
        self.global_access(write=True)
        t = self.tk.tiles[name]
        w = self.window(ref, t.shape)
        p = w.tensor
        lay = self.plan.layouts[name]
        with self.elements(t.shape) as c:
            v = ctype.convert(f"{self.tile_ptr(name)}[{lay.offset(c)}]", t.dtype, p.dtype)
            with self.scope(f"if ({w.inbounds(c)})"):
                self.line(f"{cname(p.name)}[{w.offset(c)}] = {v};")

    def load_global_shared(self, s: N.Copy, asynchronous: bool) -> None:
        """Fill a shared tile from a global window: 16-byte copies where the plan says so, else element by element."""
        ref, name, pad = s.src, s.dst.name, s.pad
        if not asynchronous:
            self.global_access(write=False)
        t = self.tk.tiles[name]
        lay = self.plan.layouts[name]
        w = self.window(ref, t.shape)
        p = w.tensor
        dst = self.tile_ptr(name)
        padv = self._pad(pad, t.dtype)
        n = self.plan.vector(s)
        if n > 1:
            chunks = M.Flat(tuple(t.shape[:-1]) + (t.shape[-1] // n,), self.T, 1)
            self.line(f"const bool vec = {w.dims[-1]} % {n} == 0 && tl::aligned_to({cname(p.name)}, 16);")
            self.line(f"const bool inside = vec && {w.contains()};")
            with self.scope("if (inside)"):  # the whole window is in the tensor: no per-chunk masks
                # one 64-bit origin per copy; the per-chunk offsets depend on tid alone (hoisted out of loops)
                self.line(f"const {ctype.storage(p.dtype)}* const origin = {cname(p.name)} + {w.origin()};")
                with self.values(chunks, "j") as c:
                    c = c[:-1] + [cx.mul(c[-1], n)]
                    if asynchronous:
                        self.line(f"tl::cp_async_16({dst} + {lay.offset(c)}, origin + {w.relative(c)}, 16);")
                    else:
                        self.line(f"*reinterpret_cast<uint4*>({dst} + {lay.offset(c)}) = "
                                  f"*reinterpret_cast<const uint4*>(origin + {w.relative(c)});")
            with self.scope("else if (vec)"):
                with self.values(chunks, "j") as c:
                    c = c[:-1] + [cx.mul(c[-1], n)]
                    self.line(f"const bool inb = {w.inbounds(c)};")
                    if asynchronous:
                        self.line(f"tl::cp_async_16({dst} + {lay.offset(c)}, inb ? {cname(p.name)} + {w.offset(c)} : "
                                  f"{cname(p.name)}, inb ? 16 : 0);")
                    else:
                        self.line("uint4 r = make_uint4(0, 0, 0, 0);")
                        self.line(f"if (inb) r = *reinterpret_cast<const uint4*>({cname(p.name)} + {w.offset(c)});")
                        self.line(f"*reinterpret_cast<uint4*>({dst} + {lay.offset(c)}) = r;")
            head = "else"
        else:
            head = ""
        with self.scope(head):
            with self.elements(t.shape) as c:
                self.line(f"{dst}[{lay.offset(c)}] = ({w.inbounds(c)}) ? "
                          f"{self._load_elem(w, c, w.offset(c), t.dtype)} : {padv};")
