"""The kernel library as torch operators: `y = tilelang.ops.rmsnorm(x, w, eps)`.

Each library kernel (`tilelang.kernels`) becomes the custom operator `torch.ops.tilelang.<name>`,
derived from the kernel's signature alone (`OpSignature`), so no table here can drift from
the `.tile` files:

* inputs: the tensors and scalars the kernel reads, in declaration order; outputs: the
  tensors it writes, allocated by the operator and returned (a tensor that is read and
  written, like `add_rmsnorm`'s residual `R`, is returned updated and its input left alone);
* keyword-only: every dtype parameter (`TY="bf16"`, `TW="u4"`), every int constant
  (`BN=64`), and any dim that only outputs have (`NS=4`);
* output shapes come from the dims the inputs bind; an output dtype parameter that no input
  binds is the caller's keyword, else follows the input whose dtype parameter has the same
  default (the library's outputs default to the activation dtype: `TY = T = f16`), else its default.

The fake (meta) implementation allocates the same outputs on symbolic shapes, so
`torch.compile(fullgraph=True)`, dynamic shapes included, traces through the operators; the
real one calls the kernel (Triton on CUDA tensors, the reference interpreter on CPU ones), on
torch's current stream, so CUDA-graph capture records it (run it once before capturing: the
first call compiles and tunes).  The kernels have no backward: asking for a gradient through
one is a TileError naming the operator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import kernels as library
from .diagnostics import TileError
from .ir import nodes as N
from .ir.dtypes import DTYPES, DType, torch_dtypes
from .ir.visit import sub_exprs, walk_stmts
from .kernel import TileKernel

_SCALAR_SCHEMA = {"float": "float", "int": "int", "bool": "bool"}
_TORCH_DTYPES = torch_dtypes()


def _scatter_targets(kernel: N.Kernel) -> set[str]:
    """Tensors written at positions read from tensors (`kv_append`'s caches): what such a kernel does not
    write keeps its value, so the operator takes the tensor and returns it updated."""
    data = set()  # scalars that depend on a value read from a tensor
    for s in walk_stmts(kernel.body):
        if isinstance(s, N.ReadScalar):
            data.add(s.name)
        elif isinstance(s, N.Let) and _mentions(s.value, data):
            data.add(s.name)
    return {s.dst.tensor for s in walk_stmts(kernel.body) if isinstance(s, N.Copy)
            and isinstance(s.dst, N.GlobalRef) and any(_mentions(i, data) for i in s.dst.indices)}


def _mentions(e, names: set[str]) -> bool:
    return any(isinstance(x, N.Var) and x.name in names for x in sub_exprs(e))


@dataclass(frozen=True)
class OpSignature:
    """A kernel's signature read as a functional operator."""
    kernel: N.Kernel
    inputs: tuple[N.TensorParam | N.ScalarParam, ...]  # what the caller passes, in declaration order
    outputs: tuple[N.TensorParam, ...]  # what the kernel writes, in declaration order
    updated: frozenset[str]  # outputs that are inputs too
    options: tuple[tuple[str, str], ...]  # keyword-only (name, schema type): dtypes, int consts, output-only dims

    @staticmethod
    def of(kernel: N.Kernel) -> "OpSignature":
        read, written = set(), set()
        for s in walk_stmts(kernel.body):
            if isinstance(s, N.Copy):
                for ref, seen in ((s.src, read), (s.dst, written)):
                    if isinstance(ref, N.GlobalRef):
                        seen.add(ref.tensor)
            elif isinstance(s, N.Dequant):
                read.update(t for t in (s.src.tensor, s.scale, s.zero) if t)
            elif isinstance(s, N.AtomicAdd):  # adds into what the caller passed: returned updated
                read.add(s.dst.tensor)
                written.add(s.dst.tensor)
        read |= _scatter_targets(kernel)
        outputs = tuple(t for t in kernel.tensors if t.name in written)
        inputs = tuple(p for p in kernel.params if isinstance(p, N.ScalarParam)
                       or (isinstance(p, N.TensorParam) and (p.name not in written or p.name in read)))
        consts = {c.name: c for c in kernel.consts}
        bound = {d for t in inputs if isinstance(t, N.TensorParam) for d in _bound_dims(t, consts)}
        free = [d for t in outputs for d in t.dims if isinstance(d, str) and d not in consts and d not in bound]
        options = tuple((c.name, "str" if c.kind == "dtype" else "int") for c in kernel.consts)
        options += tuple((d, "int") for d in dict.fromkeys(free))
        return OpSignature(kernel, inputs, outputs, frozenset(read & written), options)

    def schema(self) -> str:
        args = [f"Tensor {p.name}" if isinstance(p, N.TensorParam) else
                f"{'float' if p.dtype.is_float else 'bool' if p.dtype.kind == 'bool' else 'int'} {p.name}"
                for p in self.inputs]
        args += ["*"] + [f"{kind}? {name}=None" for name, kind in self.options] if self.options else []
        outs = ", ".join("Tensor" for _ in self.outputs)
        return f"({', '.join(args)}) -> {outs if len(self.outputs) == 1 else f'({outs})'}"

    def allocate(self, args: tuple, options: dict) -> list[torch.Tensor]:
        """The outputs of a call: shapes from the dims the inputs bind, dtypes as the module docstring says."""
        k, consts = self.kernel, {c.name: c for c in self.kernel.consts}
        given = dict(zip((p.name for p in self.inputs), args))
        env: dict[str, object] = {}
        dtypes: dict[str, torch.dtype] = {}
        for p in self.inputs:
            if isinstance(p, N.TensorParam):
                x = given[p.name]
                if isinstance(p.dtype, str):
                    dtypes.setdefault(p.dtype, x.dtype)
                for d in _bound_dims(p, consts):
                    env.setdefault(d, x.shape[p.dims.index(d)])
        first = next(p for p in self.inputs if isinstance(p, N.TensorParam))
        device = given[first.name].device
        out = []
        for t in self.outputs:
            if t.name in self.updated:
                out.append(given[t.name].clone())
                continue
            shape = [self._dim(d, env, options, consts) for d in t.dims]
            out.append(torch.empty(shape, dtype=self._dtype(t.dtype, dtypes, options, consts, first), device=device))
        return out

    def _dim(self, d, env: dict, options: dict, consts: dict):
        if isinstance(d, int):
            return d
        if d in consts:
            return options.get(d) if options.get(d) is not None else consts[d].default
        if d in env:
            return env[d]
        if options.get(d) is not None:
            return options[d]
        raise TileError(f"tilelang.ops.{self.kernel.name}: the output size '{d}' is not given by any input",
                        self.kernel.loc, hint=f"pass {d}=... as a keyword")

    def _dtype(self, dt, bound: dict, options: dict, consts: dict, first: N.TensorParam) -> torch.dtype:
        if isinstance(dt, DType):
            return _TORCH_DTYPES[dt.name]
        if options.get(dt) is not None:
            return _TORCH_DTYPES[_dtype_name(options[dt], dt, self.kernel)]
        if dt in bound:
            return bound[dt]
        lead = first.dtype
        if isinstance(lead, str) and lead in bound and consts[lead].default == consts[dt].default:
            return bound[lead]
        return _TORCH_DTYPES[consts[dt].default]


def _bound_dims(t: N.TensorParam, consts: dict) -> list[str]:
    """Dim symbols a tensor argument binds by its shape: not constants, not a packed tensor's byte axis."""
    dt = t.dtype if isinstance(t.dtype, DType) else DTYPES.get(str(getattr(consts.get(t.dtype), "default", "")))
    dims = t.dims[:-1] if dt is not None and dt.is_packed else t.dims
    return [d for d in dims if isinstance(d, str) and d not in consts]


def _dtype_name(value, param: str, kernel: N.Kernel) -> str:
    if value in DTYPES:
        return value
    raise TileError(f"tilelang.ops.{kernel.name}: {param}={value!r} is not a dtype", kernel.loc,
                    hint="dtypes: " + ", ".join(DTYPES))


_LIB = torch.library.Library("tilelang", "FRAGMENT")  # kept alive: the operators live as long as it does


def _register(kernel: TileKernel):
    sig = OpSignature.of(kernel.ir)
    name = kernel.name
    _LIB.define(f"{name}{sig.schema()}")
    runtime = [p.name for p in kernel.ir.params if not isinstance(p, N.ConstParam)]
    inputs = [p.name for p in sig.inputs]

    def run(*args, **options):
        options = {k: v for k, v in options.items() if v is not None}
        args = tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)  # kernels take dense rows
        outs = sig.allocate(args, options)
        values = {**dict(zip(inputs, args)), **{t.name: o for t, o in zip(sig.outputs, outs)}}
        kernel(*(values[n] for n in runtime), **options)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def fake(*args, **options):
        outs = sig.allocate(args, {k: v for k, v in options.items() if v is not None})
        return outs[0] if len(outs) == 1 else tuple(outs)

    def backward(ctx, *grads):
        raise TileError(f"torch.ops.tilelang.{name} has no backward: tilelang's kernels are for inference",
                        kernel.ir.loc, hint="run it under torch.no_grad() or torch.inference_mode(), or detach "
                                            "its inputs; use torch's own ops where you need gradients")

    _LIB.impl(name, run, "CompositeExplicitAutograd")
    torch.library.register_fake(f"tilelang::{name}", fake, lib=_LIB)
    torch.library.register_autograd(f"tilelang::{name}", backward, lib=_LIB)
    return getattr(torch.ops.tilelang, name)


for _name in library.names():
    globals()[_name] = _register(library.load(_name))
