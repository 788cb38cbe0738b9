"""Element types of the tile language.

One frozen `DType` per name.  Sub-byte integers (`i1`..`i7`, `u1`..`u7`) exist only
as the element type of bit-packed global tensors: they are stored LSB-first along
the last dimension, each row starting on a byte boundary, and become ordinary
integers once loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str
    bits: int
    kind: str  # "float", "int", "uint" or "bool"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind in ("int", "float")

    @property
    def is_packed(self) -> bool:
        """True for sub-byte integers, which global tensors store bit-packed."""
        return self.is_int and self.bits < 8

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds one element (unpacked for sub-byte types)."""
        if self.is_packed:
            return np.dtype(np.int8 if self.is_signed else np.uint8)
        return _NUMPY[self.name]

    def __str__(self) -> str:
        return self.name


_NUMPY = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "f8e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "f8e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "i32": np.dtype(np.int32),
    "u32": np.dtype(np.uint32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}

f32 = DType("f32", 32, "float")
f16 = DType("f16", 16, "float")
bf16 = DType("bf16", 16, "float")
f8e4m3 = DType("f8e4m3", 8, "float")
f8e5m2 = DType("f8e5m2", 8, "float")
i8 = DType("i8", 8, "int")
u8 = DType("u8", 8, "uint")
i32 = DType("i32", 32, "int")
u32 = DType("u32", 32, "uint")
i64 = DType("i64", 64, "int")
bool_ = DType("bool", 1, "bool")

DTYPES: dict[str, DType] = {
    d.name: d for d in (f32, f16, bf16, f8e4m3, f8e5m2, i8, u8, i32, u32, i64, bool_)
}
for _bits in range(1, 8):
    DTYPES[f"i{_bits}"] = DType(f"i{_bits}", _bits, "int")
    DTYPES[f"u{_bits}"] = DType(f"u{_bits}", _bits, "uint")

FLOAT_NAMES = ("f32", "f16", "bf16", "f8e4m3", "f8e5m2")


# torch's dtype names (str(torch.float16) without "torch.") -> tile dtype names
_TORCH = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2",
          "int8": "i8", "uint8": "u8", "int32": "i32", "uint32": "u32", "int64": "i64", "bool": "bool"}


def listing() -> str:
    """Every dtype name, for error messages: whole-byte types one by one, sub-byte ones as ranges."""
    whole = [n for n, d in DTYPES.items() if not d.is_packed]
    return ", ".join(whole) + ", and bit-packed i1..i7, u1..u7"


def dtype(name: str) -> DType:
    """Look a dtype up by name; KeyError if unknown (callers turn it into a TileError)."""
    return DTYPES[name]


def dtype_list() -> str:
    """Every dtype of the table, for hints: runs of integer widths collapse ('i1..i8, i32, i64')."""
    parts = [d.name for d in DTYPES.values() if d.is_float]
    for kind, prefix in (("int", "i"), ("uint", "u")):
        bits = sorted(d.bits for d in DTYPES.values() if d.kind == kind)
        runs: list[list[int]] = []
        for b in bits:
            if runs and b == runs[-1][-1] + 1:
                runs[-1].append(b)
            else:
                runs.append([b])
        parts += [f"{prefix}{r[0]}..{prefix}{r[-1]}" if len(r) > 2 else ", ".join(f"{prefix}{b}" for b in r)
                  for r in runs]
    return ", ".join(parts + [d.name for d in DTYPES.values() if d.kind == "bool"])


def numpy_alias(name: str) -> str | None:
    """The tile dtype that numpy (and torch) call `name` ('float16' -> 'f16'), or None."""
    name = name.removeprefix("torch.").removeprefix("np.")
    return next((tile for tile, nd in _NUMPY.items() if nd.name == name), None)


def from_numpy(dt: np.dtype) -> DType | None:
    """The tile dtype that a numpy/ml_dtypes array dtype stores, or None."""
    dt = np.dtype(dt)
    for name, nd in _NUMPY.items():
        if nd == dt:
            return DTYPES[name]
    return None


def from_torch(dt) -> DType | None:
    """The tile dtype that a torch dtype stores, or None (float64, complex, ...)."""
    return DTYPES.get(_TORCH.get(str(dt).removeprefix("torch."), ""))


def torch_name(dt: DType) -> str | None:
    """torch's name of a dtype ("float16"), or None where torch has none (sub-byte types)."""
    return next((t for t, n in _TORCH.items() if n == dt.name), None)


def torch_dtypes() -> dict:
    """Tile dtype name -> the torch dtype that stores it (the dtypes torch has)."""
    import torch
    return {n: getattr(torch, t) for t, n in _TORCH.items() if hasattr(torch, t)}


def from_user(v) -> DType | None:
    """The dtype a caller gives as a dtype parameter's value, or None if `v` names none.

    Takes a DType, a tile dtype name ("f16", "u4"), or a torch or numpy dtype (or its name)."""
    if isinstance(v, DType):
        return v
    if isinstance(v, str):
        return DTYPES.get(v) or DTYPES.get(_TORCH.get(v.removeprefix("torch."), ""))
    if type(v).__module__.split(".")[0] == "torch":
        return from_torch(v)
    try:
        return from_numpy(np.dtype(v))
    except TypeError:
        return None


def packed_row_bytes(length: int, bits: int) -> int:
    """Bytes that one packed row of `length` elements of `bits` bits occupies."""
    return (length * bits + 7) // 8
