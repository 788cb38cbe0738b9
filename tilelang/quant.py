"""Bit-packing and group quantization of weights, in the format `dequant` reads.

Format: a logical [..., K] tensor of `bits`-bit integers is stored as uint8
[..., ceil(K * bits / 8)], each row an LSB-first bit stream (element j occupies
bits j*bits .. j*bits+bits-1 of the row).  Signed values are two's complement.
Group-wise scales (and zero points) have shape [..., cdiv(K, group)]:
    w = (q - zero) * scale
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .diagnostics import TileError
from .ir.dtypes import DTYPES


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise TileError(f"bits={bits!r} is out of range", hint="use 1 to 8 bits")


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack integers (signed or unsigned, each fitting in `bits`) along the last axis."""
    _check_bits(bits)
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.integer):
        raise TileError(f"pack takes integers, got {v.dtype}", hint="round and cast, e.g. np.rint(x).astype(np.int8)")
    lo, hi = (-(1 << (bits - 1)), (1 << bits) - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise TileError(f"values in [{v.min()}, {v.max()}] do not fit {bits} bits")
    k = v.shape[-1]
    u = (v.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint8)
    bitplanes = ((u[..., None] >> np.arange(bits, dtype=np.uint8)) & 1).astype(np.uint8)
    stream = bitplanes.reshape(*v.shape[:-1], k * bits)
    pad = (-stream.shape[-1]) % 8
    if pad:
        stream = np.concatenate([stream, np.zeros((*v.shape[:-1], pad), np.uint8)], axis=-1)
    return np.packbits(stream, axis=-1, bitorder="little")


def unpack(packed: np.ndarray, bits: int, length: int, signed: bool) -> np.ndarray:
    """Inverse of `pack`: int32 array [..., length]."""
    _check_bits(bits)
    p = np.asarray(packed).view(np.uint8)
    stream = np.unpackbits(p, axis=-1, bitorder="little")[..., : length * bits]
    planes = stream.reshape(*p.shape[:-1], length, bits).astype(np.int32)
    v = (planes << np.arange(bits, dtype=np.int32)).sum(axis=-1, dtype=np.int32)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v.astype(np.int32)


def quantize(w: np.ndarray, bits: int, group: int, signed: bool = False, zero_point: bool = True):
    """Round-to-nearest group quantization of a float [..., K] matrix.

    Returns (packed uint8, scale f32 [..., G], zero f32 [..., G] or None) such
    that `(unpack(packed) - zero) * scale` approximates `w`; `group` may be K
    (per-channel)."""
    _check_bits(bits)
    w = np.asarray(w, dtype=np.float32)
    k = w.shape[-1]
    if group < 1:
        raise TileError(f"group={group} must be positive")
    g = -(-k // group)
    padded = np.concatenate([w, np.zeros((*w.shape[:-1], g * group - k), np.float32)], axis=-1)
    blocks = padded.reshape(*w.shape[:-1], g, group)
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if zero_point:
        lo, hi = blocks.min(-1), blocks.max(-1)
        scale = np.maximum(hi - lo, 1e-8) / (qmax - qmin)
        zero = np.rint(qmin - lo / scale)
        q = np.clip(np.rint(blocks / scale[..., None] + zero[..., None]), qmin, qmax)
    else:
        scale = np.maximum(np.abs(blocks).max(-1), 1e-8) / max(qmax, 1)
        zero = None
        q = np.clip(np.rint(blocks / scale[..., None]), qmin, qmax)
    q = q.reshape(*w.shape[:-1], g * group)[..., :k].astype(np.int32)
    return pack(q, bits), scale.astype(np.float32), None if zero is None else zero.astype(np.float32)


def dequantize(packed: np.ndarray, bits: int, length: int, signed: bool, scale: np.ndarray,
               group: int, zero: np.ndarray | None = None) -> np.ndarray:
    """Reference dequantization in f32 (the semantics of the `dequant` statement)."""
    q = unpack(packed, bits, length, signed).astype(np.float32)
    idx = np.arange(length) // group
    s = np.asarray(scale, np.float32)[..., idx]
    z = 0.0 if zero is None else np.asarray(zero, np.float32)[..., idx]
    return (q - z) * s


# ----------------------------------------------------------------------------- weights packed for a kernel

@dataclass(frozen=True)
class PackedWeight:
    """A quantized [N, K] weight stored in the order a kernel's layout plan chose for it
    (`W: u4[N, K] @ packed`; see `tilelang.layout.packing`). Made by `TileKernel.pack`.

    `data` is uint8 [tiles along N, tiles along K, bytes per tile] (numpy, torch or cupy, on the
    device the kernel runs on); `consts` are the compile-time constants the order depends on (the
    tile shape, the threads), which a call takes from here; `signature` names the order, so a call
    whose plan orders the tensor otherwise is an error, never a wrong result."""

    data: Any
    shape: tuple[int, int]
    dtype: str  # "u4", "i4", ...: the fields' type
    consts: dict = field(default_factory=dict)
    signature: str = ""

    @property
    def bits(self) -> int:
        return DTYPES[self.dtype].bits

    def to(self, device) -> "PackedWeight":
        """The same weight with its bytes on `device` (torch)."""
        import torch
        data = self.data if type(self.data).__module__.startswith("torch") else torch.from_numpy(np.asarray(self.data))
        return dataclasses.replace(self, data=data.to(device))

    def numpy(self) -> np.ndarray:
        d = self.data
        if type(d).__module__.startswith("torch"):
            return d.detach().cpu().numpy()
        if type(d).__module__.startswith("cupy"):
            return d.get()
        return np.asarray(d)

    def values(self) -> np.ndarray:
        """The integers [N, K] it holds (sign-extended for signed dtypes)."""
        from .layout.packing import unpack as unpack_order
        return unpack_order(self.numpy(), self.layout(), *self.shape, DTYPES[self.dtype].is_signed)

    def plain(self) -> np.ndarray:
        """The same integers in the plain packing (`pack(values, bits)`: uint8 [N, ceil(K * bits / 8)])."""
        return pack(self.values(), self.bits)

    def layout(self):
        from .layout.packing import PackedLayout
        return PackedLayout.from_signature(self.signature)

    def save(self, path, name: str = "weight") -> None:
        """Write to a safetensors file, the order's signature and constants in the metadata."""
        from safetensors.numpy import save_file
        meta = {"tilelang.packed": json.dumps({"shape": list(self.shape), "dtype": self.dtype,
                                               "consts": self.consts, "signature": self.signature})}
        tmp = Path(str(path) + ".tmp")
        save_file({name: np.ascontiguousarray(self.numpy())}, str(tmp), metadata=meta)
        os.replace(tmp, path)

    @staticmethod
    def load(path, name: str = "weight") -> "PackedWeight":
        """Read a weight written by `save`; a file without the packing metadata is an error."""
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as f:
            meta = (f.metadata() or {}).get("tilelang.packed")
            if meta is None:
                raise TileError(f"{path}: tensor '{name}' has no tilelang packing metadata",
                                hint="only files written by PackedWeight.save hold packed weights")
            m = json.loads(meta)
            return PackedWeight(f.get_tensor(name), tuple(m["shape"]), m["dtype"], m["consts"], m["signature"])
