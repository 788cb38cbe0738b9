"""Match call arguments to a kernel's parameters, before anything is compiled or launched.

Shared by every backend and the interpreter: binds dtype parameters from the
arguments' dtypes, dim symbols from their shapes, checks ranks, dtypes, packed
row sizes, contiguity and scalar kinds.  Every mistake is a TileError located at
the declaration of the parameter it concerns (file:line:col), naming the argument,
what was expected, where a conflicting value came from, and what to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..diagnostics import SourceLoc, TileError, did_you_mean
from ..ir import nodes as N
from ..ir.dtypes import DType, from_numpy, from_torch, from_user, listing, packed_row_bytes, torch_name
from ..passes.specialize import dtype_value


@dataclass(frozen=True)
class ArrayInfo:
    """What the runtime needs to know of an array argument, whatever library it comes from."""
    shape: tuple[int, ...]
    dtype: DType | None  # None: a dtype no kernel takes (float64, complex, ...)
    device: str  # "cpu", "cuda:N", or torch's name of another device ("meta")
    contiguous: bool
    library: str  # "numpy", "torch" or "cupy"
    library_dtype: str  # the library's own name of the dtype, for messages ("float64")


def array_info(x: Any) -> ArrayInfo | None:
    """Describe a numpy/torch/cupy array, or None if `x` is not one."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch" and hasattr(x, "is_contiguous"):
        dev = f"cuda:{x.device.index or 0}" if x.device.type == "cuda" else x.device.type
        name = str(x.dtype).removeprefix("torch.")
        return ArrayInfo(tuple(x.shape), from_torch(x.dtype), dev, x.is_contiguous(), "torch", name)
    if mod == "cupy" and hasattr(x, "flags"):
        return ArrayInfo(tuple(x.shape), from_numpy(x.dtype), f"cuda:{x.device.id}",
                         bool(x.flags.c_contiguous), "cupy", x.dtype.name)
    if isinstance(x, np.ndarray):
        return ArrayInfo(tuple(x.shape), from_numpy(x.dtype), "cpu", bool(x.flags.c_contiguous), "numpy",
                         x.dtype.name)
    return None


@dataclass(frozen=True)
class BoundCall:
    consts: dict[str, object]  # compile-time values: ints and DTypes
    dims: dict[str, int]
    arrays: dict[str, Any]
    scalars: dict[str, int | float | bool]
    infos: dict[str, ArrayInfo]


def runtime_params(kernel: N.Kernel) -> tuple[N.TensorParam | N.ScalarParam, ...]:
    """The parameters a call passes values for, in declaration order: positional arguments bind to these."""
    return tuple(p for p in kernel.params if not isinstance(p, N.ConstParam))


def runtime_values(kernel: N.Kernel, call: BoundCall) -> list:
    """A bound call's tensors and scalars in `runtime_params` order (what fast launchers take)."""
    return [call.arrays[p.name] if isinstance(p, N.TensorParam) else call.scalars[p.name]
            for p in runtime_params(kernel)]


def scalar_converter(dt: DType, typ: type) -> type | None:
    """The Python type a value of type `typ` becomes when passed for a scalar parameter of dtype `dt`,
    or None if it may not be passed there: a float for an int parameter would be truncated silently,
    and a bool is not a number."""
    if issubclass(typ, (bool, np.bool_)):
        return bool if dt.kind == "bool" else None
    if issubclass(typ, (int, np.integer)):
        return float if dt.is_float else int if dt.is_int else None
    if issubclass(typ, (float, np.floating)):
        return float if dt.is_float else None
    return None


class _Origins:
    """How each dim symbol and dtype parameter got its value, so that a conflict can say so."""

    def __init__(self):
        self.why: dict[str, tuple[str, SourceLoc | None]] = {}

    def note(self, name: str, text: str, loc: SourceLoc | None = None) -> None:
        self.why.setdefault(name, (text, loc))

    def clause(self, name: str) -> str:
        return self.why[name][0] if name in self.why else "fixed by the kernel"

    def related(self, name: str) -> tuple[tuple[str, SourceLoc], ...]:
        text, loc = self.why.get(name, ("", None))
        return ((f"{name} was bound here ({text})", loc),) if loc is not None else ()


