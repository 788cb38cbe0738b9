"""Lowering a typed kernel to one CUDA C++ `extern "C" __global__` function.

Execution model of the generated code:
* every register tile is an array of `values` registers per thread, distributed by
  its mapping (`mapping.py`); every shared tile is a slice of dynamic shared memory
  in its layout (`smem.py`); per-statement temporaries live in a scratch area after
  the tiles;
* an elementwise statement loops over the values of its result's mapping; operands
  held under another mapping, reduction results and transposes are read from a
  shared-memory copy written first ("staging");
* synchronization: a statement that writes a shared tile is fenced by
  `__syncthreads()` on both sides; a statement that uses scratch starts with one
  (earlier readers are done) and puts one between its writes and reads of scratch.
  All control flow is block-uniform, so every barrier is reached by all threads;
* global accesses are masked against the tensor's dims; reads outside give `pad`;
* a register tile just read from a pipeline ring (plan.py) "shadows" that ring stage
  until it is written again: operands that would be staged through scratch (a broadcast
  x in a GEMV) are read from the ring instead, with no barrier.

Each statement is preceded by a `// file.tile:LINE  source` comment; `errors.py`
uses them to point compiler errors back at the kernel source.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.dtypes import DType, f32
from ...ir.types import ScalarType, TileType
from ...ir.visit import StmtVisitor, sub_exprs
from ...passes.infer import TypedKernel
from ...passes.verify import MAX_SHARED_BYTES
from . import cexpr as cx
from . import cir
from . import ctype
from . import mapping as M
from . import tma as TMA
from . import wgmma as W
from .expr import ExprEmitter, cname, coords_for
from .plan import Plan, Ring, make_plan, written_tile
from .smem import row_major

SCRATCH_ALIGN = 16


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    here = os.path.join(os.path.dirname(__file__), "templates")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(here), trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def verbatim(name: str) -> str:
    """A C++ file kept as a template (templates/*.j2 are the package data) but emitted as it is."""
    return templates().get_template(name).render()


@dataclass(frozen=True)
class Source:
    """Generated code plus what the launcher needs to know."""
    code: str
    name: str
    threads: int
    smem_bytes: int
    params: tuple[tuple[str, str], ...]  # (kind, name): kind in tensor/dim/scalar/tmap (name: the tile)
    decls: tuple[str, ...]  # the C++ parameter declarations, in order
    tma: tuple[TMA.TmaLoad, ...] = ()  # the tensor maps the "tmap" parameters take, in order


def generate_source(tk: TypedKernel, arch: str | None = None, tma: bool = False) -> Source:
    """The kernel's CUDA C++; `arch` "sm_90a" lowers the gemms that fit to wgmma, anything else
    (None included) gives code for every sm_80+ device.  `tma` (sm_90a): pipelined wgmma operands
    are loaded by TMA, through tensor maps the launcher passes ("tmap" parameters, after the rest)."""
    return KernelGen(tk, make_plan(tk, arch, tma)).run()


class KernelGen(StmtVisitor):
    """Emits the kernel statement by statement: `stmt` keeps the state every statement shares (scratch,
    staging, ring shadows, pending partial sums), `visit_<Kind>` emits one kind."""

    where = "the CUDA backend"

    def __init__(self, tk: TypedKernel, plan: Plan):
        self.tk, self.plan = tk, plan
        self.k = tk.kernel
        self.T = tk.threads
        self.out = cir.Builder()
        self.counter = 0
        self.kinds: dict[str, str] = {}
        self.scratch_cursor = 0
        self.scratch_max = 0
        self.pending = False          # scratch/shared writes not yet followed by a barrier
        self.global_reads = False     # global loads since the last barrier (tensors may alias)
        self.global_writes = False    # global stores since the last barrier
        self.staged: dict[str, str] = {}
        self.ptr: dict[str, str] = {}  # shared tile -> C pointer (pipelined tiles point at a stage)
        self.ring_ptr: dict[int, str] = {}  # id(ringed statement) -> C pointer of the current stage
        self.shadow: dict[str, tuple[str, DType]] = {}  # register tile -> (ring stage, raw dtype) it equals
        self.ops = templates().get_template("ops.cu.j2").module
        self.wgmma_helpers: dict[str, str] = {}  # wgmma instruction wrappers the kernel uses, by name
        self.partial: dict[str, int] = {}  # accumulators of k-split gemms not yet summed: their k groups
        self.ex = ExprEmitter(tk, self.kinds, self._temp, plan.virtual)
        self.written_tensors = {s.dst.tensor for s in _walk(self.k.body)
                                if isinstance(s, N.Copy) and isinstance(s.dst, N.GlobalRef)}

    # ------------------------------------------------------------------ output helpers
    def line(self, text: str) -> None:
        self.out.add(cir.Line(text))

    def text(self, block: str) -> None:
        """A multi-line snippet (a rendered macro), indented to where it stands."""
        self.out.add(cir.Snippet(tuple(l.rstrip() for l in block.strip("\n").split("\n"))))

    def scope(self, head: str = "", pragma: str = ""):
        return self.out.block(head, pragma)

    @contextmanager
    def value_runs(self, m, run: int):
        """Loop over this thread's values of mapping `m`, `run` at a time: binds the coordinates
        (`i0`, `i1`, ...; yielded as names) and skips replicas that must not act."""
        coords, guard = m.coords("tid", "v")
        with self.scope(f"for (int v = 0; v < {m.values}; v += {run})", "#pragma unroll"):
            names = []
            for i, c in enumerate(coords):
                names.append(c if c.isdigit() else f"i{i}")
                if not c.isdigit():
                    self.line(f"const int i{i} = {c};")
            with self.scope(f"if ({guard})") if guard else nullcontext():
                yield names

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}{self.counter}"

    def _temp(self, ctype_: str, code: str) -> str:
        name = self.fresh("t")
        self.line(f"const {ctype_} {name} = {code};")
        return name

    def barrier(self) -> None:
        """A block-wide barrier; under wgmma it also fences earlier shared writes for wgmma's reads after it
        (`cir.drop_redundant_barriers` removes one that directly follows another)."""
        self.out.add(cir.Barrier(fence=self.plan.wgmma))
        self.pending = self.global_reads = self.global_writes = False

    def global_access(self, write: bool) -> None:
        """Order global accesses of different threads as the program orders them.

        Another thread may have stored (or still be loading) the same addresses: the same
        tensor, or another argument aliasing it (in-place calls).  A barrier makes earlier
        stores visible and earlier loads complete."""
        if self.global_writes or (write and self.global_reads):
            self.barrier()
        if write:
            self.global_writes = True
        else:
            self.global_reads = True

    def sync(self) -> None:
        """Make this statement's earlier shared writes visible before reading them."""
        if self.pending:
            self.barrier()

    def remark(self, text: str) -> None:
        self.out.add(cir.Comment(text))

    def comment(self, s) -> None:
        """`// file.tile:LINE  source` before a statement's code (`errors.py` maps compiler errors back by it)."""
        loc = s.loc
        if loc is not None and loc.line:
            src = loc.source_line.strip() if loc.source_line else type(s).__name__
            self.remark(f"{os.path.basename(loc.file)}:{loc.line}  {src}")

    def scratch(self, nbytes: int, ctype_: str, base: str = "tl_s") -> str:
        off = -(-self.scratch_cursor // SCRATCH_ALIGN) * SCRATCH_ALIGN
        self.scratch_cursor = off + nbytes
        self.scratch_max = max(self.scratch_max, self.scratch_cursor)
        name = self.fresh(base)
        self.line(f"{ctype_}* const {name} = reinterpret_cast<{ctype_}*>(tl_scratch + {off});")
        return name

    # ------------------------------------------------------------------ driver
    def run(self) -> Source:
        k = self.k
        params, setup, order = [], [], []
        for p in k.tensors:
            const = "" if p.name in self.written_tensors else "const "
            params.append(f"{const}{ctype.storage(p.dtype)}* {cname(p.name)}")
            order.append(("tensor", p.name))
        for d in k.dim_symbols:
            params.append(f"int {cname(d)}")
            order.append(("dim", d))
            self.kinds[d] = "int"
        for p in k.scalars:
            ct = ctype.scalar_param(p.dtype)
            self.kinds[p.name] = ctype.kind(p.dtype)
            if p.dtype.is_float and p.dtype != f32:
                params.append(f"{ct} {p.name}_in")
                setup.append(f"const float {cname(p.name)} = {ctype.rounded(p.name + '_in', p.dtype)};")
            elif p.dtype.kind == "bool":
                params.append(f"{ct} {p.name}_in")
                setup.append(f"const bool {cname(p.name)} = {p.name}_in != 0;")
            else:
                params.append(f"{ct} {cname(p.name)}")
            order.append(("scalar", p.name))
        for ld in self.plan.tma.values():
            params.append(f"const __grid_constant__ tl::TmaDesc {ld.param}")
            order.append(("tmap", ld.tile))
            name, code = TMA.copy_helper(ld.rank)
            self.wgmma_helpers[name] = code
        for p in k.tensors:
            for i, st in enumerate(self.strides(p)):
                setup.append(f"const long long {cname(p.name)}st{i} = {st};")
        self.stmts(k.body)
        body = cir.lower(self.out.finish(), depth=1)
        smem = self.plan.tiles_bytes + self.scratch_max
        if smem > MAX_SHARED_BYTES:
            raise TileError(f"kernel '{k.name}' needs {smem} bytes of shared memory on the CUDA backend "
                            f"({self.plan.tiles_bytes} for shared tiles, {self.scratch_max} for temporaries); "
                            f"a block has at most {MAX_SHARED_BYTES}", k.loc,
                            hint="use smaller tiles, or give operands of one expression the same shape")
        code = templates().get_template("kernel.cu.j2").render(
            source=os.path.basename(k.loc.file) if k.loc and k.loc.line else "<python>", name=k.name,
            consts=", ".join(f"{n}={v}" for n, v in self.tk.consts.items()),
            grid=", ".join(_show(g) for g in k.grid), threads=self.T, smem_bytes=smem, notes=self.notes(),
            params=params, setup=setup, body=body, scratch_offset=self.plan.tiles_bytes, prelude=verbatim("prelude.cuh.j2"),
            dtypes=self.dtypes_used(), wgmma=list(self.wgmma_helpers.values()), tma=bool(self.plan.tma))
        return Source(code, k.name, self.T, smem, tuple(order), tuple(params), tuple(self.plan.tma.values()))

    def dtypes_used(self) -> set[str]:
        """Names of every element type the kernel touches (to include only the headers it needs)."""
        out = {p.dtype.name for p in self.k.params if isinstance(p, (N.TensorParam, N.ScalarParam))}
        out |= {t.dtype.name for t in self.tk.tiles.values()}
        for s in _walk(self.k.body):
            for f in ("value", "init", "pad"):
                e = getattr(s, f, None)
                for x in sub_exprs(e) if e is not None else ():
                    if not isinstance(x, N.TileRef):
                        out.add(self.tk.type_of(x).dtype.name)
        return out

    def notes(self) -> list[str]:
        out = []
        for name, m in self.plan.mappings.items():
            t = self.tk.tiles[name]
            out.append(f"register {name}: {t.dtype}{list(t.shape)}, {m.values} values/thread, {m.describe()}")
        for name, lay in self.plan.layouts.items():
            t = self.tk.tiles[name]
            st = self.plan.stages.get(name)
            extra = f", {st} pipeline stages" if st else ""
            out.append(f"shared {name}: {t.dtype}{list(t.shape)} at byte {self.plan.smem_offsets[name]}, "
                       f"{lay.describe()}{extra}")
        return out

    def strides(self, p: N.TensorParam) -> list[str]:
        """Row-major strides in elements (in bytes of packed rows for sub-byte types)."""
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
        if p.dtype.is_packed:
            d = p.dims[-1]
            dims[-1] = (str((d * p.dtype.bits + 7) // 8) if isinstance(d, int)
                        else f"(({cname(d)} * {p.dtype.bits} + 7) / 8)")
        return ["1LL" if i + 1 == len(dims) else "(long long)" + " * ".join(dims[i + 1:]) for i in range(len(dims))]

    # ------------------------------------------------------------------ statements
    def stmts(self, body: tuple[N.Stmt, ...]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: N.Stmt) -> None:
        for acc in [a for a in self.partial if a in s.reads() | s.writes()
                    and not (isinstance(s, N.Gemm) and s.acc.name == a)]:
            self.sum_partials(acc)
        self.comment(s)
        self.scratch_cursor = 0
        self.staged = {}
        for st in _walk((s,)):
            self.shadow.pop(written_tile(st) or "", None)
        self.visit(s)
        assert not self.pending, "a statement left shared writes unfenced"

    def visit_Let(self, s: N.Let) -> None:
        v = self.ex.scalar(s.value)
        t = self.tk.scalars[s.name]
        ct = {"float": "float", "bool": "bool"}.get(v.kind, "long long" if t.dtype.name == "i64" else "int")
        self.kinds[s.name] = v.kind
        self.line(f"const {ct} {cname(s.name)} = {v.code};")

    def mapping(self, name: str) -> M.Mapping:
        return self.plan.mappings[name]

    def sum_partials(self, acc: str) -> None:
        """Add the k groups' partial accumulators (the plan split k over warp groups): every thread
        then holds the full sums of its values, as the accumulator's (replicated) mapping says."""
        groups = self.partial.pop(acc)
        m = self.mapping(acc)
        per = self.T // groups  # threads per k group (the groups are the outermost warps)
        self.remark(f"{acc}: add the partial sums of its {groups} k groups")
        with self.scope():
            self.barrier()
            parts = self.scratch(self.T * m.values * 4, "float")
            with self.scope(f"for (int v = 0; v < {m.values}; ++v)", "#pragma unroll"):
                self.line(f"{parts}[v * {self.T} + tid] = {cname(acc)}[v];")
            self.pending = True
            self.sync()
            with self.scope(f"for (int v = 0; v < {m.values}; ++v)", "#pragma unroll"):
                terms = " + ".join(f"{parts}[v * {self.T} + {g * per} + tid % {per}]" for g in range(groups))
                self.line(f"{cname(acc)}[v] = {terms};")
            self.barrier()

    def tile_ptr(self, name: str) -> str:
        return self.ptr.get(name, cname(name))

    @contextmanager
    def values(self, m: M.Mapping, var: str = "v", unroll: str = "#pragma unroll"):
        """Loop over this thread's values of mapping `m`; yields the coordinates.

        Loops that index register arrays must unroll fully (or the array goes to local memory)."""
        coords, guard = m.coords("tid", var)
        with self.scope(f"for (int {var} = 0; {var} < {m.values}; ++{var})", unroll):
            names = []
            for i, c in enumerate(coords):
                if c.isdigit():
                    names.append(c)
                else:
                    names.append(f"i{i}")
                    self.out.add(cir.Decl("int", f"i{i}", c))  # dropped if the body never reads it
            with self.scope(f"if ({guard})") if guard else nullcontext():
                yield names

    @contextmanager
    def elements(self, shape: tuple[int, ...]):
        """Every element of a tile, dealt to the threads in turn (for shared tiles)."""
        with self.values(M.Flat(tuple(shape), self.T, 1), "j", "#pragma unroll 4") as coords:
            yield coords

    # ------------------------------------------------------------------ alloc / assign
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
            with self.scope(f"for (int v = 0; v < {m.values}; ++v)", "#pragma unroll"):
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
            for child in _children(e):
                ct = self.tk.type_of(child)
                same = isinstance(ct, TileType) and M.squeeze(ct.shape) == M.squeeze(t.shape)
                self._needs(child, ident and same, m, staged, reduces)

    def stage(self, name: str) -> str:
        """Write a register tile to scratch (dense row-major) so any thread can read any element."""
        if name in self.staged:
            return self.staged[name]
        t = self.tk.tiles[name]
        buf = self.stage_array(cname(name), self.mapping(name), t)
        self.staged[name] = buf
        return buf

    def stage_array(self, arr: str, m: M.Mapping, t: TileType) -> str:
        st = ctype.storage(t.dtype)
        buf = self.scratch(t.numel * ctype.nbytes(t.dtype), st)
        with self.values(m) as c:
            self.line(f"{buf}[{cx.row_major_offset(c, t.shape)}] = {arr}[v];")
        self.pending = True
        return buf

    # ------------------------------------------------------------------ reductions
    def reduce(self, r: N.Reduce) -> str:
        """Compute a reduction into a scratch buffer (dense, the result's shape); returns its name."""
        xt = self.tk.type_of(r.x)
        rt = self.tk.type_of(r)
        assert isinstance(xt, TileType) and isinstance(rt, TileType)
        if isinstance(r.x, N.TileRef) and r.x.name not in self.plan.virtual:
            arr, mx = cname(r.x.name), self.mapping(r.x.name)
        else:
            mx = self.plan.reduce_inputs[id(r)]
            arr = self.fresh("tl_x")
            self.line(f"{ctype.storage(xt.dtype)} {arr}[{mx.values}];")
            self.eval_into(r.x, mx, xt.shape, lambda code, c: f"{arr}[v] = {ctype.from_compute(code, xt.dtype)};")
        dt = xt.dtype
        acc = "float" if dt.is_float else "long long"
        out = self.scratch(rt.numel * ctype.nbytes(dt), ctype.storage(dt))
        load = ctype.to_compute("%s", dt)
        if dt.is_float and dt != f32:
            load = "tl::to_f32(%s)"
        store = ctype.from_compute("%s", dt)
        common = dict(op=r.op, acc=acc, identity=ctype.identity(r.op, dt), load=load, dst=out, store=store,
                      threads=self.T)
        fast = _row_reduce_shape(mx, r.axis, self.T)
        digits = _digit_reduce_shape(mx, r.axis, self.T)
        if fast is None and digits is not None:
            self.sync()
            self.digit_reduce(r, arr, mx, xt, rt, digits, out, acc, load, store)
        elif fast is not None:
            slots, slot_of, valid, row_of, team = fast
            parts = self._parts(acc, (xt.numel // xt.shape[-1]) * max(team // 32, 1)) if team > 32 else ""
            self.sync()
            self.text(self.ops.row_reduce(src=arr, values=mx.values, slots=slots, slot_of=slot_of, valid=valid,
                                          row_of=row_of, team=team, rows=xt.numel // xt.shape[-1], parts=parts,
                                          **common))
        else:
            buf = self.stage_array(arr, mx, xt)
            self.sync()
            length = xt.shape[r.axis]
            inner = math.prod(xt.shape[r.axis + 1:])
            outs = rt.numel
            group = _team_size(self.T, outs, length)
            parts = self._parts(acc, self.T // 32) if group > 32 else ""
            self.text(self.ops.team_reduce(src=buf, outs=outs, length=length, inner=inner, group=group,
                                           parts=parts, **common))
        self.pending = True
        return out

    def digit_reduce(self, r, arr, m, xt, rt, digits, out, acc, load, store) -> None:
        """Reduce a tile held under a task mapping along `r.axis` without staging it.

        Each thread folds its values that differ only along the axis; lanes that differ only
        in the axis's thread digits combine by butterfly shuffles; warps, through shared memory."""
        slot_digits, intra, inter = digits
        slots = math.prod(e for e, _ in slot_digits)
        op = f"tl::{r.op.capitalize()}()"
        ident = ctype.identity(r.op, xt.dtype)

        def slot_of(v: str) -> str:
            terms, stride = [], 1
            for e, st in slot_digits:
                terms.append(cx.mul(cx.mod(cx.div(v, st), e), stride))
                stride *= e
            return cx.add(*terms)

        with self.scope():
            self.remark(f"{r.op} along axis {r.axis}: in-thread, then lanes {[st for _, st in intra]} "
                      f"by shuffles{', then warps ' + str([st // 32 for _, st in inter]) if inter else ''}")
            self.line(f"{acc} p[{slots}];")
            with self.scope(f"for (int s = 0; s < {slots}; ++s)", "#pragma unroll"):
                self.line(f"p[s] = {ident};")
            with self.scope(f"for (int v = 0; v < {m.values}; ++v)", "#pragma unroll"):
                self.line(f"p[{slot_of('v')}] = {op}(p[{slot_of('v')}], {load % (arr + '[v]')});")
            for e, st in intra:
                mask = st
                while mask < st * e:
                    with self.scope(f"for (int s = 0; s < {slots}; ++s)", "#pragma unroll"):
                        self.line(f"p[s] = {op}(p[s], __shfl_xor_sync(0xffffffffu, p[s], {mask}));")
                    mask *= 2
            lead = " && ".join(f"{cx.mod(cx.div('tid', st), e)} == 0" for e, st in intra) or "true"
            nw = math.prod(e for e, _ in inter)
            parts = self._parts(acc, rt.numel * nw) if inter else None
            with self.scope(f"if ({lead})"):
                wa = cx.add(*(cx.mul(cx.mod(cx.div("tid", st), e), math.prod(x for x, _ in inter[:i]))
                              for i, (e, st) in enumerate(inter)))
                for k in range(slots):
                    v, rest = 0, k
                    for e, st in slot_digits:
                        v += (rest % e) * st
                        rest //= e
                    coords, _ = m.coords("tid", str(v))
                    coords[r.axis] = "0"
                    o = cx.row_major_offset(coords, rt.shape)
                    if inter:
                        self.line(f"{parts}[({o}) * {nw} + {wa}] = p[{k}];")
                    else:
                        self.line(f"{out}[{o}] = {store % f'p[{k}]'};")
            if inter:
                self.barrier()
                with self.scope(f"for (int o = tid; o < {rt.numel}; o += {self.T})"):
                    self.line(f"{acc} q = {parts}[o * {nw}];")
                    self.line(f"for (int w = 1; w < {nw}; ++w) q = {op}(q, {parts}[o * {nw} + w]);")
                    self.line(f"{out}[o] = {store % 'q'};")

    def _parts(self, acc: str, n: int) -> str:
        return self.scratch(n * 8, acc, "tl_parts")

    # ------------------------------------------------------------------ copies
    def visit_Copy(self, s: N.Copy) -> None:
        if id(s) in self.ring_ptr:
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
            self.visit_Assign(N.Assign(dst.name, N.Cast(N.TileRef(src.name), dt.dtype), False, s.loc))
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

    def window(self, ref: N.GlobalRef, shape: tuple[int, ...]) -> "Window":
        p = self.tk.tensor(ref.tensor)
        full = (1,) * (len(p.dims) - len(shape)) + tuple(shape)
        w = self.fresh("w")
        starts = []
        for i, (idx, ext) in enumerate(zip(ref.indices, full)):
            v = self.ex.scalar(idx)
            name = f"{w}_{i}"
            self.line(f"const long long {name} = (long long)({v.code}) * {ext};")
            starts.append(name)
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
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

    def _runs(self, m: M.Mapping, run: int, w: "Window", vector, scalar) -> None:
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

    def _load_elem(self, w: "Window", c: list[str], off: str, dt: DType) -> str:
        """One in-bounds element of the window at tile coordinate `c`, converted to `dt` (storage)."""
        p = w.tensor
        if p.dtype.is_packed:
            q = self._packed(w, c)
            return ctype.from_compute(ctype.cast(q, "int", dt), dt)
        return ctype.convert(f"{cname(p.name)}[{off}]", p.dtype, dt)

    def _packed(self, w: "Window", c: list[str]) -> str:
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

    def store_global_from_shared(self, name: str, ref: N.GlobalRef) -> None:
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

    # ------------------------------------------------------------------ gemm
    def visit_Gemm(self, s: N.Gemm) -> None:
        with self.scope():
            ops = {}
            in_registers = {i.role for i in self.plan.layout.instrs(s) if i.name == "mov"}
            for x, role in ((s.a, "A"), (s.b, "B")):
                t = self.tk.tiles[x.name]
                if role in in_registers:  # held as the mma fragment the plan gave it: read in place
                    ops[x.name] = (None, None)
                elif x.name in self.plan.layouts:  # shared tiles, and register tiles kept in shared memory
                    ops[x.name] = (self.tile_ptr(x.name), self.plan.layouts[x.name])
                else:
                    if not self.staged:
                        self.barrier()
                    ops[x.name] = (self.stage(x.name), row_major(t.shape))
            self.sync()
            mma = self.plan.mma.get(id(s))
            wg = self.plan.wgmma.get(id(s))
            if wg is not None:
                self.gemm_wgmma(s, wg, ops)
            elif mma is not None:
                self.gemm_mma(s, mma, ops)
            else:
                self.gemm_simt(s, ops)

    def gemm_simt(self, s: N.Gemm, ops) -> None:
        acc = self.tk.tiles[s.acc.name]
        a = self.tk.tiles[s.a.name]
        m = self.mapping(s.acc.name)
        k = a.shape[0] if s.trans_a else a.shape[1]
        (ap, al), (bp, bl) = ops[s.a.name], ops[s.b.name]
        self.line(f"float sum[{m.values}];")
        with self.scope(f"for (int v = 0; v < {m.values}; ++v)", "#pragma unroll"):
            self.line("sum[v] = 0.0f;")
        with self.scope(f"for (int kk = 0; kk < {k}; ++kk)"):
            with self.values(m) as (i, j):
                av = ctype.to_compute(f"{ap}[{al.offset(['kk', i] if s.trans_a else [i, 'kk'])}]", a.dtype)
                bv = ctype.to_compute(f"{bp}[{bl.offset([j, 'kk'] if s.trans_b else ['kk', j])}]", a.dtype)
                self.line(f"sum[v] += {av} * {bv};")
        with self.values(m) as _:
            v = ctype.rounded(f"{ctype.to_compute(f'{cname(s.acc.name)}[v]', acc.dtype)} + sum[v]", acc.dtype)
            self.line(f"{cname(s.acc.name)}[v] = {ctype.from_compute(v, acc.dtype)};")

    def gemm_mma(self, s: N.Gemm, mma, ops) -> None:
        til = mma.tiling
        (ap, al), (bp, bl) = ops[s.a.name], ops[s.b.name]
        mi, ni = til.mi, til.ni
        m0 = f"warp_m * {mi * 16} + i * 16"
        n0 = f"warp_n * {ni * 8} + j * 16"
        a_off = b_off = b_off2 = None
        # lane l supplies the row address of 8x8 matrix l / 8 (see the fragment table in plan.py's notes)
        if al is not None and s.trans_a:  # a is stored K x M: rows of the stored tile are k
            a_off = al.offset(["kk + (lane / 16) * 8 + lane % 8", f"{m0} + ((lane / 8) % 2) * 8"])
        elif al is not None:
            a_off = al.offset([f"{m0} + lane % 16", "kk + (lane / 16) * 8"])
        nlast = f"warp_n * {ni * 8} + {(ni - 1) * 8}"
        if bl is not None and s.trans_b:  # b is stored N x K
            b_off = bl.offset([f"{n0} + (lane / 16) * 8 + lane % 8", "kk + ((lane / 8) % 2) * 8"])
            b_off2 = bl.offset([f"{nlast} + lane % 8", "kk + ((lane / 8) % 2) * 8"])
        elif bl is not None:  # b is stored K x N
            b_off = bl.offset(["kk + lane % 16", f"{n0} + (lane / 16) * 8"])
            b_off2 = bl.offset(["kk + lane % 16", nlast])
        elem = ctype.storage(self.tk.tiles[s.a.name].dtype)
        if til.wk > 1:
            self.partial[s.acc.name] = til.wk
        self.text(self.ops.gemm_mma(elem=elem, acc=cname(s.acc.name), k=_gemm_k(self.tk, s), mi=mi, ni=ni,
                                    warps_n=til.wn, warps_mn=til.wm * til.wn, wk=til.wk, a_ptr=ap, a_off=a_off and cx.paren(a_off), a_trans=s.trans_a,
                                    b_ptr=bp, b_off=b_off and cx.paren(b_off), b_off_x2=b_off2 and cx.paren(b_off2),
                                    b_trans=not s.trans_b, a_regs=None if al is not None else cname(s.a.name),
                                    b_regs=None if bl is not None else cname(s.b.name)))

    def gemm_wgmma(self, s: N.Gemm, wg, ops) -> None:
        """One wgmma group per gemm: a fence (the accumulator was written by other code), every
        (k-step, instruction) of this warpgroup, commit; then wait until at most `lag` groups
        are pending (1 inside a pipeline that keeps one in flight, else 0)."""
        til = wg.tiling
        elem = ctype.storage(self.tk.tiles[s.a.name].dtype)
        da, db, k = wg.a_desc, wg.b_desc, _gemm_k(self.tk, s)
        name, code = W.instruction(til.inst_n, elem, not da.k_major, not db.k_major)
        self.wgmma_helpers[name] = code
        lag = next((p.lag for p in self.plan.pipelines.values() if any(s is c for c in p.consumers)), 0)
        (ap, _), (bp, _) = ops[s.a.name], ops[s.b.name]
        issues = []
        for kk in range(k // 16):
            for i in range(til.mi):
                for j in range(til.nsplit):
                    issues.append((f"{(i * til.ni + j * (til.inst_n // 8)) * 4}",
                                   da.starts[i][kk] >> 4, db.starts[j][kk] >> 4))
        self.text(self.ops.gemm_wgmma(
            name=name, acc=cname(s.acc.name), a_ptr=ap, b_ptr=bp, a_high=f"{da.high:#x}ull",
            b_high=f"{db.high:#x}ull", a_wg=da.wg_stride >> 4, b_wg=db.wg_stride >> 4, wgn=til.wgn,
            issues=issues, lag=lag, values=self.mapping(s.acc.name).values,
            shape=f"{til.mi} x m64n{til.inst_n}k16 x {til.nsplit}, {k // 16} k-steps"))

    # ------------------------------------------------------------------ dequant
    def visit_Dequant(self, s: N.Dequant) -> None:
        """w = (q - zero) * scale by group, as if in f32, rounded to the tile's dtype.

        Runs of `run` consecutive fields that start on a byte and fill a power-of-two number of
        bytes (1/2/4/8-bit fields) are loaded at once (up to 16 bytes); 4-bit (and, for f16, 8-bit)
        fields into an f16/bf16 tile become pairs by bit tricks and two packed fmas (`_pair_run`),
        others are converted with the 2^23 magic number in f32.  Other elements (row ends, odd
        widths, unaligned rows) take the per-element path."""
        if self.tk.tensor(s.src.tensor).storage == "packed":
            self.dequant_packed(s)
            return
        t = self.tk.tiles[s.dst.name]
        shared = t.scope == "shared"
        if shared:
            self.barrier()
        self.global_access(write=False)
        p = self.tk.tensor(s.src.tensor)
        bits = p.dtype.bits
        run = chunk = self.plan.vector(s)
        m = M.Flat(tuple(t.shape), self.T, run) if shared else self.mapping(s.dst.name)
        while chunk * bits > 128 and chunk % 2 == 0:  # runs longer than 16 bytes: several loads
            chunk //= 2
        nbytes = chunk * bits // 8 if (chunk * bits) % 8 == 0 else 0
        fast = bits in (1, 2, 4, 8) and nbytes in (1, 2, 4, 8, 16) and chunk > 1
        sp = self.tk.tensor(s.scale)
        zp = self.tk.tensor(s.zero) if s.zero else None
        with self.scope():
            w = self.window(s.src, t.shape)
            g = self.ex.scalar(s.group)
            self.line(f"const long long group = {g.code};")
            row_bytes = w.strides[-2] if len(w.dims) > 1 else None
            ring = self.ring_ptr.get(id(s))  # the packed window prefetched into shared memory (aligned rows)
            if fast:
                cond = f"tl::aligned_to({cname(p.name)}, {nbytes})"
                if row_bytes is not None:
                    cond += f" && {row_bytes} % {nbytes} == 0"
                self.line(f"const bool vec = {'true' if ring else cond};")
            with self.value_runs(m, run) as names:
                self.line(f"const bool row = {w.inbounds(names, skip_last=True)};")
                self.line(f"const long long col = {w.coord(len(w.dims) - 1, names)};")
                if fast:
                    with self.scope(f"if (vec && row && col >= 0 && col + {run - 1} < {w.dims[-1]})"):
                        for c0 in range(0, run, chunk):
                            cc, col = _at(names, c0), "col" if c0 == 0 else f"(col + {c0})"
                            if ring:
                                rows = cx.row_major_offset(names[:-1], tuple(t.shape[:-1])) if len(t.shape) > 1 \
                                    else "0"
                                src = (f"{ring} + ({rows}) * {t.shape[-1] * bits // 8}", f"({cc[-1]}) * {bits} / 8")
                            else:
                                src = (f"reinterpret_cast<const unsigned char*>({cname(p.name)}) + "
                                       f"{w.offset(names, skip_last=True)}", f"{col} * {bits} / 8")
                            with self.scope() if run > chunk else nullcontext():
                                self._dequant_run(s, w, cc, chunk, bits, nbytes, sp, zp, src, col, c0)
                    head = "else"
                else:
                    head = ""
                with self.scope(head):  # a rolled loop: the cold path stays small (and quick to compile)
                    if not shared:
                        self.line(f"float w[{run}];  // local memory, on this path only")
                    with self.scope(f"for (int u = 0; u < {run}; ++u)", "#pragma unroll 1"):
                        cu = names[:-1] + [f"{names[-1]} + u"]
                        self.line("float x = 0.0f;")
                        with self.scope(f"if (row && tl::in_range(col + u, {w.dims[-1]}))"):
                            q = self._packed(w, cu) if p.dtype.is_packed else \
                                ctype.to_compute(f"{cname(p.name)}[{w.offset(cu)}]", p.dtype)
                            self.line("const long long gi = (col + u) / group;")
                            zero = self._side(zp, w, names, "gi") if zp is not None else "0.0f"
                            self.line(f"x = ((float)({q}) - {zero}) * {self._side(sp, w, names, 'gi')};")
                        if shared:
                            val = ctype.from_compute(ctype.rounded("x", t.dtype), t.dtype)
                            off = self.plan.layouts[s.dst.name].offset(cu)
                            self.line(f"{self.tile_ptr(s.dst.name)}[{off}] = {val};")
                        else:
                            self.line("w[u] = x;")
                    if not shared:
                        self._store_run(s, names, run)
        if shared:
            self.barrier()

    def dequant_packed(self, s: N.Dequant) -> None:
        """Dequantize one tile of a tensor stored in the plan's packed order (layout/packing.py) into the
        register tile it was ordered for: each thread loads its runs whole (run c at byte (c * threads
        + tid) * run bytes of the tile: one coalesced stretch per run) and dequantizes them in registers.

        Tiles inside the tensor whose scales (and zero points) pairs can apply take the fast path:
        every value's row and group is the thread's base plus a constant (task mappings add thread and
        value parts), so each distinct (row, group) scale is loaded once per tile and every pair of
        fields is one PRMT/LOP3 and two packed fmas. Other tiles (the tensor's edges, whose padding
        fields give 0 as in the interpreter), widths and scales go field by field in f32."""
        t = self.tk.tiles[s.dst.name]
        p = self.tk.tensor(s.src.tensor)
        pl = self.plan.layout.packed_layout(p.name)
        m = self.mapping(s.dst.name)
        bits, run, rb = pl.bits, pl.run, pl.run_bytes
        signed = "true" if p.dtype.is_signed else "false"
        sp = self.tk.tensor(s.scale)
        zp = self.tk.tensor(s.zero) if s.zero else None
        pairs = _pair_type(t.dtype, bits, 4) if rb % 16 == 0 else None
        groups = _packed_groups(pl, s.group.value if isinstance(s.group, N.Const) else None) if pairs else None
        self.global_access(write=False)
        with self.scope():
            w = self.window(s.src, t.shape)
            self.line(f"const long long group = {self.ex.scalar(s.group).code};")
            ring = self.ring_ptr.get(id(s))
            if ring is None:
                tiles_k = f"(({w.dims[1]} + {t.shape[1] - 1}) / {t.shape[1]})"
                tile = f"({w.starts[0]} / {t.shape[0]}) * {tiles_k} + {w.starts[1]} / {t.shape[1]}"
                self.line(f"const unsigned char* const base = reinterpret_cast<const unsigned char*>({cname(p.name)}) "
                          f"+ ({tile}) * {pl.block_bytes};")
            else:
                self.line(f"const unsigned char* const base = {ring};")
            if groups is None:
                self._packed_generic(s, w, pl, signed, sp, zp)
                return
            self.line(f"bool fast = {w.starts[0]} + {t.shape[0]} <= {w.dims[0]} && "
                      f"{w.starts[1]} + {t.shape[1]} <= {w.dims[1]};")
            self._packed_fast(s, w, pl, pairs, groups, signed, sp, zp)
            with self.scope("if (!fast)"):
                self._packed_generic(s, w, pl, signed, sp, zp)

    def _packed_fast(self, s, w: "Window", pl, pairs: str, groups: dict, signed: str, sp, zp) -> None:
        """Scales (and zero offsets) of the tile's distinct (row, group) pairs, loaded once; then, if they
        all apply as pairs, every run's pairs dequantized straight into the tile's registers."""
        m = self.mapping(s.dst.name)
        (r0, c0), _ = m.coords("tid", "0")
        self.line(f"const int srow = (int){w.starts[0]} + {r0};")
        self.line(f"const int scol = (int)(({w.starts[1]} + {c0}) / group);")
        off = f" + {1 << (pl.bits - 1)}.0f" if signed == "true" else ""
        keys = sorted(set(groups.values()))
        for n, (dr, dg) in enumerate(keys):
            raw = f"{cname(sp.name)}[(srow + {dr}) * {cname(sp.name)}st0 + (scol + {dg}) * {cname(sp.name)}st1]"
            self.line(f"const float sc{n} = {ctype.to_compute(raw, sp.dtype) if sp.dtype.is_float else f'(float){raw}'};")
            if zp is not None:
                rawz = f"{cname(zp.name)}[(srow + {dr}) * {cname(zp.name)}st0 + (scol + {dg}) * {cname(zp.name)}st1]"
                self.line(f"const float zp{n} = {ctype.to_compute(rawz, zp.dtype) if zp.dtype.is_float else f'(float){rawz}'};")
            checks = ([f"tl::pair_scale_ok<{pairs}>(sc{n})"] if sp.dtype != self.tk.tiles[s.dst.name].dtype else []) + \
                ([f"tl::pair_zero_ok<{pairs}>(zp{n})"] if zp is not None else [])
            if checks:
                self.line(f"fast = fast && {' && '.join(checks)};")
        with self.scope("if (fast)"):
            for n in range(len(keys)):
                z = f"zp{n}" if zp is not None else "0.0f"
                self.line(f"const unsigned s2_{n} = tl::splat2<{pairs}>(sc{n}), "
                          f"m2_{n} = tl::splat2<{pairs}>(-(tl::PairMagic<{pairs}>::m + {z}{off}));")
            per_word = 32 // pl.bits
            for c in range(m.values // pl.run):
                self.line(f"const tl::Vec<unsigned int, {pl.run_bytes // 4}> q{c} = *reinterpret_cast<const "
                          f"tl::Vec<unsigned int, {pl.run_bytes // 4}>*>(base + ({c * m.threads} + tid) * {pl.run_bytes});")
                for u in range(0, pl.run, 2):
                    v = c * pl.run + u
                    n = keys.index(groups[v])
                    self.line(f"tl::set_pair({cname(s.dst.name)}, {v}, tl::dequant_pair<{pairs}, {pl.bits}, {signed}>("
                              f"q{c}.v[{u // per_word}], {(u % per_word) // 2}, m2_{n}, s2_{n}));")

    def _packed_generic(self, s, w: "Window", pl, signed: str, sp, zp) -> None:
        """Field by field in f32 with clipped scale indices; fields past the tensor's edges give 0."""
        t = self.tk.tiles[s.dst.name]
        m = self.mapping(s.dst.name)
        zero = ctype.from_compute(ctype.literal(0, t.dtype), t.dtype)
        with self.values(m) as c:
            self.line(f"const unsigned char* const q = base + ((v / {pl.run}) * {m.threads} + tid) * {pl.run_bytes};")
            self.line(f"const long long gi = tl::min_ll({w.starts[1]} + {c[1]}, {w.dims[1]} - 1) / group;")
            self.line(f"const float sc = {self._side_at(sp, f'{w.starts[0]} + {c[0]}', 'gi')};")
            self.line(f"const float zp = {self._side_at(zp, f'{w.starts[0]} + {c[0]}', 'gi') if zp is not None else '0.0f'};")
            f = f"(float)tl::load_packed<{pl.bits}, {signed}>(q, v % {pl.run})"
            val = ctype.from_compute(ctype.rounded(f"(({f}) - zp) * sc", t.dtype), t.dtype)
            self.line(f"{cname(s.dst.name)}[v] = ({w.inbounds(c)}) ? {val} : {zero};")

    def _side_at(self, p: N.TensorParam, row: str, gi: str) -> str:
        """Element (row, gi) of a 2-d scale/zero tensor, the row clipped to its dims (as the interpreter)."""
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
        v = f"{cname(p.name)}[tl::min_ll({row}, {dims[0]} - 1) * {cname(p.name)}st0 + tl::min_ll({gi}, {dims[1]} - 1) * {cname(p.name)}st1]"
        return f"(float){ctype.to_compute(v, p.dtype)}" if not p.dtype.is_float else ctype.to_compute(v, p.dtype)

    def _store_run(self, s: N.Dequant, names: list[str], run: int, v0: int = 0) -> None:
        """The run's values, f32 in `w[]`, rounded to the tile's dtype and stored (registers: from v + v0)."""
        t = self.tk.tiles[s.dst.name]
        for u in range(run):
            val = ctype.from_compute(ctype.rounded(f"w[{u}]", t.dtype), t.dtype)
            if t.scope == "shared":
                off = self.plan.layouts[s.dst.name].offset(_at(names, u))
                self.line(f"{self.tile_ptr(s.dst.name)}[{off}] = {val};")
            else:
                self.line(f"{cname(s.dst.name)}[v + {v0 + u}] = {val};")

    def _dequant_run(self, s: N.Dequant, w: "Window", c: list[str], run: int, bits: int, nbytes: int,
                     sp: N.TensorParam, zp: N.TensorParam | None, src: tuple[str, str], col: str = "col",
                     v0: int = 0) -> None:
        """`run` fields from one `nbytes`-byte load (the run starts on a byte: col * bits % 8 == 0)
        at `src` = (row's first byte, byte offset in the row): global memory or a ring stage; they are
        the tile's elements at `c` (column `col` of W), register values v + v0 onwards."""
        p = w.tensor
        base, at = src
        if nbytes >= 4:
            self.line(f"const tl::Vec<unsigned int, {nbytes // 4}> q = *reinterpret_cast<const tl::Vec<unsigned int, "
                      f"{nbytes // 4}>*>({base} + {at});")
            word = lambda u: f"q.v[{u * bits // 32}]"  # noqa: E731
        else:
            ct = "unsigned char" if nbytes == 1 else "unsigned short"
            self.line(f"const unsigned int q0 = *reinterpret_cast<const {ct}*>({base} + {at});")
            word = lambda u: "q0"  # noqa: E731
        group = s.group.value if isinstance(s.group, N.Const) else None
        shared_group = group is not None and group % run == 0
        if shared_group:  # the whole run is in one group: one scale (and zero) for it
            self.line(f"const long long gi = {col} / group;")
            self.line(f"const float sc = {self._side(sp, w, c, 'gi')};")
            self.line(f"const float zp = {self._side(zp, w, c, 'gi') if zp is not None else '0.0f'};")
        dt = self.tk.tiles[s.dst.name].dtype
        pairs = _pair_type(dt, bits, nbytes) if shared_group else None
        fallback = nullcontext()
        if pairs is not None:  # runtime checks where the pair path could differ from f32 (see the prelude)
            checks = ([f"tl::pair_zero_ok<{pairs}>(zp)"] if zp is not None else []) + \
                ([f"tl::pair_scale_ok<{pairs}>(sc)"] if sp.dtype != dt else [])
            if not checks:
                self._pair_run(s, c, run, bits, nbytes, pairs, v0)
                return
            with self.scope(f"if ({' && '.join(checks)})"):
                self._pair_run(s, c, run, bits, nbytes, pairs, v0)
            fallback = self.scope("else")
        with fallback:
            self.line(f"float w[{run}];")
            signed = "true" if p.dtype.is_signed else "false"
            for u in range(run):
                f = f"tl::field_to_f32<{bits}, {signed}>({word(u)}, {(u * bits) % 32})"
                if shared_group:
                    self.line(f"w[{u}] = ({f} - zp) * sc;")
                else:
                    self.line(f"w[{u}] = ({f} - {self._side(zp, w, c, f'({col} + {u}) / group') if zp else '0.0f'})"
                              f" * {self._side(sp, w, c, f'({col} + {u}) / group')};")
            self._store_run(s, c, run, v0)

    def _pair_run(self, s: N.Dequant, c: list[str], run: int, bits: int, nbytes: int, pairs: str, v0: int) -> None:
        """The run as f16/bf16 pairs (prelude `dequant_pairs`), stored 16 bytes at a time into a shared
        tile whose rows keep 8 consecutive elements adjacent, else by halves."""
        t = self.tk.tiles[s.dst.name]
        signed = "true" if self.tk.tensor(s.src.tensor).dtype.is_signed else "false"
        off = f" + {1 << (bits - 1)}.0f" if signed == "true" else ""
        self.line(f"unsigned int h[{run // 2}];")
        self.line(f"tl::dequant_pairs<{pairs}, {bits}, {signed}, {nbytes // 4}>(h, q.v, "
                  f"tl::splat2<{pairs}>(-(tl::PairMagic<{pairs}>::m + zp{off})), tl::splat2<{pairs}>(sc));")
        if t.scope == "register":
            for u in range(run):
                self.line(f"{cname(s.dst.name)}[v + {v0 + u}] = tl::pair_half<{pairs}>(h[{u // 2}], {u % 2});")
            return
        lay = self.plan.layouts[s.dst.name]
        wide = lay.contiguous_run(8) and run % 8 == 0
        for u in range(0, run, 8 if wide else 2):
            if wide:
                self.line(f"*reinterpret_cast<uint4*>({self.tile_ptr(s.dst.name)} + {lay.offset(_at(c, u))}) = "
                          f"make_uint4(h[{u // 2}], h[{u // 2 + 1}], h[{u // 2 + 2}], h[{u // 2 + 3}]);")
            else:
                for e in (0, 1):
                    self.line(f"{self.tile_ptr(s.dst.name)}[{lay.offset(_at(c, u + e))}] = "
                              f"tl::pair_half<{pairs}>(h[{u // 2}], {e});")

    def _side(self, p: N.TensorParam, w: "Window", c: list[str], gi: str) -> str:
        """An element of a scale/zero tensor beside W (indices clipped to its dims, as the interpreter does)."""
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
        terms = []
        for i, d in enumerate(dims):
            coord = w.coord(i, c) if i < len(dims) - 1 else gi
            terms.append(f"tl::min_ll({coord}, {d} - 1) * {cname(p.name)}st{i}")
        v = f"{cname(p.name)}[{' + '.join(terms)}]"
        return f"(float){ctype.to_compute(v, p.dtype)}" if not p.dtype.is_float else ctype.to_compute(v, p.dtype)

    # ------------------------------------------------------------------ loops
    def visit_For(self, s: N.For) -> None:
        lo, hi = self.ex.scalar(s.start), self.ex.scalar(s.stop)
        pipe = self.plan.pipelines.get(id(s))
        var = cname(s.var)
        self.kinds[s.var] = "int"
        reads, writes = _global_accesses(s.body)
        with self.scope():
            self.line(f"const int lo = {lo.code}, hi = {hi.code};")
            if pipe is None:
                with self.scope(f"for (int {var} = lo; {var} < hi; ++{var})"):
                    self.global_reads |= reads  # the previous iteration's accesses
                    self.global_writes |= writes
                    self.stmts(s.body)
                self.global_reads |= reads
                self.global_writes |= writes
                return
            if id(s) in self.plan.mbarriers:
                self.pipeline_tma(s, pipe, var)
                return
            S, A = pipe.stages, pipe.ahead
            self.remark(f"software pipeline: {S} stages; loads for iteration k + {A} are in flight "
                      f"while iteration k computes" + (" (and iteration k - 1's wgmma)" if pipe.lag else ""))
            lagged = self._lagged_accumulators(pipe)
            self.fence_registers(lagged)
            rings = [(r, self.plan.rings[id(r)]) for r in pipe.ringed]
            for r, ring in rings:
                rt = self.ring_type(r)
                self.line(f"{rt}* const {ring.name}_stages = reinterpret_cast<{rt}*>(tl_smem + "
                          f"{self.plan.smem_offsets[ring.name]});  // raw global window of line "
                          f"{r.loc.line if r.loc else '?'}, {S} stages of {ring.stage_elems} elements")
            with self.scope(f"for (int stage = 0; stage < {A}; ++stage)"):
                with self.scope():
                    self.line(f"const int {var} = lo + stage;")
                    with self.scope(f"if ({var} < hi)"):
                        self.producers(pipe, "stage")
                self.line("tl::cp_async_commit();")
            with self.scope(f"for (int {var} = lo; {var} < hi; ++{var})"):
                self.line(f"const int it = {var} - lo;")
                self.line(f"tl::cp_async_wait<{A - 1}>();  // iteration it's tiles have landed (this thread's part)")
                self.out.add(cir.Barrier(fence=self.plan.wgmma, note="... everyone's" + (
                    ", visible to wgmma (the async proxy)" if self.plan.wgmma else "") +
                    "; iteration it-1 is done reading"))
                self.pending = self.global_reads = self.global_writes = False  # that barrier orders it-1's accesses
                with self.scope():
                    self.line(f"const int next = {var} + {A};")
                    with self.scope("if (next < hi)"):
                        self.line(f"const int {var} = next;")
                        self.producers(pipe, f"(it + {A}) % {S}")
                    self.line("tl::cp_async_commit();")
                self.stage_pointers(pipe, f"it % {S}")
                for r, ring in rings:
                    self.line(f"const {self.ring_type(r)}* const {ring.name} = {ring.name}_stages + "
                              f"(it % {S}) * {ring.stage_elems};")
                    self.ring_ptr[id(r)] = ring.name
                self.stmts(pipe.consumers)
                for r, _ in rings:
                    del self.ring_ptr[id(r)]
                self.shadow.clear()
            self.drain_wgmma(pipe, lagged)
            self.line("tl::cp_async_wait<0>();")
            self.barrier()

    def pipeline_tma(self, s: N.For, pipe, var: str) -> None:
        """A pipeline filled by TMA: thread 0 loads iteration it's tiles into stage it % S, the bytes
        landing on that stage's mbarrier, which everyone waits on (phase parity (it / S) & 1).  Refills
        are issued after an iteration's consumers and a barrier, into the stage of iteration
        it - lag (done with it by then: its wgmma group has completed in every warpgroup).

        (Tried: an "empty" mbarrier per stage released by each warp instead of the barrier; on the
        H200 it was no faster at 128x256 tiles and 13% slower at 128x128.)"""
        S, A = pipe.stages, pipe.tma_ahead
        self.remark(f"software pipeline, TMA: {S} stages; loads run {A} iterations ahead, one mbarrier per stage")
        self.line(f"unsigned long long* const tl_bars = reinterpret_cast<unsigned long long*>(tl_smem + "
                  f"{self.plan.mbarriers[id(s)]});")
        with self.scope("if (tid == 0)"):
            self.line(f"for (int i = 0; i < {S}; ++i) tl::mbar_init(&tl_bars[i], 1);")
            self.line("tl::fence_mbar_init();")
        self.out.add(cir.Barrier())
        self.pending = self.global_reads = self.global_writes = False
        lagged = self._lagged_accumulators(pipe)
        self.fence_registers(lagged)
        with self.scope("if (tid == 0)"):
            with self.scope(f"for (int stage = 0; stage < {A}; ++stage)"):
                self.line(f"const int {var} = lo + stage;")
                with self.scope(f"if ({var} < hi)"):
                    self.tma_producers(pipe, "stage")
        with self.scope(f"for (int {var} = lo; {var} < hi; ++{var})"):
            self.line(f"const int it = {var} - lo;")
            self.line(f"tl::mbar_wait(&tl_bars[it % {S}], (it / {S}) & 1);  // iteration it's tiles have landed")
            self.stage_pointers(pipe, f"it % {S}")
            self.stmts(pipe.consumers)
            # no proxy fence: consumers fence their own writes
            self.out.add(cir.Barrier(note="every thread is done with iteration it (and it - lag's wgmma)"))
            self.global_reads = self.global_writes = False
            with self.scope("if (tid == 0)"):
                self.line(f"const int next = {var} + {A};")
                with self.scope("if (next < hi)"):
                    self.line(f"const int {var} = next;")
                    self.tma_producers(pipe, f"(it + {A}) % {S}")
        self.drain_wgmma(pipe, lagged)
        self.barrier()
        self.line(f"if (tid == 0) for (int i = 0; i < {S}; ++i) tl::mbar_inval(&tl_bars[i]);")

    def _lagged_accumulators(self, pipe) -> list[str]:
        """Accumulators of the pipeline's wgmmas when one wgmma group stays in flight across iterations."""
        if not pipe.lag:
            return []
        return list(dict.fromkeys(g.acc.name for g in _walk(pipe.consumers) if id(g) in self.plan.wgmma))

    def fence_registers(self, accs: list[str]) -> None:
        """Make the accumulators opaque here: ptxas must not rematerialize their values between wgmmas."""
        for acc in accs:
            self.line(f"tl::fence_regs<{self.mapping(acc).values}>({cname(acc)});")

    def drain_wgmma(self, pipe, lagged: list[str]) -> None:
        """After a pipeline whose wgmma groups lag: wait for the last one, fence its accumulators."""
        if pipe.lag:
            self.line("tl::wgmma_wait<0>();  // the last iteration's wgmma group")
        self.fence_registers(lagged)

    def stage_pointers(self, pipe, stage: str) -> None:
        """Each producer's tile name bound to its slot in the ring of `stage`."""
        for c in pipe.producers:
            n = c.dst.name
            st = ctype.storage(self.tk.tiles[n].dtype)
            self.line(f"{st}* const {cname(n)} = {n}_stages + ({stage}) * {self.plan.layouts[n].cosize};")

    def tma_producers(self, pipe, stage: str) -> None:
        """Thread 0: expect the stage's bytes on its mbarrier, then one TMA box per column block of each tile."""
        for let in pipe.lets:
            self.stmt(let)
        self.line(f"unsigned long long* const bar = &tl_bars[{stage}];")
        self.line(f"tl::mbar_expect_tx(bar, {sum(self.plan.tma[c.dst.name].bytes for c in pipe.producers)});")
        for c in pipe.producers:
            n, ld = c.dst.name, self.plan.tma[c.dst.name]
            self.comment(c)
            with self.scope():
                w = self.window(c.src, self.tk.tiles[n].shape)
                st = ctype.storage(self.tk.tiles[n].dtype)
                self.line(f"{st}* const dst = {n}_stages + ({stage}) * {self.plan.layouts[n].cosize};")
                name, _ = TMA.copy_helper(ld.rank)
                with self.scope(f"for (int j = 0; j < {ld.blocks}; ++j)") if ld.blocks > 1 else nullcontext():
                    col = f"(int)({w.starts[-1]} + j * {ld.block})" if ld.blocks > 1 else f"(int){w.starts[-1]}"
                    coords = [col] + [f"(int){x}" for x in reversed(w.starts[:-1])]
                    off = f" + j * {ld.block_elems}" if ld.blocks > 1 else ""
                    self.line(f"tl::{name}(dst{off}, &{ld.param}, bar, {', '.join(coords)});")

    def producers(self, pipe, stage: str) -> None:
        saved = dict(self.ptr)
        for let in pipe.lets:
            self.stmt(let)
        for c in pipe.producers:
            n = c.dst.name
            self.ptr[n] = f"({n}_stages + ({stage}) * {self.plan.layouts[n].cosize})"
            self.comment(c)
            with self.scope():
                self.load_global_shared(c, asynchronous=True)
        for r in pipe.ringed:
            ring = self.plan.rings[id(r)]
            self.comment(r)
            with self.scope():
                self.fill_ring(r, ring, f"({ring.name}_stages + ({stage}) * {ring.stage_elems})")
        self.ptr = saved

    def ring_type(self, s: N.Copy | N.Dequant) -> str:
        return "unsigned char" if isinstance(s, N.Dequant) else ctype.storage(self.tk.tensor(s.src.tensor).dtype)

    def fill_ring(self, s: N.Copy | N.Dequant, ring: Ring, dst: str) -> None:
        """cp.async the statement's global window, as raw elements, into one ring stage.

        16-byte chunks; a chunk that crosses the row's end copies only the bytes inside (cp.async
        zero-fills the rest), rows outside copy none.  Rows that are not 16-byte aligned in
        global memory take an element-by-element path."""
        t = self.tk.tiles[s.dst.name]
        w = self.window(s.src, t.shape)
        p = w.tensor
        if p.storage == "packed":  # one tile of the packed order: a contiguous stretch of whole chunks
            n = ring.shape[0]
            tiles_k = f"(({w.dims[1]} + {t.shape[1] - 1}) / {t.shape[1]})"
            tile = f"({w.starts[0]} / {t.shape[0]}) * {tiles_k} + {w.starts[1]} / {t.shape[1]}"
            self.line(f"const unsigned char* const src = reinterpret_cast<const unsigned char*>({cname(p.name)}) "
                      f"+ ({tile}) * {n};")
            with self.scope(f"if (tl::aligned_to(src, 16))"):
                with self.scope(f"for (int j = tid; j < {n // 16}; j += {self.T})"):
                    self.line(f"tl::cp_async_16({dst} + j * 16, src + j * 16, 16);")
            with self.scope("else"):
                with self.scope(f"for (int j = tid; j < {n}; j += {self.T})"):
                    self.line(f"{dst}[j] = src[j];")
            return
        rt = self.ring_type(s)
        eb = ring.elem_bytes
        n = 16 // eb
        gptr = f"reinterpret_cast<const {rt}*>({cname(p.name)})"
        if isinstance(s, N.Dequant):  # bytes: the window starts on one (plan.py checks BK * bits % 128)
            bits = p.dtype.bits
            limit = f"(({w.dims[-1]} * {bits} + 7) / 8)"
            col0 = f"{w.starts[-1]} * {bits} / 8"
            addr = lambda c, col: f"{w.offset(c, skip_last=True)} + {col}"  # noqa: E731
            vec = f"tl::aligned_to({cname(p.name)}, 16) && {limit} % 16 == 0"
        else:
            limit = w.dims[-1]
            col0 = w.starts[-1]
            addr = lambda c, col: w.offset(c)  # noqa: E731
            vec = f"{w.dims[-1]} % {n} == 0 && tl::aligned_to({cname(p.name)}, 16)"
        self.line(f"const bool vec = {vec};")
        with self.scope("if (vec)"):
            chunks = M.Flat(tuple(ring.shape[:-1]) + (ring.row // n,), self.T, 1)
            with self.values(chunks, "j") as c:
                c = c[:-1] + [cx.mul(c[-1], n)]
                self.line(f"const long long col = {cx.add(col0, c[-1])};")
                self.line(f"const long long rem = {w.inbounds(c, skip_last=True)} && col >= 0 ? "
                          f"({limit} - col) * {eb} : 0;")
                self.line("const int nb = rem >= 16 ? 16 : rem > 0 ? (int)rem : 0;")
                self.line(f"tl::cp_async_16({dst} + {cx.row_major_offset(c, ring.shape)}, "
                          f"nb ? {gptr} + {addr(c, 'col')} : {gptr}, nb);")
        with self.scope("else"):
            zero = "0" if isinstance(s, N.Dequant) else ctype.from_compute(ctype.literal(0, p.dtype), p.dtype)
            with self.values(M.Flat(ring.shape, self.T, 1), "j", "#pragma unroll 4") as c:
                self.line(f"const long long col = {cx.add(col0, c[-1])};")
                self.line(f"{dst}[{cx.row_major_offset(c, ring.shape)}] = ({w.inbounds(c, skip_last=True)} && "
                          f"tl::in_range(col, {limit})) ? {gptr}[{addr(c, 'col')}] : {zero};")

    def copy_from_ring(self, s: N.Copy, ring: str) -> None:
        """A prefetched global -> register copy: the tile's runs read from the ring stage (up to 16 bytes
        at a time), converted; the tile then shadows the stage (see the module notes)."""
        t = self.tk.tiles[s.dst.name]
        raw = self.tk.tensor(s.src.tensor).dtype
        m = self.mapping(s.dst.name)
        run, eb = self.plan.vector(s), ctype.nbytes(raw)
        sub = min(run, 16 // eb)
        while run % sub:
            sub //= 2
        vt = f"tl::Vec<{ctype.storage(raw)}, {sub}>"
        dst = cname(s.dst.name)
        with self.scope(), self.value_runs(m, run) as names:
            off = cx.row_major_offset(names, t.shape)
            for q in range(0, run, sub):
                if sub == 1:
                    self.line(f"{dst}[v + {q}] = {ctype.convert(f'{ring}[{cx.add(off, str(q))}]', raw, t.dtype)};")
                    continue
                self.line(f"const {vt} r{q} = *reinterpret_cast<const {vt}*>({ring} + {cx.add(off, str(q))});")
                for u in range(sub):
                    self.line(f"{dst}[v + {q + u}] = {ctype.convert(f'r{q}.v[{u}]', raw, t.dtype)};")
        self.shadow[s.dst.name] = (ring, raw)


@dataclass
class Window:
    """A tile-indexed window of a global tensor: start of each dim, dims, strides (C names)."""
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


def _at(c: list[str], u: int) -> list[str]:
    """Tile coordinates `u` elements further along the last axis."""
    return c[:-1] + [c[-1] if u == 0 else f"{c[-1]} + {u}"]


def _pair_type(dt: DType, bits: int, nbytes: int) -> str | None:
    """The C type of the f16/bf16 pairs a run of whole words of `bits`-bit fields dequantizes to, if any."""
    if nbytes < 4 or not (dt.name == "f16" and bits in (4, 8) or dt.name == "bf16" and bits == 4):
        return None
    return ctype.storage(dt)


def _packed_groups(pl, group: int | None) -> dict[int, tuple[int, int]] | None:
    """For the pair path of a packed dequant: per even value v, (rows below the thread's first row, groups
    after the tile's first group) of the pair (v, v + 1), the same for every thread; None where a pair
    spans two rows or groups, or a value's group depends on the thread (then: the f32 path)."""
    m, (rows, cols) = pl.mapping, pl.block
    if group is None or not (cols % group == 0 or group % cols == 0):
        return None
    out = {}
    def grp(c: int) -> int:
        return c // group if cols % group == 0 else 0

    for v in range(0, m.values_per_thread, 2):
        key = None
        for t in range(m.num_threads):
            (ra, ca), (rb, cb), (r0, c0) = m(t, v), m(t, v + 1), m(t, 0)
            k = (ra - r0, grp(ca) - grp(c0))
            if rb != ra or cb != ca + 1 or grp(cb) != grp(ca) or key not in (None, k):
                return None
            key = k
        out[v] = key
    return out


def _gemm_k(tk: TypedKernel, s: N.Gemm) -> int:
    a = tk.tiles[s.a.name]
    return a.shape[0] if s.trans_a else a.shape[1]


def _children(e: N.Expr) -> list[N.Expr]:
    if isinstance(e, N.BinOp):
        return [e.lhs, e.rhs]
    if isinstance(e, (N.Unary, N.Cast)):
        return [e.x]
    if isinstance(e, N.Where):
        return [e.cond, e.a, e.b]
    return []


def _global_accesses(body) -> tuple[bool, bool]:
    """Whether statements (loops included) read / write global tensors."""
    reads = writes = False
    for s in _walk(body):
        if isinstance(s, N.Dequant) or isinstance(s, N.Copy) and isinstance(s.src, N.GlobalRef):
            reads = True
        if isinstance(s, N.Copy) and isinstance(s.dst, N.GlobalRef):
            writes = True
    return reads, writes


def _walk(body):
    for s in body:
        yield s
        if isinstance(s, N.For):
            yield from _walk(s.body)


def _show(e: N.Expr) -> str:
    if isinstance(e, N.Const):
        return str(e.value)
    if isinstance(e, N.Var):
        return e.name
    if isinstance(e, N.BinOp):
        if e.op == "cdiv":
            return f"cdiv({_show(e.lhs)}, {_show(e.rhs)})"
        sym = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%", "div": "/"}.get(e.op, e.op)
        return f"({_show(e.lhs)} {sym} {_show(e.rhs)})"
    return type(e).__name__


def _team_size(threads: int, outs: int, length: int) -> int:
    """Threads that cooperate on one reduction result: enough teams for the results, no idle members."""
    per_out = max(1, threads // outs)
    want = 1
    while want * 2 <= min(per_out, 32) and want < length:
        want *= 2
    if per_out >= 64 and length > 32:
        warps = threads // 32
        d = max(x for x in range(1, warps + 1) if warps % x == 0 and 32 * x <= per_out)
        return 32 * d
    return want


def _digit_reduce_shape(m: M.Mapping, axis: int, threads: int):
    """For a task mapping: (value digits kept per slot, lane digits, warp digits) along `axis`, or None.

    Digits are (extent, stride) of the value or thread index.  Lane digits must be powers of
    two within a warp (butterfly shuffles), warp digits whole warps."""
    if not isinstance(m, M.Tasked) or m.task.num_threads != threads:
        return None
    tdig, vdig = [], []
    t_stride = v_stride = 1
    for atom in reversed(m.task.atoms):
        if atom.kind == "replicate":
            return None
        step = 1
        for extent, d in atom.digits():
            if extent > 1:
                (tdig if atom.kind == "spatial" else vdig).append((d, extent, (t_stride if atom.kind == "spatial"
                                                                               else v_stride) * step))
            step *= extent
        t_stride *= atom.threads
        v_stride *= atom.values
    along = [(e, st) for d, e, st in tdig if d == axis]
    pow2 = all(e & (e - 1) == 0 and st & (st - 1) == 0 for e, st in along)
    intra = [(e, st) for e, st in along if st < 32]
    inter = [(e, st) for e, st in along if st >= 32]
    if not pow2 or any(st * e > 32 for e, st in intra):
        return None
    return [(e, st) for d, e, st in vdig if d != axis], intra, inter


def _row_reduce_shape(m: M.Mapping, axis: int, threads: int):
    """For a flat mapping reduced along its last axis: (slots, slot_of(v), valid, row_of(s), team) or None.

    Each thread folds its values per output row ("slot"); the threads sharing a row then
    combine.  Either every row spans all threads evenly (team = threads), or a row's runs
    sit on `team` consecutive threads (a power of two, or whole warps)."""
    if not isinstance(m, M.Flat) or axis != len(m.shape) - 1:
        return None
    vec, C = m.vec, m.shape[-1]
    rows = m.numel // C
    cq = C // vec  # runs per row
    chunks = m.values // vec
    if cq % threads == 0:
        per = cq // threads
        return rows, f"v / {vec * per}", None, "s", threads
    if threads % cq == 0 and (cq <= 32 and cq & (cq - 1) == 0 or cq % 32 == 0):
        tpr = threads // cq
        valid = None if m.numel % (threads * vec) == 0 else f"s * {tpr} + tid / {cq} < {rows}"
        return chunks, f"v / {vec}" if vec > 1 else "v", valid, f"s * {tpr} + tid / {cq}", cq
    return None
