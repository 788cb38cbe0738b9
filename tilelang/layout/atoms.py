"""Instruction atoms: PTX instructions with the fixed thread-value layouts of their operands.

This is data for backends: each `Atom` names the instruction, its operands'
tile shapes and dtypes, and for each operand a `TaskMapping` from
``(lane, value)`` to the operand coordinate that lane holds (or supplies).

Conventions:

* mma operands are in math orientation: A is M x K, B is K x N, C/D are
  M x N. Value i of a lane is the PTX fragment element ``a_i``/``b_i``/``c_i``
  (PTX ISA, "Matrix Fragments for mma.m16n8k16", with ``groupID = lane >> 2``,
  ``threadID_in_group = lane % 4``).
* ldmatrix ``.xN`` loads N 8x8 matrices of 16-bit elements; the operand tile
  stacks them along rows (matrix i is rows ``8i .. 8i+7``). Operand ``src``
  maps lane l to row l (lanes ``>= 8N`` supply no address); value j of that
  lane is column j of the 16-byte row it addresses. Operand ``dst`` gives
  the element each lane receives: register i holds matrix i, two elements
  per register.
* Per-thread copies (cp.async, ld/st) are single-thread atoms over raw
  bytes (dtype ``b8``): they serve any element type whose size divides
  `bytes_per_thread`; compose with ``spatial`` for a warp-wide copy.
* `bytes_per_thread` is what one participating thread reads per instruction
  (the source operands; for mma, the A and B fragments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import LayoutError
from .task_mapping import TaskMapping, column_spatial, local, replicate, spatial

DTYPE_BYTES = {
    "f16": 2,
    "bf16": 2,
    "f32": 4,
    "f64": 8,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "s32": 4,
    "u32": 4,
    "b8": 1,
    "b16": 2,
    "b32": 4,
}


@dataclass(frozen=True)
class Operand:
    """One operand of an atom: a tile of `dtype` elements distributed by `mapping`."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    mapping: TaskMapping

    @property
    def bytes_per_thread(self) -> int:
        return self.mapping.values_per_thread * DTYPE_BYTES[self.dtype]


@dataclass(frozen=True)
class Atom:
    """An instruction and the layouts of its operands.

    `dtypes` lists the element types the atom serves; empty means any type
    whose size divides `bytes_per_thread` (raw-byte copies). `attrs` holds
    instruction-specific facts as (key, value) pairs, read with `attr`.
    """

    name: str
    kind: str
    ptx: str
    num_threads: int
    operands: tuple[Operand, ...]
    bytes_per_thread: int
    dtypes: tuple[str, ...] = ()
    attrs: tuple[tuple[str, object], ...] = ()

    def operand(self, name: str) -> Operand:
        for op in self.operands:
            if op.name == name:
                return op
        raise LayoutError(f"atom {self.name} has no operand {name!r}; it has {[o.name for o in self.operands]}")

    def attr(self, key: str) -> object:
        for k, v in self.attrs:
            if k == key:
                return v
        raise LayoutError(f"atom {self.name} has no attribute {key!r}; it has {[k for k, _ in self.attrs]}")

    def serves(self, dtype: str) -> bool:
        if dtype not in DTYPE_BYTES:
            raise LayoutError(f"unknown dtype {dtype!r}; known: {sorted(DTYPE_BYTES)}")
        if self.dtypes:
            return dtype in self.dtypes
        return self.bytes_per_thread % DTYPE_BYTES[dtype] == 0


# --- mma.sync m16n8k16 --------------------------------------------------------------

# Lane = groupID * 4 + threadID_in_group; spatial(8, 4) puts groupID on rows.
MMA_M16N8K16_A = local(1, 2) * local(2, 1) * spatial(8, 4) * local(1, 2)  # a_i: bit0 col+1, bit1 row+8, bit2 col+8
MMA_M16N8K16_B = local(2, 1) * column_spatial(4, 8) * local(2, 1)  # b_i: bit0 row+1, bit1 row+8; col = groupID
MMA_M16N8K16_C = local(2, 1) * spatial(8, 4) * local(1, 2)  # c_i: bit0 col+1, bit1 row+8


def _mma(d_type: str, ab_type: str) -> Atom:
    return Atom(
        name=f"mma.m16n8k16.{d_type}.{ab_type}",
        kind="mma",
        ptx=f"mma.sync.aligned.m16n8k16.row.col.{d_type}.{ab_type}.{ab_type}.{d_type}",
        num_threads=32,
        operands=(
            Operand("A", (16, 16), ab_type, MMA_M16N8K16_A),
            Operand("B", (16, 8), ab_type, MMA_M16N8K16_B),
            Operand("C", (16, 8), d_type, MMA_M16N8K16_C),
            Operand("D", (16, 8), d_type, MMA_M16N8K16_C),
        ),
        bytes_per_thread=(8 + 4) * DTYPE_BYTES[ab_type],
        dtypes=(ab_type,),
        attrs=(("m", 16), ("n", 8), ("k", 16), ("accumulator", d_type)),
    )


