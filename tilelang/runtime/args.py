"""Match call arguments to a kernel's parameters, before anything is compiled or launched.

Shared by every backend and the interpreter: binds dtype parameters from the
arguments' dtypes, dim symbols from their shapes, checks ranks, dtypes, packed
row sizes and contiguity, and names the argument in every error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..diagnostics import TileError
from ..ir import nodes as N
from ..ir.dtypes import DTYPES, DType, from_numpy, packed_row_bytes

_TORCH_NAMES = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float8_e4m3fn": "f8e4m3",
                "float8_e5m2": "f8e5m2", "int8": "i8", "uint8": "u8", "int32": "i32", "uint32": "u32",
                "int64": "i64", "bool": "bool"}


@dataclass(frozen=True)
class ArrayInfo:
    """What the runtime needs to know of an array argument, whatever library it comes from."""
    shape: tuple[int, ...]
    dtype: DType | None
    device: str  # "cpu" or "cuda:N"
    contiguous: bool
    library: str  # "numpy", "torch" or "cupy"


def array_info(x: Any) -> ArrayInfo | None:
    """Describe a numpy/torch/cupy array, or None if `x` is not one."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        name = str(x.dtype).replace("torch.", "")
        dev = "cpu" if x.device.type == "cpu" else f"cuda:{x.device.index or 0}"
        return ArrayInfo(tuple(x.shape), DTYPES.get(_TORCH_NAMES.get(name, "")), dev, x.is_contiguous(), "torch")
    if mod == "cupy":
        return ArrayInfo(tuple(x.shape), from_numpy(x.dtype), f"cuda:{x.device.id}",
                         bool(x.flags.c_contiguous), "cupy")
    if isinstance(x, np.ndarray):
        return ArrayInfo(tuple(x.shape), from_numpy(x.dtype), "cpu", bool(x.flags.c_contiguous), "numpy")
    return None


@dataclass(frozen=True)
class BoundCall:
    consts: dict[str, object]  # compile-time values: ints and DTypes
    dims: dict[str, int]
    arrays: dict[str, Any]
    scalars: dict[str, int | float]
    infos: dict[str, ArrayInfo]