def bind(kernel: N.Kernel, args: tuple, kwargs: Mapping[str, Any]) -> BoundCall:
    """Bind positional runtime arguments (tensors then scalars, in declaration order) and keywords."""
    origins = _Origins()
    values, consts, dims = _match(kernel, args, kwargs, origins)
    const_params = {c.name: c for c in kernel.consts}

    infos: dict[str, ArrayInfo] = {}
    for p in kernel.tensors:
        if p.storage == "packed":
            infos[p.name] = _bind_packed_weight(kernel, p, values[p.name], consts, dims)
            continue
        info = array_info(values[p.name])
        if info is None:
            raise TileError(f"argument '{p.name}' of '{kernel.name}' must be an array (torch, numpy or cupy), "
                            f"got {_describe(values[p.name])}", p.loc,
                            hint=f"declared as {_declared(p)}; pass a tensor of that shape")
        infos[p.name] = info
        if isinstance(p.dtype, str):  # a dtype parameter: bind from this argument
            _bind_dtype(kernel, p, info, const_params[p.dtype], consts, origins)
    plain = [p for p in kernel.tensors if p.storage != "packed"]
    for p in plain:
        _check_tensor(kernel, p, infos[p.name], consts, dims, origins, packed_pass=False)
    for p in plain:
        _check_tensor(kernel, p, infos[p.name], consts, dims, origins, packed_pass=True)
    scalars = {p.name: _bind_scalar(kernel, p, values[p.name], consts, const_params) for p in kernel.scalars}
    return BoundCall(consts, dims, {p.name: values[p.name] for p in kernel.tensors}, scalars, infos)


def _match(kernel: N.Kernel, args: tuple, kwargs: Mapping[str, Any], origins: _Origins):
    """Positional and keyword arguments -> (runtime values by name, pinned consts, dims given by keyword)."""
    runtime = runtime_params(kernel)
    names = [p.name for p in runtime]
    const_params = {c.name: c for c in kernel.consts}
    if len(args) > len(runtime):
        consts = ", ".join(const_params)
        raise TileError(f"kernel '{kernel.name}' takes {len(runtime)} tensor/scalar arguments "
                        f"({', '.join(names)}), got {len(args)}", kernel.loc,
                        hint=f"compile-time parameters ({consts}) are passed by keyword, e.g. "
                             f"{next(iter(const_params))}=..." if const_params else "drop the extra arguments")
    known = names + list(kernel.dim_symbols) + list(const_params)
    for k in kwargs:
        if k not in known:
            suggestion = did_you_mean(k, known)
            raise TileError(f"kernel '{kernel.name}' has no parameter '{k}'", kernel.loc,
                            hint=(suggestion + " " if suggestion else "") + "its parameters: " + ", ".join(known))
    values = dict(zip(names, args))
    for k in kwargs:
        if k in values:
            raise TileError(f"argument '{k}' of '{kernel.name}' is given twice, by position "
                            f"(#{names.index(k) + 1}) and by keyword", kernel.param(k).loc,
                            hint=f"drop {k}=... or the positional value")
    for p in runtime[len(args):]:
        if p.name not in kwargs:
            raise TileError(f"kernel '{kernel.name}' is missing argument '{p.name}' ({_declared(p)})", p.loc,
                            hint=f"pass it as argument #{names.index(p.name) + 1} or as {p.name}=...")
        values[p.name] = kwargs[p.name]
    dims: dict[str, int] = {}
    for d in kernel.dim_symbols:
        if d in kwargs:
            dims[d] = _dim_value(kernel, d, kwargs[d])
            origins.note(d, f"passed as {d}={dims[d]}")
    consts: dict[str, object] = {}
    for name, c in const_params.items():
        if name not in kwargs:
            continue
        v = kwargs[name]
        if c.kind == "dtype":
            v = dtype_value(kernel, c, v)
            origins.note(name, f"passed as {name}={v}")
        consts[name] = v
    return values, consts, dims


