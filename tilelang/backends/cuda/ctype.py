"""Tile dtypes as C++ types, and the conversions between them, as C++ expression text.

Every element has a *storage* type (what registers, shared and global memory hold:
`__half` for f16) and a *compute* type (what arithmetic runs in: `float` for every
float, `long long` for every integer, `bool`).  A computed value is rounded to its
dtype after each operation, as the reference interpreter does, so compute values
of an f16 expression are always representable in f16.
"""
from __future__ import annotations

import math

from ...ir.dtypes import DType

_STORAGE = {
    "f32": "float", "f16": "__half", "bf16": "__nv_bfloat16", "f8e4m3": "__nv_fp8_e4m3",
    "f8e5m2": "__nv_fp8_e5m2", "i8": "signed char", "u8": "unsigned char", "i32": "int",
    "u32": "unsigned int", "i64": "long long", "bool": "bool",
}
_INT_RANGE = {"i8": (-128, 127), "u8": (0, 255), "i32": (-2**31, 2**31 - 1), "u32": (0, 2**32 - 1),
              "i64": (-2**63, 2**63 - 1)}


def storage(dt: DType) -> str:
    """The C++ type that holds one element (packed sub-byte integers live in bytes)."""
    if dt.is_packed:
        return "unsigned char"
    return _STORAGE[dt.name]


def nbytes(dt: DType) -> int:
    return 1 if dt.is_packed else max(dt.bits, 8) // 8


def compute(dt: DType) -> str:
    if dt.is_float:
        return "float"
    if dt.is_int:
        return "long long"
    return "bool"


def scalar_param(dt: DType) -> str:
    """The C++ type a scalar parameter of dtype `dt` is passed as (what the launcher packs): floats as
    float (narrower ones rounded in the kernel), integers as long long, bools as int."""
    return "int" if dt.kind == "bool" else compute(dt)


def kind(dt: DType) -> str:
    return "float" if dt.is_float else "int" if dt.is_int else "bool"


def to_compute(x: str, dt: DType) -> str:
    """Storage value -> compute value."""
    if dt.name == "f32" or dt.name == "bool":
        return x
    if dt.is_float:
        return f"tl::to_f32({x})"
    return f"(long long)({x})"


def from_compute(x: str, dt: DType) -> str:
    """Compute value (already representable in `dt`, or a float to round) -> storage value."""
    if dt.name in ("f32", "bool", "i64"):
        return x
    if dt.is_float:
        wrapper = f"tl::round_to<{storage(dt)}>("
        if x.startswith(wrapper) and _one_call(x, len(wrapper)):
            x = x[len(wrapper):-1]  # from_f32 rounds by itself
        return f"tl::from_f32<{storage(dt)}>({x})"
    return f"({storage(dt)})({x})"


def _one_call(x: str, start: int) -> bool:
    """Whether the parenthesis opened just before `start` closes at the end of `x`."""
    depth = 1
    for i in range(start, len(x)):
        depth += {"(": 1, ")": -1}.get(x[i], 0)
        if depth == 0:
            return i == len(x) - 1
    return False


def rounded(x: str, dt: DType) -> str:
    """Round a compute value to what `dt` can hold (narrow floats round, integers wrap)."""
    if dt.is_float:
        return x if dt.name == "f32" else f"tl::round_to<{storage(dt)}>({x})"
    if dt.is_int and dt.name != "i64":
        return f"(long long)({storage(dt)})({x})"
    return x


def cast(x: str, src_kind: str, dst: DType) -> str:
    """Convert a compute value of kind `src_kind` ("float"/"int"/"bool") to `dst`'s compute value.

    Floats to integers truncate and saturate (NaN gives 0), integers wrap, floats round
    to nearest: the rules of the reference interpreter."""
    if dst.kind == "bool":
        return x if src_kind == "bool" else f"(({x}) != 0)"
    if dst.is_float:
        f = x if src_kind == "float" else f"(({x}) ? 1.0f : 0.0f)" if src_kind == "bool" else f"(float)({x})"
        return rounded(f, dst)
    if src_kind == "float":
        lo, hi = _INT_RANGE[dst.name]
        return f"tl::f2i_sat({x}, {int_literal(lo)}, {int_literal(hi)})"
    return rounded(f"(long long)({x})", dst)


def convert(x: str, src: DType, dst: DType) -> str:
    """Storage value of `src` -> storage value of `dst` (the conversion `copy` performs)."""
    if src == dst:
        return x
    return from_compute(cast(to_compute(x, src), kind(src), dst), dst)


def literal(value, dt: DType) -> str:
    """A constant as a compute value of `dt`."""
    if dt.kind == "bool":
        return "true" if value else "false"
    if dt.is_float:
        v = float(value)
        if math.isnan(v):
            return "tl::nan_f32()"
        if math.isinf(v):
            return "tl::inf_f32()" if v > 0 else "(-tl::inf_f32())"
        return rounded(float_literal(v), dt)
    return int_literal(int(value))


def int_literal(v: int) -> str:
    """A `long long` literal (the most negative one cannot be written directly)."""
    return "(-9223372036854775807LL - 1)" if v == -2**63 else f"{v}LL"


def float_literal(v: float) -> str:
    """Shortest text that reads back as the same f32 value."""
    import numpy as np
    f = np.float32(v)
    if np.isinf(f):
        return "tl::inf_f32()" if f > 0 else "(-tl::inf_f32())"
    text = repr(float(f))
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def identity(op: str, dt: DType) -> str:
    """The neutral element of a reduction, as a compute value."""
    if op == "sum":
        return "0.0f" if dt.is_float else "0LL"
    if dt.is_float:
        return "(-tl::inf_f32())" if op == "max" else "tl::inf_f32()"
    return int_literal(-2**63) if op == "max" else int_literal(2**63 - 1)
