"""Typed kernel -> readable Triton source: one `@triton.jit` function rendered from kernel.py.jinja.

Tiles become Triton blocks (register and shared tiles alike: Triton places values
itself, so a copy between tiles is a conversion); `copy` with a global window is a
masked `tl.load`/`tl.store`; `gemm` is `tl.dot` accumulating in f32 (a
broadcast-multiply-sum where a dim is below tl.dot's minimum of 16); `pipelined`
loops are `tl.range(..., num_stages=S)`.  Every statement is preceded by a comment
with its `.tile` line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from ...ir import nodes as N
from ...ir.dtypes import f32
from ...ir.printer import expr_str, stmt_lines
from ...ir.visit import StmtVisitor
from ...layout import infer_layouts
from ...layout.packing import plain_only
from . import memory
from .exprs import Emitter, check_pow2, const_value, strip_parens
from .names import Names

MIN_DOT = 16  # tl.dot needs M, N and K of at least 16


@dataclass(frozen=True)
class Program:
    """Generated source plus what the launcher needs to call it."""
    source: str
    fn_name: str
    args: tuple[tuple[str, str], ...]  # (kind, name): kind is "tensor", "dim" or "scalar"
    num_warps: int


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.dirname(__file__)), autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("kernel.py.jinja")


def num_warps(threads: int) -> int:
    """threads // 32, rounded down to a power of two (Triton's layouts need one)."""
    w = max(threads // 32, 1)
    return 1 << (w.bit_length() - 1)


def lower(tk) -> Program:
    infer_layouts(tk)  # the verdict on the kernel's layout annotations (Triton places values itself)
    k = tk.kernel
    for p in k.tensors:
        if p.storage == "packed":
            raise plain_only("triton", p)
    names = Names(k)
    body = _Lowering(tk, names)
    body.stmts(k.body)
    args = ([("tensor", p.name) for p in k.tensors] + [("dim", d) for d in k.dim_symbols]
            + [("scalar", p.name) for p in k.scalars])
    warps = num_warps(tk.threads)
    source = _template().render(
        origin=os.path.basename(k.loc.file) if k.loc.line else "<unknown>",
        name=k.name,
        consts=", ".join(f"{n}={v}" for n, v in tk.consts.items()) or "no constants",
        grid=", ".join(expr_str(g) for g in k.grid),
        num_warps=warps,
        warps_note="" if warps * 32 == tk.threads else f"threads({tk.threads}) rounded down to a power of two",
        fn_name=names.kernel_fn,
        params=[names[n] for _, n in args],
        body=body.lines or ["pass"],
    )
    return Program(source, names.kernel_fn, tuple(args), warps)


def generate(tk, target: str | None = None) -> str:
    """The Triton source for a typed kernel (what `tilelang build` writes)."""
    return lower(tk).source


def _comment(s: N.Stmt) -> str:
    loc = s.loc
    text = loc.source_line.strip() if loc.line and loc.source_line else stmt_lines(s, indent="")[0].strip()
    text = "".join(ch if ch.isprintable() else "?" for ch in text)[:120]
    where = f"{os.path.basename(loc.file)}:{loc.line}" if loc.line else "<unknown>"
    return f"# {where}  {text}"


def initial_value_read(body, name: str) -> bool:
    """Whether running `body` may read the tile's initial value (a loop may run zero times).

    Every statement that writes a tile writes all of it, except a gemm, which reads its acc first."""
    for s in body:
        if isinstance(s, N.For):
            if initial_value_read(s.body, name):
                return True
            continue
        if isinstance(s, N.If):  # a branch may not run: its writes do not count
            if initial_value_read(s.body, name) or initial_value_read(s.orelse, name):
                return True
            continue
        if name in s.reads():
            return True
        if name in s.writes():
            return False
    return False


class _Lowering(Emitter, StmtVisitor):
    where = "the Triton backend"

    def stmts(self, body) -> None:
        for i, s in enumerate(body):
            self.line(_comment(s))
            self.rest = body[i + 1:]  # what follows `s` in its block: an alloc fills only if that reads it
            self.visit(s)

    def visit_Let(self, s: N.Let) -> None:
        self.line(f"{self.names[s.name]} = {strip_parens(self.expr(s.value).code)}")
        if self.is_nonneg(s.value):
            self.nonneg.add(s.name)
        if self.is_tensor(s.value):
            self.tensors.add(s.name)

    def visit_ReadScalar(self, s: N.ReadScalar) -> None:
        self.line(f"{self.names[s.name]} = {memory.read_scalar(self, s.src)}")
        self.tensors.add(s.name)

    def visit_Alloc(self, s: N.Alloc) -> None:
        t = self.tk.tiles[s.name]
        check_pow2(t.shape, f"tile '{s.name}'", s.loc)
        if initial_value_read(self.rest, s.name):
            self.line(f"{self.names[s.name]} = {self.fill(t.shape, s.init, t.dtype)}")

    def visit_Assign(self, s: N.Assign) -> None:
        t = self.tk.tiles[s.name]
        check_pow2(t.shape, f"tile '{s.name}'", s.loc)
        code = self.expr(s.value).code
        if self.tk.type_of(s.value).shape != t.shape:
            code = f"tl.broadcast_to({code}, {tuple(t.shape)})"
        self.line(f"{self.names[s.name]} = {strip_parens(code)}")

    def visit_Copy(self, s: N.Copy) -> None:
        if isinstance(s.src, N.GlobalRef):
            t = self.tk.tiles[s.dst.name]
            self.line(f"{self.names[s.dst.name]} = {memory.load(self, s.src, t, s.pad)}")
        elif isinstance(s.dst, N.GlobalRef):
            t = self.tk.tiles[s.src.name]
            memory.store(self, self.expr(s.src), t.shape, s.dst)
        else:
            src, dst = self.tk.tiles[s.src.name], self.tk.tiles[s.dst.name]
            self.line(f"{self.names[s.dst.name]} = {memory.convert(self.names[s.src.name], src.dtype, dst.dtype)}")

    def visit_Gemm(self, s: N.Gemm) -> None:
        ta, tb, tc = (self.tk.tiles[x.name] for x in (s.a, s.b, s.acc))
        a = f"tl.trans({self.names[s.a.name]})" if s.trans_a else self.names[s.a.name]
        b = f"tl.trans({self.names[s.b.name]})" if s.trans_b else self.names[s.b.name]
        acc = self.names[s.acc.name]
        m, n = tc.shape
        k = ta.shape[0] if s.trans_a else ta.shape[1]
        if min(m, n, k) >= MIN_DOT:
            ieee = ', input_precision="ieee"' if ta.dtype == f32 else ""  # no tf32: products are f32
            acc32 = acc if tc.dtype == f32 else f"{acc}.to(tl.float32)"
            code = f"tl.dot({a}, {b}, {acc32}{ieee})"
        else:
            a32 = a if ta.dtype == f32 else f"{a}.to(tl.float32)"
            b32 = b if tb.dtype == f32 else f"{b}.to(tl.float32)"
            acc32 = acc if tc.dtype == f32 else f"{acc}.to(tl.float32)"
            code = f"{acc32} + tl.sum({self.bind(a32, 'ga')}[:, :, None] * {self.bind(b32, 'gb')}[None, :, :], axis=1)"
            code = f"({code})" if tc.dtype != f32 else code
        self.line(f"{acc} = {self.narrow(code, f32, tc.dtype)}")

    def visit_Dequant(self, s: N.Dequant) -> None:
        check_pow2(self.tk.tiles[s.dst.name].shape, f"tile '{s.dst.name}'", s.dst.loc)
        self.line(f"{self.names[s.dst.name]} = {strip_parens(memory.dequant(self, s))}")

    def visit_If(self, s: N.If) -> None:
        """A Python `if` on a scalar: Triton compiles it to a branch (scf.if); tiles a branch updates are
        defined before it, so both paths leave them with one type."""
        self.line(f"if {strip_parens(self.expr(s.cond).code)}:")
        for branch in (s.body, s.orelse):
            if branch is s.orelse:
                if not branch:
                    break
                self.line("else:")
            self.depth += 1
            before = len(self.lines)
            nonneg = set(self.nonneg)
            self.stmts(branch)
            self.nonneg = nonneg  # names bound in a branch are local to it
            if all(line.lstrip().startswith("#") for line in self.lines[before:]):
                self.line("pass")
            self.depth -= 1

    def visit_AtomicAdd(self, s: N.AtomicAdd) -> None:
        memory.atomic_add(self, self.expr(s.src), self.tk.tiles[s.src.name].shape, s.dst)

    def visit_For(self, s: N.For) -> None:
        lo, hi = self.expr(s.start).code, self.expr(s.stop).code
        if self.is_nonneg(s.start):
            self.nonneg.add(s.var)
        stages = const_value(s.stages) if s.stages is not None else 1
        loop = f"tl.range({lo}, {hi}, num_stages={stages})" if stages > 1 else f"range({lo}, {hi})"
        self.line(f"for {self.names[s.var]} in {strip_parens(loop)}:")
        self.depth += 1
        before = len(self.lines)
        self.stmts(s.body)
        if all(line.lstrip().startswith("#") for line in self.lines[before:]):
            self.line("pass")
        self.depth -= 1
