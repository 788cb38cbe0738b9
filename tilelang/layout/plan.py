"""The result of layout inference: every tile's layout and every statement's instructions.

A `LayoutPlan` is immutable and compares by value. Backends ask it:

* `plan.holders("acc", (i, j))` -> ((thread, register), ...): who holds an element of a
  register tile, at which per-thread register index (several threads if replicated);
  `plan.values("acc", thread)` -> the coordinates a thread holds, by register index;
* `plan.offset("a", (i, j))` / `plan.byte_offset(...)` -> where an element of a shared tile
  lives (swizzle and padding applied); `plan.storage_bytes("a")` -> bytes to allocate;
* `plan.stmt(s)` -> the `CopyPlan` / `GemmPlan` / `DequantPlan` / `AssignPlan` of an IR
  statement of `tk.kernel`, and `plan.instrs(s)` -> the instructions it issues
  (`Instr.name` like "cp.async.16", "ldmatrix.x4.trans", "mma.m16n8k16.f32.f16",
  `Instr.atom` the atoms-table entry with its exact lane layouts);
* `plan.expr_mapping(s, e)` -> the task mapping of a tile-valued subexpression `e` of an
  assignment `s`; `AssignPlan.conversions` where a value changes mapping and
  `AssignPlan.reduces` how each reduction combines values (in-thread, shuffles, warps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ..ir import nodes as N
from ..ir.types import TileType
from .atoms import Atom
from .cost import Cost, offset_table
from .shared import SharedLayout
from .task_mapping import TaskMapping
from .tiling import WarpGrid

Path = tuple[int, ...]  # child indices from an assignment's value to a subexpression (see `children`)


@dataclass(frozen=True)
class Instr:
    """One instruction a statement issues; `vector` elements per thread per instruction."""

    name: str
    role: str  # "load", "store", "A", "B", "mma", "reduce", ...
    vector: int = 1
    atom: Optional[Atom] = field(default=None, repr=False)  # the atoms-table entry, where one exists


@dataclass(frozen=True)
class TileLayout:
    """A tile's layout: a task mapping (register tiles) or a shared-memory layout (shared tiles).

    `expr` is the same layout as a `layout=` annotation; `bank_conflicts` the extra shared
    wavefronts of every access to a shared tile in one pass over the kernel body."""

    name: str
    type: TileType
    expr: N.LayoutExpr
    mapping: Optional[TaskMapping] = None
    shared: Optional[SharedLayout] = None
    bank_conflicts: int = 0
    origin: str = field(default="", compare=False)  # why it has this layout


@dataclass(frozen=True)
class CopyPlan:
    """`mapping` says which thread moves which element (over the tile's shape)."""

    index: int
    stmt: N.Copy
    mapping: TaskMapping
    instrs: tuple[Instr, ...]
    conversion: str = "none"  # register -> register copies: "none", "registers" or "shared"
    replicas: int = 1  # threads holding each element; stores are issued by one of them


@dataclass(frozen=True)
class GemmPlan:
    """`atom` None means no tensor-core atom fits (dtype or shape): a SIMT fma loop."""

    index: int
    stmt: N.Gemm
    atom: Optional[Atom]
    grid: Optional[WarpGrid]
    a: Optional[TaskMapping]  # fragment mappings, in the operand tiles' orientation
    b: Optional[TaskMapping]
    c: TaskMapping
    instrs: tuple[Instr, ...]


@dataclass(frozen=True)
class DequantPlan:
    index: int
    stmt: N.Dequant
    mapping: TaskMapping
    instrs: tuple[Instr, ...]


@dataclass(frozen=True)
class Conversion:
    """The value at `path` is computed in mapping `src` and consumed in `dst`."""

    path: Path
    src: TaskMapping
    dst: TaskMapping
    kind: str  # "registers" (free renaming) or "shared" (threads exchange values)


@dataclass(frozen=True)
class ReducePlan:
    """How the reduction at `path` combines: `in_thread` values in each thread, then warp
    shuffles with `xor_masks`, then `cross_warp` warps through shared memory (1: none)."""

    path: Path
    axis: int
    input: TaskMapping
    output: TaskMapping
    in_thread: int
    xor_masks: tuple[int, ...]
    cross_warp: int
    shuffle: Optional[Atom] = field(default=None, repr=False)  # the shfl.bfly atom, where lanes combine


@dataclass(frozen=True)
class AssignPlan:
    index: int
    stmt: N.Assign
    mapping: TaskMapping  # the target tile's
    exprs: tuple[tuple[Path, TaskMapping], ...]
    conversions: tuple[Conversion, ...]
    reduces: tuple[ReducePlan, ...]


StmtPlan = Union[CopyPlan, GemmPlan, DequantPlan, AssignPlan]


def children(e) -> tuple:
    """The expression children of an expression node, in field order (what a `Path` indexes)."""
    if isinstance(e, N.BinOp):
        return (e.lhs, e.rhs)
    if isinstance(e, N.Where):
        return (e.cond, e.a, e.b)
    if isinstance(e, (N.Unary, N.Cast, N.Reduce, N.Broadcast, N.Transpose)):
        return (e.x,)
    return ()


def find_path(root, target) -> Optional[Path]:
    """The path of `target` (by identity) inside `root`."""
    if root is target:
        return ()
    for i, c in enumerate(children(root)):
        p = find_path(c, target)
        if p is not None:
            return (i,) + p
    return None


@dataclass(frozen=True)
class LayoutPlan:
    kernel: str
    threads: int
    tiles: tuple[TileLayout, ...]
    stmts: tuple[StmtPlan, ...]
    cost: Cost

    def tile(self, name: str) -> TileLayout:
        for t in self.tiles:
            if t.name == name:
                return t
        raise KeyError(f"kernel '{self.kernel}' has no tile '{name}'")

    def mapping(self, name: str) -> TaskMapping:
        m = self.tile(name).mapping
        if m is None:
            raise KeyError(f"'{name}' is a shared tile; it has a storage layout, not a task mapping")
        return m

    def holders(self, name: str, coord: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """Every (thread, register index) holding element `coord` of register tile `name`."""
        return self.mapping(name).thread_of(tuple(coord))

    def values(self, name: str, thread: int) -> tuple[tuple[int, ...], ...]:
        """The coordinates `thread` holds in register tile `name`, by register index."""
        return self.mapping(name).values_of(thread)

    def shared(self, name: str) -> SharedLayout:
        s = self.tile(name).shared
        if s is None:
            raise KeyError(f"'{name}' is a register tile; it has a task mapping, not a storage layout")
        return s

    def offset(self, name: str, coord: tuple[int, ...]) -> int:
        """Element offset of `coord` in shared tile `name` (leading axes flattened into rows)."""
        layout = self.shared(name)
        shape = self.tile(name).type.shape
        if len(coord) != len(shape) or not all(0 <= c < s for c, s in zip(coord, shape)):
            raise IndexError(f"{coord} is outside '{name}' of shape {shape}")
        row = 0
        for c, s in zip(coord[:-1], shape[:-1]):
            row = row * s + c
        return int(offset_table(layout)[row, coord[-1]])

    def byte_offset(self, name: str, coord: tuple[int, ...]) -> int:
        return self.offset(name, coord) * self.shared(name).elem_bytes

    def storage_bytes(self, name: str) -> int:
        s = self.shared(name)
        return s.cosize * s.elem_bytes

    def stmt(self, s: N.Stmt) -> StmtPlan:
        """The plan of statement `s` (a node of the planned kernel: identity first, then equality)."""
        for p in self.stmts:
            if p.stmt is s:
                return p
        for p in self.stmts:
            if p.stmt == s:
                return p
        raise KeyError(f"no plan for statement {s!r}")

    def instrs(self, s: N.Stmt) -> tuple[Instr, ...]:
        return self.stmt(s).instrs if not isinstance(self.stmt(s), AssignPlan) else ()

    def expr_mapping(self, s: N.Assign, e) -> TaskMapping:
        p = self.stmt(s)
        path = find_path(s.value, e)
        for q, m in p.exprs:
            if q == path:
                return m
        raise KeyError(f"{e!r} is not a tile-valued subexpression of {s!r}")


__all__ = ["AssignPlan", "Conversion", "CopyPlan", "DequantPlan", "GemmPlan", "Instr", "LayoutPlan", "ReducePlan",
           "StmtPlan", "TileLayout", "children", "find_path"]
