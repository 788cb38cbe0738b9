"""The storage order of packed weights: chosen by the layout plan, so each thread loads its fragments whole.

A tensor declared `W: u4[N, K] @ packed` is read only by `dequant`s into one register tile
shape. The plan gives that tile a task mapping (for a gemm operand: the mma fragment); the
packed order stores the tensor tile by tile (the dequant's windows, row-major over the tile
grid), and inside a tile each thread's values in `run`-field runs, run c of every thread
before run c + 1 ("thread-major runs"):

    field index of (thread t, value v) in its tile = ((v // run) * threads + t) * run + v % run

so a warp's loads of one run are one contiguous, coalesced stretch, and each thread's run is one
vector load (16 bytes for 4-bit fields: 32 values, 4 k-steps of an mma A fragment). Fields are
bit-packed little-endian inside a run, as `tilelang.quant.pack` packs rows. Tiles at the tensor's
edges are padded with zero fields.

`pack` / `unpack` convert between this order and a plain [N, K] integer matrix; the layout's
`signature` names everything the order depends on, so a weight packed for another plan is refused
rather than read as garbage (`tilelang.quant.PackedWeight`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..diagnostics import TileError, Unsupported
from . import tv
from .task_mapping import TaskMapping


@dataclass(frozen=True)
class PackedLayout:
    """How packed tensor `tensor` is stored: tiles of `block` (rows, cols), `bits`-bit fields, each
    tile in the order of `mapping` (over `block`) in runs of `run` fields."""

    tensor: str
    block: tuple[int, int]
    bits: int
    mapping: TaskMapping
    run: int

    @property
    def threads(self) -> int:
        return self.mapping.num_threads

    @property
    def run_bytes(self) -> int:
        return self.run * self.bits // 8

    @property
    def block_bytes(self) -> int:
        return self.block[0] * self.block[1] * self.bits // 8

    @property
    def signature(self) -> str:
        """Everything the order depends on, as canonical JSON (stored with packed weights)."""
        digits = [[d.kind, d.dim, d.extent] for d in tv.digits(self.mapping)]
        return json.dumps({"order": "thread-major runs/v1", "block": list(self.block), "bits": self.bits,
                           "run": self.run, "mapping": digits}, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_signature(signature: str, tensor: str = "") -> "PackedLayout":
        d = json.loads(signature)
        mapping = tv.from_digits([tv.Digit(k, dim, e) for k, dim, e in d["mapping"]], len(d["block"]))
        return PackedLayout(tensor, tuple(d["block"]), d["bits"], mapping, d["run"])

    @cached_property
    def order(self) -> np.ndarray:
        """[rows, cols]: the field index of each element of a tile."""
        m, T, R = self.mapping, self.threads, self.run
        lin = tv.table(m)  # [threads, values]: the row-major element each (thread, value) holds
        t, v = np.meshgrid(np.arange(T), np.arange(m.values_per_thread), indexing="ij")
        out = np.full(self.block[0] * self.block[1], -1, dtype=np.int64)
        out[lin] = ((v // R) * T + t) * R + v % R
        return out.reshape(self.block)

    @cached_property
    def gather(self) -> np.ndarray:
        """[fields]: the row-major element each field of a tile holds (the inverse of `order`)."""
        return np.argsort(self.order.ravel())

    def tiles(self, n: int, k: int) -> tuple[int, int]:
        return -(-n // self.block[0]), -(-k // self.block[1])


def packed_layout(tensor: str, block: tuple[int, int], bits: int, mapping: TaskMapping) -> PackedLayout | None:
    """The packed layout of a tensor dequantized into a tile of `block` held in `mapping`; None where the
    mapping gives an element to several threads (each would load it: a packed order stores it once)."""
    if tv.replication(mapping) != 1 or mapping.values_per_thread * mapping.num_threads != block[0] * block[1]:
        return None
    run = 1
    while run * 2 * bits <= 128 and mapping.values_per_thread % (run * 2) == 0:
        run *= 2
    while run * bits % 8:  # whole bytes per run
        run *= 2
    if mapping.values_per_thread % run:
        return None
    return PackedLayout(tensor, tuple(block), bits, mapping, run)


def pack(q: np.ndarray, layout: PackedLayout) -> np.ndarray:
    """Integers [N, K] (fields' values, signed ones as two's complement) in the packed order:
    uint8 [tiles along N, tiles along K, bytes per tile]."""
    n, k = q.shape
    tn, tk = layout.tiles(n, k)
    rows, cols = layout.block
    full = np.zeros((tn * rows, tk * cols), dtype=np.uint8)
    full[:n, :k] = np.asarray(q) & ((1 << layout.bits) - 1)
    blocks = full.reshape(tn, rows, tk, cols).transpose(0, 2, 1, 3).reshape(tn, tk, rows * cols)
    return _to_bytes(blocks[:, :, layout.gather], layout.bits)


def unpack(data: np.ndarray, layout: PackedLayout, n: int, k: int, signed: bool) -> np.ndarray:
    """The inverse of `pack`: integers [N, K] (sign-extended if `signed`)."""
    tn, tk = layout.tiles(n, k)
    rows, cols = layout.block
    fields = _from_bytes(np.asarray(data, dtype=np.uint8).reshape(tn, tk, -1), layout.bits, rows * cols)
    blocks = fields[:, :, layout.order.ravel()].reshape(tn, tk, rows, cols).transpose(0, 2, 1, 3)
    q = blocks.reshape(tn * rows, tk * cols)[:n, :k].astype(np.int32)
    if signed:
        q = np.where(q >= 1 << (layout.bits - 1), q - (1 << layout.bits), q)
    return q


def _to_bytes(fields: np.ndarray, bits: int) -> np.ndarray:
    """Fields (uint8) along the last axis, bit-packed little-endian into bytes (`tilelang.quant.pack`'s
    rows): for widths dividing 8 by whole-byte shifts, others bit plane by bit plane."""
    if 8 % bits == 0:
        per = 8 // bits
        g = fields.reshape(*fields.shape[:-1], -1, per)
        out = np.zeros(g.shape[:-1], dtype=np.uint8)
        for i in range(per):
            out |= g[..., i] << (i * bits)
        return out
    from ..quant import pack as pack_rows
    return pack_rows(fields, bits)


def _from_bytes(data: np.ndarray, bits: int, n: int) -> np.ndarray:
    if 8 % bits == 0:
        per, mask = 8 // bits, (1 << bits) - 1
        out = np.stack([(data >> (i * bits)) & mask for i in range(per)], axis=-1)
        return out.reshape(*data.shape[:-1], -1)[..., :n]
    from ..quant import unpack as unpack_rows
    return unpack_rows(data, bits, n, False)


def plain_only(backend: str, p) -> Unsupported:
    """The refusal of a backend that reads packed parameter `p` only in the plain [N, K] packing."""
    return Unsupported(f"the {backend} backend reads '{p.name}' only in the plain [N, K] packing, not in the plan's "
                     f"packed order", p.loc,
                     hint=f"run it with backend='cuda' (or 'reference'), or declare '{p.name}' without `@ packed` "
                          f"and pass tilelang.quant.pack(values, bits)")
