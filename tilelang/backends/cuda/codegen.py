"""Lowering a typed kernel to one CUDA C++ `extern "C" __global__` function: the kernel's signature and
frame; each statement kind is emitted by its module (elementwise, reduce, copies, gemm, dequant,
pipeline, on the shared state of `emitter.py`) into a `cir` tree, which passes tidy before printing.

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

import os
from dataclasses import dataclass

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.dtypes import f32
from ...ir.visit import sub_exprs, walk_stmts
from ...passes.infer import TypedKernel
from ...passes.verify import MAX_SHARED_BYTES
from . import cir
from . import ctype
from . import tma as TMA
from .copies import CopyEmitter
from .dequant import DequantEmitter
from .elementwise import ElementwiseEmitter
from .expr import cname
from .gemm import GemmEmitter
from .pipeline import PipelineEmitter
from .plan import make_plan, written_tile
from .reduce import ReduceEmitter
from .templating import templates, verbatim


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


class KernelGen(ElementwiseEmitter, ReduceEmitter, CopyEmitter, GemmEmitter, DequantEmitter, PipelineEmitter):
    """Emits the kernel statement by statement: `stmt` keeps the state every statement shares (scratch,
    staging, ring shadows, pending partial sums), `visit_<Kind>` (in the families) emits one kind."""

    def run(self) -> Source:
        """The kernel: parameters (tensors, dims, scalars, tensor maps) and their setup, the body's `cir`
        lowered, all in the `kernel.cu.j2` frame."""
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
        for s in walk_stmts(self.k.body):
            for f in ("value", "init", "pad"):
                e = getattr(s, f, None)
                for x in sub_exprs(e) if e is not None else ():
                    if not isinstance(x, N.TileRef):
                        out.add(self.tk.type_of(x).dtype.name)
        return out

    def notes(self) -> list[str]:
        """The plan's mapping or layout of every tile, for the header comment."""
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

    def stmts(self, body: tuple[N.Stmt, ...]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: N.Stmt) -> None:
        """One statement: pending k-split sums it reads are added first; scratch and staged copies are the
        statement's own; ring shadows of the tiles it writes end."""
        for acc in [a for a in self.partial if a in s.reads() | s.writes()
                    and not (isinstance(s, N.Gemm) and s.acc.name == a)]:
            self.sum_partials(acc)
        self.comment(s)
        self.scratch_cursor = 0
        self.staged = {}
        for st in walk_stmts((s,)):
            self.shadow.pop(written_tile(st) or "", None)
        self.visit(s)
        assert not self.pending, "a statement left shared writes unfenced"

    def visit_Let(self, s: N.Let) -> None:
        v = self.ex.scalar(s.value)
        t = self.tk.scalars[s.name]
        ct = {"float": "float", "bool": "bool"}.get(v.kind, "long long" if t.dtype.name == "i64" else "int")
        self.kinds[s.name] = v.kind
        self.line(f"const {ct} {cname(s.name)} = {v.code};")

    def visit_If(self, s: N.If) -> None:
        """A branch on a block-uniform condition: each branch starts and ends at a barrier, so the
        ordering of shared and global accesses holds whichever branch ran (barriers in a branch every
        thread takes are legal)."""
        cond = self.ex.scalar(s.cond)
        for i, branch in enumerate((s.body, s.orelse)):
            if i and not branch:
                break
            with self.scope(f"if ({cond.code})" if i == 0 else "else"):
                self.barrier()
                self.stmts(branch)
                self.barrier()

    def visit_ReadScalar(self, s: N.ReadScalar) -> None:
        """Every thread loads the element itself (one address: a broadcast); 0 outside the tensor."""
        p = self.tk.tensor(s.src.tensor)
        idx = [f"(long long)({self.ex.scalar(i).code})" for i in s.src.indices]
        dims = [str(d) if isinstance(d, int) else cname(d) for d in p.dims]
        inside = " && ".join(f"tl::in_range({i}, {d})" for i, d in zip(idx, dims))
        off = " + ".join(f"{i} * {cname(p.name)}st{a}" for a, i in enumerate(idx))
        self.kinds[s.name] = ctype.kind(p.dtype)
        value = ctype.to_compute(f"{cname(p.name)}[{off}]", p.dtype)
        self.line(f"const {ctype.compute(p.dtype)} {cname(s.name)} = ({inside}) ? {value} : "
                  f"{ctype.literal(0, p.dtype)};")


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