def bind(kernel: N.Kernel, args: tuple, kwargs: Mapping[str, Any]) -> BoundCall:
    """Bind positional runtime arguments (tensors then scalars, in declaration order) and keywords."""
    runtime = [p for p in kernel.params if not isinstance(p, N.ConstParam)]
    kwargs = dict(kwargs)
    values: dict[str, Any] = {}
    if len(args) > len(runtime):
        raise TileError(f"kernel '{kernel.name}' takes {len(runtime)} tensor/scalar arguments, got {len(args)}",
                        kernel.loc, hint="pass compile-time constants by keyword")
    for p, a in zip(runtime, args):
        values[p.name] = a
    for p in runtime[len(args):]:
        if p.name not in kwargs:
            raise TileError(f"kernel '{kernel.name}' is missing argument '{p.name}'", p.loc)
        values[p.name] = kwargs.pop(p.name)
    dims: dict[str, int] = {}
    for d in kernel.dim_symbols:
        if d in kwargs:
            dims[d] = _positive_int(kwargs.pop(d), d, kernel)
    const_names = {c.name: c for c in kernel.consts}
    consts = {k: kwargs.pop(k) for k in list(kwargs) if k in const_names}
    if kwargs:
        raise TileError(f"kernel '{kernel.name}' has no parameter {', '.join(sorted(kwargs))}", kernel.loc,
                        hint="parameters: " + ", ".join(p.name for p in kernel.params))

    infos: dict[str, ArrayInfo] = {}
    for p in kernel.tensors:
        if p.storage == "packed":
            infos[p.name] = _bind_packed_weight(kernel, p, values[p.name], consts, const_names, dims)
            continue
        info = array_info(values[p.name])
        if info is None:
            raise TileError(f"argument '{p.name}' of '{kernel.name}' must be an array "
                            f"(torch, numpy or cupy), got {type(values[p.name]).__name__}", p.loc)
        infos[p.name] = info
        if isinstance(p.dtype, str):  # a dtype parameter: bind from this argument
            c = const_names[p.dtype]
            if info.dtype is None:
                raise TileError(f"argument '{p.name}' has an unsupported dtype", p.loc)
            prev = consts.get(p.dtype)
            if prev is None and _dt(c.default) is not None and _dt(c.default).is_packed:
                prev = consts[p.dtype] = _dt(c.default)  # bytes cannot say their bit width: the default does
            if prev is None:
                consts[p.dtype] = info.dtype
            elif _dt(prev) != info.dtype and not (_dt(prev) is not None and _dt(prev).is_packed):
                # a packed dtype (TW="u4", or its default) is stored as bytes; _check_tensor checks them
                raise TileError(f"argument '{p.name}' is {info.dtype} but {c.name} is {_dt(prev)}", p.loc,
                                hint=f"tensors typed {c.name} must share one dtype")
    plain = [p for p in kernel.tensors if p.storage != "packed"]
    for p in plain:
        _check_tensor(kernel, p, infos[p.name], consts, dims, packed_pass=False)
    for p in plain:
        _check_tensor(kernel, p, infos[p.name], consts, dims, packed_pass=True)
    scalars = {}
    for p in kernel.scalars:
        v = values[p.name]
        if hasattr(v, "item") and not isinstance(v, (int, float)):
            v = v.item()
        dt = _dt(consts.get(p.dtype, p.dtype)) if isinstance(p.dtype, str) else p.dtype
        if dt is not None and dt.is_float and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif dt is not None and dt.is_int and isinstance(v, int) and not isinstance(v, bool):
            pass
        else:
            raise TileError(f"argument '{p.name}' of '{kernel.name}' must be a {dt} scalar, got {v!r}", p.loc)
        scalars[p.name] = v
    return BoundCall(consts, dims, {p.name: values[p.name] for p in kernel.tensors}, scalars, infos)


def _bind_packed_weight(kernel: N.Kernel, p: N.TensorParam, w: Any, consts: dict, const_names: dict,
                        dims: dict[str, int]) -> ArrayInfo:
    """A `@ packed` parameter takes a `tilelang.quant.PackedWeight`: its field dtype, its logical [N, K]
    and the constants its order was made for come from it (the order itself is checked against the
    plan when the kernel is compiled: `check_packed`)."""
    from ..quant import PackedWeight
    where = f"argument '{p.name}' of '{kernel.name}'"
    if not isinstance(w, PackedWeight):
        raise TileError(f"{where} is stored packed in the kernel's own order and must be a PackedWeight, got "
                        f"{type(w).__name__}", p.loc, hint=f"make it with kernel.pack('{p.name}', values, ...)")
    for name, value in w.consts.items():
        if name in consts and consts[name] != value:
            raise TileError(f"{where} was packed for {name}={value}, but the call asks {name}={consts[name]}", p.loc,
                            hint=f"drop {name}=... or pack the weight again for it")
        consts[name] = value
    dt = DTYPES[w.dtype]
    if isinstance(p.dtype, str):
        prev = consts.get(p.dtype)
        if prev is not None and _dt(prev) != dt:
            raise TileError(f"{where} holds {dt} fields but {p.dtype}={_dt(prev)}", p.loc,
                            hint=f"drop {p.dtype}=...: a packed weight knows its dtype")
        consts[p.dtype] = dt
    elif p.dtype != dt:
        raise TileError(f"{where} must hold {p.dtype} fields, got {dt}", p.loc)
    for d, n in zip(p.dims, w.shape):
        expect = d if isinstance(d, int) else consts.get(d, dims.get(d))
        if expect is not None and expect != n:
            raise TileError(f"{where} is {list(w.shape)}: {n} along '{d}', expected {expect}", p.loc,
                            hint="shapes must agree across arguments")
        if not isinstance(d, int):
            dims[d] = n
    info = array_info(w.data)
    if info is None or info.dtype is None or info.dtype.name != "u8":
        raise TileError(f"{where}: the packed bytes must be a uint8 array", p.loc)
    return ArrayInfo(tuple(w.shape), dt, info.device, info.contiguous, info.library)