def _dim_value(kernel: N.Kernel, d: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        loc = next((p.loc for p in kernel.tensors if d in p.dims), kernel.loc)
        raise TileError(f"dim '{d}' of '{kernel.name}' must be a non-negative int, got {v!r}", loc,
                        hint=f"pass {d}=<int>, or leave it out to take it from the tensors' shapes")
    return int(v)


def _bind_dtype(kernel: N.Kernel, p: N.TensorParam, info: ArrayInfo, c: N.ConstParam, consts: dict,
                origins: _Origins) -> None:
    where = f"argument '{p.name}' of '{kernel.name}'"
    if info.dtype is None:
        raise TileError(f"{where} is {info.library_dtype}, which kernels do not take", p.loc,
                        hint=f"its dtype sets {c.name}: convert it to one of {listing()}")
    prev = consts.get(c.name)
    default = from_user(c.default) if c.default is not None else None
    if prev is None and default is not None and default.is_packed:
        prev = consts[c.name] = default  # bytes cannot say their bit width: the default does
        origins.note(c.name, "its default", c.loc)
    if prev is None:
        consts[c.name] = info.dtype
        origins.note(c.name, f"from {p.name}'s dtype", p.loc)
    elif prev != info.dtype and not prev.is_packed:
        # a packed dtype (TW="u4", or its default) is stored as bytes; _check_tensor checks them
        raise TileError(f"{where} is {info.dtype}, but {c.name} is {prev} ({origins.clause(c.name)})", p.loc,
                        hint=f"tensors typed {c.name} share one dtype: pass {p.name} as {prev}"
                             f"{_conversion(p.name, info, prev)}, or make them all {info.dtype}",
                        related=origins.related(c.name))


def _check_tensor(kernel: N.Kernel, p: N.TensorParam, info: ArrayInfo, consts: dict, dims: dict[str, int],
                  origins: _Origins, packed_pass: bool) -> None:
    want = consts.get(p.dtype) if isinstance(p.dtype, str) else p.dtype
    where = f"argument '{p.name}' of '{kernel.name}'"
    if not packed_pass:
        if len(info.shape) != len(p.dims):
            raise TileError(f"{where} must have {len(p.dims)} dims {_dims(p)}, got shape {list(info.shape)}", p.loc,
                            hint=f"declared as {_declared(p)}; reshape it to {len(p.dims)} dims")
        if not info.contiguous:
            how = "np.ascontiguousarray(...)" if info.library == "numpy" else f"{p.name}.contiguous()"
            raise TileError(f"{where} is not contiguous (kernels take row-major tensors)", p.loc,
                            hint=f"pass {how}")
        if want is not None and want.is_packed:
            if info.dtype is None or info.dtype.name not in ("u8", "i8"):
                raise TileError(f"{where} holds packed {want} and must be a uint8 array, got {info.library_dtype}",
                                p.loc, hint="pack it with tilelang.quant.pack(values, bits)")
        elif want is not None and info.dtype != want:
            raise TileError(f"{where} must be {want}, got {info.library_dtype}", p.loc,
                            hint=f"convert it{_conversion(p.name, info, want)}")
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
            origins.note(d, f"from {p.name}.shape[{axis}]", p.loc)
        elif expect != n:
            name = f"'{d}'" if isinstance(d, str) else "a fixed extent"
            source = ("declared" if isinstance(d, int) else f"the value of const {d}" if d in consts
                      else origins.clause(d))
            raise TileError(f"{where} has {n} along dim {axis} ({name}), expected {expect} ({source})", p.loc,
                            hint="shapes must agree across arguments sharing a dim name"
                            if isinstance(d, str) else f"declared as {_declared(p)}",
                            related=origins.related(d) if isinstance(d, str) else ())


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
                        f"bytes per row, got {n}", p.loc,
                        hint="pack each row with tilelang.quant.pack(values, bits), or pass the right dtype "
                             "parameter (the bit width) by keyword")


