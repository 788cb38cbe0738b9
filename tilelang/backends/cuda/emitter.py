"""What every statement emitter of the CUDA backend shares: where code goes (a `cir` tree), barriers,
scratch memory, loops over a thread's values, and staging a register tile through shared memory.

Barriers follow the synchronization rules of `codegen.py`'s notes; each statement asks for the ones it
needs, and `cir.drop_redundant_barriers` removes the doubles.
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext

from ...ir import nodes as N
from ...ir.dtypes import DType
from ...ir.types import TileType
from ...ir.visit import StmtVisitor, walk_stmts
from ...passes.infer import TypedKernel
from . import cexpr as cx
from . import cir
from . import ctype
from . import mapping as M
from .expr import ExprEmitter, cname
from .plan import Plan
from .templating import templates

SCRATCH_ALIGN = 16


class Emitter(StmtVisitor):
    """The state the statement emitters share and their primitives. Each family (elementwise, reduce,
    copies, gemm, dequant, pipeline) derives from it and `codegen.KernelGen` combines them; a family
    calls another's public methods through `self`."""

    where = "the CUDA backend"

    def __init__(self, tk: TypedKernel, plan: Plan):
        self.tk, self.plan = tk, plan
        self.k = tk.kernel
        self.T = tk.threads
        self.out = cir.Builder()
        self.counter = 0
        self.kinds: dict[str, str] = {}
        self.scratch_cursor = 0
        self.scratch_max = 0
        self.pending = False          # scratch/shared writes not yet followed by a barrier
        self.global_reads = False     # global loads since the last barrier (tensors may alias)
        self.global_writes = False    # global stores since the last barrier
        self.staged: dict[str, str] = {}
        self.ptr: dict[str, str] = {}  # shared tile -> C pointer (pipelined tiles point at a stage)
        self.ring_ptr: dict[int, str] = {}  # id(ringed statement) -> C pointer of the current stage
        self.side_ptr: dict[tuple[int, str], str] = {}  # (id(Dequant), scale/zero tensor) -> its ring's stage
        self.shadow: dict[str, tuple[str, DType]] = {}  # register tile -> (ring stage, raw dtype) it equals
        self.ops = templates().get_template("ops.cu.j2").module
        self.wgmma_helpers: dict[str, str] = {}  # wgmma instruction wrappers the kernel uses, by name
        self.partial: dict[str, int] = {}  # accumulators of k-split gemms not yet summed: their k groups
        self.ex = ExprEmitter(tk, self.kinds, self._temp, plan.virtual)
        self.written_tensors = {s.dst.tensor for s in walk_stmts(self.k.body)
                                if isinstance(s, (N.Copy, N.AtomicAdd)) and isinstance(s.dst, N.GlobalRef)}

    def line(self, text: str) -> None:
        self.out.add(cir.Line(text))

    def text(self, block: str) -> None:
        """A multi-line snippet (a rendered macro), indented to where it stands."""
        self.out.add(cir.Snippet(tuple(l.rstrip() for l in block.strip("\n").split("\n"))))

    def scope(self, head: str = "", pragma: str = ""):
        return self.out.block(head, pragma)

    def remark(self, text: str) -> None:
        self.out.add(cir.Comment(text))

    def comment(self, s) -> None:
        """`// file.tile:LINE  source` before a statement's code (`errors.py` maps compiler errors back by it)."""
        loc = s.loc
        if loc is not None and loc.line:
            src = loc.source_line.strip() if loc.source_line else type(s).__name__
            self.remark(f"{os.path.basename(loc.file)}:{loc.line}  {src}")

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}{self.counter}"

    def _temp(self, ctype_: str, code: str) -> str:
        """A named temporary for ExprEmitter (a value used more than once)."""
        name = self.fresh("t")
        self.line(f"const {ctype_} {name} = {code};")
        return name

    def barrier(self, fence: bool | None = None, note: str = "") -> None:
        """A block-wide barrier; with `fence` (by default: under wgmma) earlier shared writes also become
        visible to wgmma's reads after it. `cir.drop_redundant_barriers` removes one that directly
        follows another."""
        self.out.add(cir.Barrier(fence=self.plan.wgmma if fence is None else fence, note=note))
        self.pending = self.global_reads = self.global_writes = False

    def global_access(self, write: bool) -> None:
        """Order global accesses of different threads as the program orders them.

        Another thread may have stored (or still be loading) the same addresses: the same
        tensor, or another argument aliasing it (in-place calls).  A barrier makes earlier
        stores visible and earlier loads complete."""
        if self.global_writes or (write and self.global_reads):
            self.barrier()
        if write:
            self.global_writes = True
        else:
            self.global_reads = True

    def sync(self) -> None:
        """Make this statement's earlier shared writes visible before reading them."""
        if self.pending:
            self.barrier()

    def scratch(self, nbytes: int, ctype_: str, base: str = "tl_s") -> str:
        """A pointer to `nbytes` of this statement's scratch (the kernel reserves the most any statement uses)."""
        off = -(-self.scratch_cursor // SCRATCH_ALIGN) * SCRATCH_ALIGN
        self.scratch_cursor = off + nbytes
        self.scratch_max = max(self.scratch_max, self.scratch_cursor)
        name = self.fresh(base)
        self.line(f"{ctype_}* const {name} = reinterpret_cast<{ctype_}*>(tl_scratch + {off});")
        return name

    def mapping(self, name: str) -> M.Mapping:
        return self.plan.mappings[name]

    def tile_ptr(self, name: str) -> str:
        return self.ptr.get(name, cname(name))

    def unrolled(self, n: int, var: str = "v"):
        """A fully unrolled loop of `var` over [0, n): register arrays may only be indexed by constants."""
        return self.scope(f"for (int {var} = 0; {var} < {n}; ++{var})", "#pragma unroll")

    def values(self, m: M.Mapping, var: str = "v", unroll: str = "#pragma unroll"):
        """Loop over this thread's values of mapping `m`; yields the coordinates.

        Loops that index register arrays must unroll fully (or the array goes to local memory)."""
        return self._value_loop(m, var, f"++{var}", unroll)

    def value_runs(self, m: M.Mapping, run: int):
        """Loop over this thread's values of mapping `m`, `run` at a time (the body handles v .. v + run - 1)."""
        return self._value_loop(m, "v", f"v += {run}", "#pragma unroll")

    @contextmanager
    def _value_loop(self, m: M.Mapping, var: str, step: str, unroll: str):
        """Binds the coordinates of value `var` (`i0`, `i1`, ...: yielded as names, digits where constant;
        the unread ones are dropped by a `cir` pass) and skips replicas that must not act."""
        coords, guard = m.coords("tid", var)
        with self.scope(f"for (int {var} = 0; {var} < {m.values}; {step})", unroll):
            names = []
            for i, c in enumerate(coords):
                if c.isdigit():
                    names.append(c)
                else:
                    names.append(f"i{i}")
                    self.out.add(cir.Decl("int", f"i{i}", c))
            with self.scope(f"if ({guard})") if guard else nullcontext():
                yield names

    @contextmanager
    def elements(self, shape: tuple[int, ...]):
        """Every element of a tile, dealt to the threads in turn (for shared tiles)."""
        with self.values(M.Flat(tuple(shape), self.T, 1), "j", "#pragma unroll 4") as coords:
            yield coords

    def stage(self, name: str) -> str:
        """Write a register tile to scratch (dense row-major) so any thread can read any element."""
        if name in self.staged:
            return self.staged[name]
        t = self.tk.tiles[name]
        buf = self.stage_array(cname(name), self.mapping(name), t)
        self.staged[name] = buf
        return buf

    def stage_array(self, arr: str, m: M.Mapping, t: TileType) -> str:
        """Register array `arr` (mapping `m`, tile type `t`) written to scratch, dense row-major."""
        st = ctype.storage(t.dtype)
        buf = self.scratch(t.numel * ctype.nbytes(t.dtype), st)
        with self.values(m) as c:
            self.line(f"{buf}[{cx.row_major_offset(c, t.shape)}] = {arr}[v];")
        self.pending = True
        return buf
