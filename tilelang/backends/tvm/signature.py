"""The PrimFunc's parameters: what the launcher passes and the generated code binds.

Tensors are handles bound with `T.match_buffer`; their symbolic dims become
`T.int32()` vars that TVM binds from the arguments' shapes.  A packed tensor's
last axis is stored in bytes, so its logical length cannot be read off a shape:
a dim that appears only there is passed as an int argument.  Buffers declare
element alignment only, so any array view can be passed (TVM assumes 64 bytes
otherwise and emits aligned vector loads); the launcher passes `s_aligned16` instead,
1 where every tensor starts on a 16-byte boundary, which the cuda lowering's vector paths test.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir.dtypes import DType, packed_row_bytes
from .emit import Val, tir_dtype


ALIGNED = "s_aligned16"  # the trailing int argument: all tensors 16-byte aligned (0 or 1)


@dataclass(frozen=True)
class TensorArg:
    name: str  # the kernel's parameter name
    handle: str
    buffer: str
    dtype: str  # TIR dtype of the buffer (uint8 for packed tensors)
    shape: tuple[str, ...]
    align: int
    packed: DType | None  # the logical element type of a packed tensor


@dataclass(frozen=True)
class Signature:
    name: str
    tensors: tuple[TensorArg, ...]
    dim_vars: tuple[str, ...]  # TIR vars bound from buffer shapes
    dim_args: tuple[str, ...]  # kernel dim names passed as int arguments
    scalars: tuple[tuple[str, str], ...]  # (kernel name, TIR dtype of the argument)

    @property
    def params(self) -> list[str]:
        out = [f"{t.handle}: T.handle" for t in self.tensors]
        out += [f"{dim_name(d)}: T.int32" for d in self.dim_args]
        out += [f"{scalar_name(n)}: T.{dt}" for n, dt in self.scalars]
        return out + [f"{ALIGNED}: T.int32"]

    def names(self) -> dict[str, Val]:
        """Values of the kernel's dims and scalar parameters inside the function."""
        dims = {d: Val(dim_name(d), "int32") for t in self.tensors for d in _symbols(t)}
        dims.update({d: Val(dim_name(d), "int32") for d in self.dim_args})
        dims.update({n: Val(scalar_name(n), dt) for n, dt in self.scalars})
        return dims


def dim_name(d: str) -> str:
    return f"d_{d}"


def scalar_name(n: str) -> str:
    return f"s_{n}"


def _symbols(t: TensorArg) -> list[str]:
    return [s[2:] for s in t.shape if s.startswith("d_")]


def _arg_dtype(dt: DType) -> str:
    if dt.is_float:
        return "float32"
    if dt.name == "bool":
        return "bool"
    return "int64" if dt.name in ("u32", "i64") else "int32"


def signature(tk) -> Signature:
    k = tk.kernel
    unpacked_dims = {d for p in k.tensors for i, d in enumerate(p.dims) if isinstance(d, str)
                     and not (p.dtype.is_packed and i == len(p.dims) - 1)}
    tensors = []
    byte_vars = []
    for p in k.tensors:
        shape = [str(d) if isinstance(d, int) else dim_name(d) for d in p.dims]
        if p.dtype.is_packed:
            last = p.dims[-1]
            if isinstance(last, int):
                shape[-1] = str(packed_row_bytes(last, p.dtype.bits))
            else:
                shape[-1] = f"n_{p.name}"
                byte_vars.append(shape[-1])
        tdt = "uint8" if p.dtype.is_packed else tir_dtype(p.dtype)
        align = 1 if p.dtype.is_packed else max(p.dtype.bits // 8, 1)
        tensors.append(TensorArg(p.name, f"h_{p.name}", f"g_{p.name}", tdt, tuple(shape), align,
                                 p.dtype if p.dtype.is_packed else None))
    dim_vars = tuple(dim_name(d) for d in k.dim_symbols if d in unpacked_dims) + tuple(byte_vars)
    dim_args = tuple(d for d in k.dim_symbols if d not in unpacked_dims)
    scalars = tuple((p.name, _arg_dtype(p.dtype)) for p in k.scalars)
    return Signature(f"tilelang_{k.name}", tuple(tensors), dim_vars, dim_args, scalars)