def _bind_packed_weight(kernel: N.Kernel, p: N.TensorParam, w: Any, consts: dict, dims: dict[str, int]) -> ArrayInfo:
    """A `@ packed` parameter takes a `tilelang.quant.PackedWeight`: its field dtype, its logical [N, K]
    and the constants its order was made for come from it (the order itself is checked against the
    plan when the kernel is compiled: `check_packed`)."""
    from ..quant import PackedWeight
    where = f"argument '{p.name}' of '{kernel.name}'"
    if not isinstance(w, PackedWeight):
        raise TileError(f"{where} is stored packed in the kernel's own order and must be a PackedWeight, got "
                        f"{_describe(w)}", p.loc, hint=f"make it with kernel.pack('{p.name}', values, ...)")
    for name, value in w.consts.items():
        if name in consts and consts[name] != value:
            raise TileError(f"{where} was packed for {name}={value}, but the call asks {name}={consts[name]}", p.loc,
                            hint=f"drop {name}=... or pack the weight again for it")
        consts[name] = value
    dt = from_user(w.dtype)
    if isinstance(p.dtype, str):
        prev = consts.get(p.dtype)
        if prev is not None and from_user(prev) != dt:
            raise TileError(f"{where} holds {dt} fields but {p.dtype}={prev}", p.loc,
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
    return ArrayInfo(tuple(w.shape), dt, info.device, info.contiguous, info.library, info.library_dtype)


def check_packed(kernel: N.Kernel, plan, call: "BoundCall") -> None:
    """Every packed argument is in the order the plan chooses for this call, else a TileError."""
    for p in kernel.tensors:
        if p.storage == "packed" and call.arrays[p.name].signature != plan.packed_layout(p.name).signature:
            raise TileError(f"argument '{p.name}' of '{kernel.name}' was packed in another order than this call's "
                            f"plan uses", p.loc,
                            hint=f"pack it again with kernel.pack('{p.name}', values, ...) for these constants "
                                 f"and target")


def _bind_scalar(kernel: N.Kernel, p: N.ScalarParam, v: Any, consts: dict,
                 const_params: dict[str, N.ConstParam]) -> int | float | bool:
    where = f"argument '{p.name}' of '{kernel.name}'"
    dt = p.dtype
    if isinstance(dt, str):  # typed by a dtype parameter: bound by a tensor or a keyword, else its default
        default = const_params[dt].default
        dt = consts.get(dt) or (from_user(default) if default is not None else None)
        if dt is None:
            raise TileError(f"the dtype {p.dtype} of scalar '{p.name}' of '{kernel.name}' is unknown", p.loc,
                            hint=f"pass {p.dtype}=... by keyword")
    info = array_info(v)
    if info is not None:
        noun = "tensor" if info.library == "torch" else "array"
        raise TileError(f"{where} is a scalar of dtype {dt}, but got a {info.library} {noun} of shape "
                        f"{list(info.shape)}", p.loc,
                        hint=f"pass a Python number, e.g. {p.name}=x.item() (which waits for a GPU tensor)")
    convert = scalar_converter(dt, type(v))
    if convert is None:
        kind = "a float" if dt.is_float else "an int" if dt.is_int else "a bool"
        raise TileError(f"{where} must be {kind} (a scalar of dtype {dt}), got {_describe(v)}", p.loc,
                        hint=f"pass {kind}" + (", e.g. int(x) if that is what you mean" if dt.is_int else ""))
    return convert(v)


def _declared(p: N.TensorParam | N.ScalarParam) -> str:
    if isinstance(p, N.TensorParam):
        return f"{p.name}: {p.dtype}{_dims(p)}"
    return f"{p.name}: {p.dtype} scalar"


def _dims(p: N.TensorParam) -> str:
    return "[" + ", ".join(str(d) for d in p.dims) + "]"


def _describe(v: Any) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _conversion(name: str, info: ArrayInfo, want: DType) -> str:
    """How to convert array `name` to `want` in its own library, as text for a hint (empty if unknown)."""
    if info.library == "torch" and torch_name(want):
        return f" ({name}.to(torch.{torch_name(want)}))"
    if info.library in ("numpy", "cupy") and not want.is_packed:
        return f" ({name}.astype('{want.numpy.name}'))"
    return ""