# --- ldmatrix -----------------------------------------------------------------------


def _ldmatrix(num: int, trans: bool) -> Atom:
    fragment = column_spatial(4, 8) * local(2, 1) if trans else spatial(8, 4) * local(1, 2)
    suffix = ".trans" if trans else ""
    return Atom(
        name=f"ldmatrix.x{num}{suffix}",
        kind="ldmatrix",
        ptx=f"ldmatrix.sync.aligned.m8n8.x{num}{suffix}.shared.b16",
        num_threads=32,
        operands=(
            Operand("src", (8 * num, 8), "b16", spatial(8 * num, 1) * local(1, 8)),
            Operand("dst", (8 * num, 8), "b16", local(num, 1) * fragment),
        ),
        bytes_per_thread=4 * num,
        dtypes=("f16", "bf16", "s16", "u16", "b16"),
        attrs=(("matrices", num), ("trans", trans), ("address_lanes", 8 * num), ("row_bytes", 16)),
    )


# --- per-thread copies ---------------------------------------------------------------


def _copy(name: str, kind: str, ptx: str, nbytes: int, attrs: tuple = ()) -> Atom:
    one_thread = local(nbytes)
    return Atom(
        name=name,
        kind=kind,
        ptx=ptx,
        num_threads=1,
        operands=(Operand("src", (nbytes,), "b8", one_thread), Operand("dst", (nbytes,), "b8", one_thread)),
        bytes_per_thread=nbytes,
        attrs=(("bytes", nbytes),) + attrs,
    )


def _cp_async(nbytes: int) -> Atom:
    cache = "cg" if nbytes == 16 else "ca"  # .cg (L2 only) exists for 16-byte copies only
    return _copy(
        f"cp.async.{nbytes}", "cp.async", f"cp.async.{cache}.shared.global", nbytes, (("cache", cache), ("async", True))
    )


_VECTOR = {4: "b32", 8: "v2.b32", 16: "v4.b32"}


def _ld_st(op: str, space: str, nbytes: int) -> Atom:
    return _copy(f"{op}.{space}.{_VECTOR[nbytes]}", f"{op}.{space}", f"{op}.{space}.{_VECTOR[nbytes]}", nbytes)


# --- warp shuffle --------------------------------------------------------------------

# Butterfly all-reduce: lane l combines its value with lane ``l ^ m`` for each
# mask m in turn; after the 5 steps every lane holds the reduction of all 32.
SHFL_BFLY_REDUCE = Atom(
    name="shfl.bfly.reduce",
    kind="shuffle",
    ptx="shfl.sync.bfly.b32",
    num_threads=32,
    operands=(
        Operand("in", (32,), "b32", spatial(32)),
        Operand("out", (1,), "b32", replicate(32) * local(1)),
    ),
    bytes_per_thread=4,
    dtypes=("f32", "s32", "u32", "b32"),
    attrs=(("xor_masks", (16, 8, 4, 2, 1)), ("member_mask", 0xFFFFFFFF)),
)

ATOMS: tuple[Atom, ...] = (
    _mma("f16", "f16"),
    _mma("f32", "f16"),
    _mma("f32", "bf16"),
    *(_ldmatrix(n, t) for t in (False, True) for n in (1, 2, 4)),
    *(_cp_async(n) for n in (4, 8, 16)),
    *(_ld_st(op, space, n) for op in ("ld", "st") for space in ("global", "shared") for n in (4, 8, 16)),
    SHFL_BFLY_REDUCE,
)


def get_atom(name: str) -> Atom:
    for atom in ATOMS:
        if atom.name == name:
            return atom
    raise LayoutError(f"no atom named {name!r}; known atoms: {[a.name for a in ATOMS]}")


def find_atoms(kind: Optional[str] = None, dtype: Optional[str] = None) -> tuple[Atom, ...]:
    """The atoms of `kind` (e.g. "mma", "ldmatrix", "cp.async", "ld.shared") serving `dtype`."""
    kinds = {a.kind for a in ATOMS}
    if kind is not None and kind not in kinds:
        raise LayoutError(f"unknown atom kind {kind!r}; known kinds: {sorted(kinds)}")
    return tuple(a for a in ATOMS if (kind is None or a.kind == kind) and (dtype is None or a.serves(dtype)))
