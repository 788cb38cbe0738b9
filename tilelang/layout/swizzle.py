"""XOR swizzles of offsets, and a shared-memory bank-conflict model to judge them.

A swizzle permutes offsets so that addresses a warp reads together fall in
different shared-memory banks, without padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .algebra import Layout
from .errors import LayoutError
from .int_tuple import IntTuple


@dataclass(frozen=True)
class Swizzle:
    """CuTe's ``Swizzle<bits, base, shift>`` acting on integer offsets.

    The `bits` bits of the offset starting at bit ``base + shift`` (the "yyy"
    bits) are XOR-ed into the `bits` bits starting at bit `base` (the "zzz"
    bits); the lowest `base` bits (one unit of ``2**base`` elements, e.g. a
    16-byte vector) are never touched. A negative `shift` reads the yyy bits
    below the zzz bits instead. Because ``|shift| >= bits`` the two fields do
    not overlap, so the swizzle is an involution (its own inverse), and hence a
    bijection on every aligned block of ``2**(base + bits + |shift|)`` offsets.

    Example: ``Swizzle(3, 3, 3)`` on a row-major tile of 64 halfs per row XORs
    ``row % 8`` into the 16-byte chunk index ``col // 8``.
    """

    bits: int
    base: int
    shift: int

    def __post_init__(self) -> None:
        if self.bits < 0 or self.base < 0:
            raise LayoutError(f"swizzle bits and base must be non-negative, got {self}")
        if abs(self.shift) < self.bits:
            raise LayoutError(f"swizzle {self}: |shift| must be at least bits, or the XOR-ed fields overlap")

    @property
    def yyy_mask(self) -> int:
        """Bits read (the source of the XOR)."""
        return ((1 << self.bits) - 1) << (self.base + max(self.shift, 0))

    @property
    def zzz_mask(self) -> int:
        """Bits written (the destination of the XOR)."""
        return ((1 << self.bits) - 1) << (self.base - min(self.shift, 0))

    def __call__(self, offset: int) -> int:
        yyy = offset & self.yyy_mask
        return offset ^ (yyy >> self.shift if self.shift >= 0 else yyy << -self.shift)

    def __repr__(self) -> str:
        return f"Sw<{self.bits},{self.base},{self.shift}>"


@dataclass(frozen=True)
class ComposedLayout:
    """``swizzle o layout``: the layout's offset, then swizzled."""

    swizzle: Swizzle
    layout: Layout

    @property
    def size(self) -> int:
        return self.layout.size

    def __call__(self, *coord: IntTuple) -> int:
        return self.swizzle(self.layout(*coord))

    def __repr__(self) -> str:
        return f"{self.swizzle} o {self.layout}"


NUM_BANKS = 32
BANK_BYTES = 4
_LANES_PER_PHASE = {1: 32, 2: 32, 4: 32, 8: 16, 16: 8}


def wavefronts(addresses: Sequence[Optional[int]], access_bytes: int = 4) -> int:
    """Shared-memory wavefronts one warp-wide access takes, under the model below.

    `addresses` are the byte addresses of the (up to) 32 lanes, ``None`` for an
    inactive lane; each lane accesses `access_bytes` (1, 2, 4, 8 or 16) bytes.

    Model: shared memory has 32 banks of 4 bytes; word ``w = address // 4``
    lives in bank ``w % 32``. The warp's request is served in phases of
    consecutive lanes that each move at most 128 bytes: all 32 lanes for
    accesses up to 4 bytes, half-warps (16 lanes) for 8-byte accesses, and
    quarter-warps (8 lanes) for 16-byte accesses (e.g. ldmatrix rows,
    ``ld.shared.v4``). In a phase each bank delivers one distinct word per
    wavefront, and lanes reading the same word share it (broadcast), so a
    phase takes ``max over banks of (distinct words in that bank)`` wavefronts.
    """
    if access_bytes not in _LANES_PER_PHASE:
        raise LayoutError(f"access width must be one of {sorted(_LANES_PER_PHASE)} bytes, got {access_bytes}")
    if len(addresses) > 32:
        raise LayoutError(f"a warp has 32 lanes, got {len(addresses)} addresses")
    for lane, address in enumerate(addresses):
        if address is not None and (address < 0 or address % access_bytes):
            raise LayoutError(f"lane {lane}: address {address} is not a non-negative multiple of {access_bytes}")
    lanes = _LANES_PER_PHASE[access_bytes]
    words_per_access = max(access_bytes // BANK_BYTES, 1)
    total = 0
    for start in range(0, len(addresses), lanes):
        words = {
            address // BANK_BYTES + k
            for address in addresses[start : start + lanes]
            if address is not None
            for k in range(words_per_access)
        }
        per_bank: dict[int, int] = {}
        for w in words:
            per_bank[w % NUM_BANKS] = per_bank.get(w % NUM_BANKS, 0) + 1
        total += max(per_bank.values(), default=0)
    return total


def bank_conflicts(addresses: Sequence[Optional[int]], access_bytes: int = 4) -> int:
    """Extra wavefronts beyond one per active phase: 0 means conflict-free.

    See `wavefronts` for the model and the arguments.
    """
    lanes = _LANES_PER_PHASE.get(access_bytes, 32)
    active_phases = sum(
        any(a is not None for a in addresses[start : start + lanes]) for start in range(0, len(addresses), lanes)
    )
    return wavefronts(addresses, access_bytes) - active_phases
