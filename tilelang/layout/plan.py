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
  "wgmma.m64n64k16.f32.f16", `Instr.atom` the atoms-table entry with its exact lane layouts);
* `plan.tile(name).storage` -> where a tile lives: "registers", "shared", "resident" (a
  register tile only gemms read, kept in shared memory in `.shared`) or "virtual" (iota/full
  values recomputed where used, never stored);
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
from .cost import Access, Cost, offset_table, realize
from .shared import SharedLayout, flat_coord
from .task_mapping import TaskMapping
from .packing import PackedLayout
from .target import Target
from .tiling import MmaTiling
from .wgmma import OperandPlan, WgmmaTiling

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
    """A tile's layout: a task mapping (register tiles) or a shared-memory layout (shared tiles, and
    register tiles kept in shared memory).

    `expr` is the same layout as a `layout=` annotation (None where the tile has no layout:
    virtual tiles); `accesses` how the code reads and writes a shared tile, from which
    `bank_conflicts` (the extra shared wavefronts of one pass over the kernel body) is counted
    when asked (the backends never need it)."""

    name: str
    type: TileType
    expr: Optional[N.LayoutExpr]
    mapping: Optional[TaskMapping] = None
    shared: Optional[SharedLayout] = None
    storage: str = "registers"  # "registers", "shared", "resident" or "virtual"
    origin: str = field(default="", compare=False)  # why it has this layout
    accesses: tuple[Access, ...] = field(default=(), compare=False, repr=False)

    @property
    def bank_conflicts(self) -> int:
        return sum(realize(self.shared, a).conflicts for a in self.accesses) if self.shared is not None else 0

    @property
    def wavefronts(self) -> int:
        return sum(realize(self.shared, a).wavefronts for a in self.accesses) if self.shared is not None else 0


@dataclass(frozen=True)
class CopyPlan:
    """`mapping` says which thread moves which element (over the tile's shape), in runs of
    `vector` consecutive elements along the last axis (one access per run where the run is
    inside the tensor and aligned; element by element otherwise). None where no register tile
    takes part: the threads sweep the tile in turn, `vector` elements at a time (run q of the
    row-major tile by thread q % threads)."""

    index: int
    stmt: N.Copy | N.AtomicAdd
    mapping: Optional[TaskMapping]
    instrs: tuple[Instr, ...]
    conversion: str = "none"  # register -> register copies: "none", "registers" or "shared"
    replicas: int = 1  # threads holding each element; stores are issued by one of them
    vector: int = 1


@dataclass(frozen=True)
class GemmPlan:
    """The instruction a gemm runs on: `kind` "wgmma" (sm_90a, operands through descriptors
    `a_desc` / `b_desc`), "mma" (mma.sync.m16n8k16 on a warp grid, operands by ldmatrix) or
    "fma" (a SIMT loop: no tensor-core atom fits the dtypes or shapes, or an operand layout the
    instruction cannot read). `tiling` is the `WgmmaTiling` / `MmaTiling` of the accumulator."""

    index: int
    stmt: N.Gemm
    kind: str
    atom: Optional[Atom]
    tiling: Union[MmaTiling, WgmmaTiling, None]
    a: Optional[TaskMapping]  # fragment mappings, in the operand tiles' orientation (mma)
    b: Optional[TaskMapping]
    c: TaskMapping
    instrs: tuple[Instr, ...]
    a_desc: Optional[OperandPlan] = field(default=None, repr=False)
    b_desc: Optional[OperandPlan] = field(default=None, repr=False)
    why: str = field(default="", compare=False)  # why this instruction (and not a faster one)

    @property
    def grid(self) -> str:
        t = self.tiling
        if isinstance(t, WgmmaTiling):
            return f"{t.wgm}x{t.wgn} warpgroups"
        return f"{t.wm}x{t.wn} warps" if t is not None else "all threads"


@dataclass(frozen=True)
class DequantPlan:
    """Each thread dequantizes its values of `mapping` in runs of `vector` fields (one load of
    the packed bytes per run where it is inside the tensor and aligned). Into a shared tile
    (`mapping` None) the threads sweep the tile in turn, `vector` fields at a time."""

    index: int
    stmt: N.Dequant
    mapping: Optional[TaskMapping]
    instrs: tuple[Instr, ...]
    vector: int = 1


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


def at_path(root, path: Path):
    """The subexpression of `root` that `path` leads to."""
    for i in path:
        root = children(root)[i]
    return root


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
    target: Target
    tiles: tuple[TileLayout, ...]
    stmts: tuple[StmtPlan, ...]
    base_cost: Cost = field(compare=False)  # everything but shared-memory wavefronts
    packed: tuple[PackedLayout, ...] = ()  # the storage order of each `@ packed` tensor

    def packed_layout(self, tensor: str) -> PackedLayout:
        for p in self.packed:
            if p.tensor == tensor:
                return p
        raise KeyError(f"kernel '{self.kernel}' has no packed tensor '{tensor}'")

    @property
    def cost(self) -> Cost:
        """The plan's cost, shared-memory wavefronts and bank conflicts counted now (they are slow to count)."""
        return self.base_cost + Cost(bank_conflicts=sum(t.bank_conflicts for t in self.tiles),
                                     smem_wavefronts=sum(t.wavefronts for t in self.tiles))

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

    def storage(self, name: str) -> str:
        return self.tile(name).storage

    def offset(self, name: str, coord: tuple[int, ...]) -> int:
        """Element offset of `coord` in shared tile `name` (leading axes flattened into rows)."""
        layout = self.shared(name)
        shape = self.tile(name).type.shape
        if len(coord) != len(shape) or not all(0 <= c < s for c, s in zip(coord, shape)):
            raise IndexError(f"{coord} is outside '{name}' of shape {shape}")
        return int(offset_table(layout)[flat_coord(shape, coord)])

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

    def gemm(self, s: N.Gemm) -> GemmPlan:
        p = self.stmt(s)
        assert isinstance(p, GemmPlan)
        return p

    def expr_mapping(self, s: N.Assign, e) -> TaskMapping:
        p = self.stmt(s)
        path = find_path(s.value, e)
        for q, m in p.exprs:
            if q == path:
                return m
        raise KeyError(f"{e!r} is not a tile-valued subexpression of {s!r}")


__all__ = ["AssignPlan", "Conversion", "CopyPlan", "DequantPlan", "GemmPlan", "Instr", "LayoutPlan", "ReducePlan",
           "StmtPlan", "TileLayout", "at_path", "children", "find_path"]