def check_packed(kernel: N.Kernel, plan, call: "BoundCall") -> None:
    """Every packed argument is in the order the plan chooses for this call, else a TileError."""
    for p in kernel.tensors:
        if p.storage == "packed":
            want = plan.packed_layout(p.name).signature
            if call.arrays[p.name].signature != want:
                raise TileError(f"argument '{p.name}' of '{kernel.name}' was packed in another order than this call's "
                                f"plan ({call.consts}) uses", p.loc,
                                hint=f"pack it again with kernel.pack('{p.name}', values, ...) for these constants "
                                     f"and target")


def _dt(v) -> DType | None:
    return v if isinstance(v, DType) else DTYPES.get(str(v))


def _positive_int(v, name: str, kernel: N.Kernel) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TileError(f"dim '{name}' of '{kernel.name}' must be a non-negative int, got {v!r}", kernel.loc)
    return v


def _check_tensor(kernel: N.Kernel, p: N.TensorParam, info: ArrayInfo, consts: dict, dims: dict[str, int],
                  packed_pass: bool) -> None:
    want = _dt(consts.get(p.dtype)) if isinstance(p.dtype, str) else p.dtype
    where = f"argument '{p.name}' of '{kernel.name}'"
    if len(info.shape) != len(p.dims):
        raise TileError(f"{where} must have {len(p.dims)} dims {list(p.dims)}, got shape {list(info.shape)}", p.loc)
    if not info.contiguous:
        raise TileError(f"{where} is not contiguous", p.loc, hint="pass x.contiguous()")
    if want is not None and want.is_packed:
        if info.dtype is None or info.dtype.name not in ("u8", "i8"):
            raise TileError(f"{where} holds packed {want} and must be a uint8 array, got {info.dtype}", p.loc,
                            hint="pack it with tilelang.quant.pack(values, bits)")
    elif want is not None and info.dtype != want:
        raise TileError(f"{where} must be {want}, got {info.dtype}", p.loc)
    for axis, (d, n) in enumerate(zip(p.dims, info.shape)):
        last_packed = want is not None and want.is_packed and axis == len(p.dims) - 1
        if last_packed != packed_pass:
            continue
        if last_packed:
            _bind_packed(where, p, d, n, want, consts, dims)
            continue
        expect = d if isinstance(d, int) else consts.get(d, dims.get(d))
        if expect is None:
            dims[d] = n
        elif expect != n:
            raise TileError(f"{where} has {n} along dim {axis} ('{d}'), expected {expect}", p.loc,
                            hint="shapes must agree across arguments")


def _bind_packed(where: str, p: N.TensorParam, d, n: int, dt: DType, consts: dict, dims: dict[str, int]) -> None:
    length = d if isinstance(d, int) else consts.get(d, dims.get(d))
    if length is None:
        if (n * 8) % dt.bits:
            raise TileError(f"{where}: cannot tell '{d}' from {n} packed bytes", p.loc,
                            hint=f"pass {d}=... explicitly")
        length = n * 8 // dt.bits
        if packed_row_bytes(length - 1, dt.bits) == n:
            raise TileError(f"{where}: '{d}' is ambiguous from {n} packed bytes of {dt}", p.loc,
                            hint=f"pass {d}=... explicitly")
        dims[d] = length
    if packed_row_bytes(length, dt.bits) != n:
        raise TileError(f"{where}: '{d}' = {length} {dt} elements pack into {packed_row_bytes(length, dt.bits)} "
                        f"bytes per row, got {n}", p.loc)
