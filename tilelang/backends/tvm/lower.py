"""Typed kernel -> TVMScript text: what both targets share.

A `Lowering` walks the statements once and renders each through its target's
jinja2 macros (templates/<target>.py.j2); this module decides what is computed
(windows, masks, packed loads, which reductions are computed first), the
templates how it is spelled.  Subclasses say where tile elements live.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from ...diagnostics import Unsupported
from ...ir import nodes as N
from ...ir.types import TileType
from ...ir.visit import StmtVisitor, sub_exprs
from ...layout.packing import plain_only
from .emit import ExprEmitter, Val, cast, compute_dtype, tir_dtype
from .signature import Signature, dim_name, signature

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined, autoescape=False)


def template(name: str):
    """The macros of one template file, callable from Python."""
    return _ENV.get_template(name).module


@dataclass
class Window:
    """A window of a global tensor (tile indices or element offsets), one start per tensor axis."""
    tensor: N.TensorParam
    starts: list[tuple[str, str]]  # let-bound (name, value) of each axis' first element
    extents: tuple[int, ...]  # the tile shape padded with leading 1s
    dims: tuple[str, ...]  # the tensor's (logical) extents, less where an element-offset window has a stop

    def element(self, idx: tuple[str, ...]) -> list[str]:
        lead = len(self.extents) - len(idx)
        out = [w for w, _ in self.starts[:lead]]
        out += [w if i == "0" else f"{w} + {i}" for (w, _), i in zip(self.starts[lead:], idx)]
        return out

    def full(self) -> str:
        """The whole window lies inside the tensor."""
        conds = []
        for (w, _), e, d in zip(self.starts, self.extents, self.dims):
            conds += [f"0 <= {w}", f"{w} + {e} <= {d}"]
        return " and ".join(conds)

    def mask(self, idx: tuple[str, ...]) -> str:
        """This element of the window lies inside the tensor."""
        return " and ".join(f"0 <= {x} and {x} < {d}" for x, d in zip(self.element(idx), self.dims))


@dataclass
class Alloc:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scope: str = "local"


@dataclass
class Lowering(StmtVisitor):
    """State of one kernel's lowering; subclasses implement the statements."""
    tk: object
    target: str
    template_name: str = ""
    noalias: bool = True  # arguments never share memory (the launcher checks)
    sig: Signature = field(init=False)
    names: dict[str, Val] = field(init=False)
    allocs: list[Alloc] = field(init=False, default_factory=list)
    counter: int = field(init=False, default=0)

    def __post_init__(self):
        for p in self.tk.kernel.tensors:
            if p.storage == "packed":
                raise plain_only("tvm", p)
        self.sig = signature(self.tk)
        self.names = self.sig.names()
        self.m = template(self.template_name)
        self.c = template("common.j2")

    # ------------------------------------------------------------------ helpers
    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def emitter(self, read, materialized=None) -> ExprEmitter:
        return ExprEmitter(self.tk, self.names, self.block_ids, read, materialized)

    def comment(self, node) -> str:
        loc = node.loc
        if not loc.line:
            return "#"
        text = " ".join(loc.source_line.split())
        return f"# {loc.file}:{loc.line}: {text}"[:160]

    def kernel_info(self, **extra) -> dict:
        k = self.tk.kernel
        buffers = [dict(name=t.buffer, handle=t.handle, shape=t.shape, dtype=t.dtype, align=t.align)
                   for t in self.sig.tensors]
        return dict(name=self.sig.name, params=self.sig.params, dim_vars=self.sig.dim_vars, buffers=buffers,
                    source=str(k.loc.file) if k.loc.line else k.name, target=self.target, **extra)

    def grid(self) -> list[tuple[str, str]]:
        """Let-bound grid extents, evaluated once at function entry."""
        em = self.emitter(lambda n, i: n)
        return [(f"grid{a}", cast(em.value(g), "int32").text) for a, g in enumerate(self.tk.kernel.grid)]

    def tile(self, name: str) -> TileType:
        return self.tk.tiles[name]

    def window(self, ref: N.GlobalRef, shape: tuple[int, ...]) -> Window:
        p = self.tk.tensor(ref.tensor)
        extents = (1,) * (len(p.dims) - len(shape)) + tuple(shape)
        em = self.emitter(lambda n, i: n)
        starts = []
        dims = [str(d) if isinstance(d, int) else dim_name(d) for d in p.dims]
        for a, (i, e) in enumerate(zip(ref.indices, extents)):
            if isinstance(i, N.ElemOffset):  # starts at an element; a stop bounds the axis like its edge
                starts.append((self.fresh(f"w{a}_"), cast(em.value(i.start), "int32").text))
                if i.stop is not None:
                    dims[a] = f"T.min({dims[a]}, {cast(em.value(i.stop), 'int32').text})"
                continue
            v = cast(em.value(i), "int32").text
            starts.append((self.fresh(f"w{a}_"), v if e == 1 else f"{v} * {e}"))
        return Window(p, starts, extents, tuple(dims))

    def load_global(self, p: N.TensorParam, elem: list[str]) -> Val:
        """An element of a global tensor; packed sub-byte fields are unpacked from their bytes."""
        arg = next(t for t in self.sig.tensors if t.name == p.name)
        if arg.packed is None:
            return Val(f"{arg.buffer}[{', '.join(elem)}]", arg.dtype)
        bits = arg.packed.bits
        rows = elem[:-1]
        bit = f"({elem[-1]}) * {bits}"  # not let-bound: TVM's vectorizer scalarizes the gather and rebinds it
        byte = f"T.shift_right({bit}, 3)"
        shift = f"T.bitwise_and({bit}, 7)"
        lo = f'T.Cast("int32", {arg.buffer}[{", ".join(rows + [byte])}])'
        if 8 % bits == 0:
            word = lo
        else:  # a field may straddle two bytes; the clamped second read is masked off when it does not
            nxt = f"T.min({byte} + 1, {arg.shape[-1]} - 1)"
            hi = f'T.Cast("int32", {arg.buffer}[{", ".join(rows + [nxt])}])'
            word = f"T.bitwise_or({lo}, T.shift_left({hi}, 8))"
        v = f"T.bitwise_and(T.shift_right({word}, {shift}), {(1 << bits) - 1})"
        if arg.packed.is_signed:  # sign-extend: move the field's top bit to bit 31 and shift back arithmetically
            v = f"T.shift_right(T.shift_left({v}, {32 - bits}), {32 - bits})"
        return Val(v, "int32")

    def reductions(self, e: N.Expr) -> list[N.Reduce]:
        """Reductions inside `e`, innermost first, each once."""
        out: list[N.Reduce] = []
        for x in reversed(list(sub_exprs(e))):
            if isinstance(x, N.Reduce) and x not in out:
                out.append(x)
        return out

    # ------------------------------------------------------------------ statements
    def block(self, body: tuple[N.Stmt, ...]) -> str:
        return "\n".join(self.stmt(s) for s in body)

    def stmt(self, s: N.Stmt) -> str:
        return self.visit(s)

    def visit_Let(self, s: N.Let) -> str:
        tdt = tir_dtype(self.tk.scalars[s.name].dtype)
        em = self.emitter(lambda n, i: n)
        v = cast(em.value(s.value), tdt)
        name = "v_" + s.name
        self.names[s.name] = Val(name, tdt)
        return self.c.let(name, v.text, self.comment(s))

    def visit_If(self, s: N.If) -> str:
        em = self.emitter(lambda n, i: n)
        lines = [self.comment(s), f"if {em.value(s.cond).text}:"]
        lines.append(_indent(self.branch(s.body) or "T.evaluate(0)"))
        if s.orelse:
            lines += ["else:", _indent(self.branch(s.orelse) or "T.evaluate(0)")]
        return "\n".join(lines)

    def branch(self, body: tuple[N.Stmt, ...]) -> str:
        """One branch of an if (targets keep what they need around it by overriding this)."""
        return self.block(body)

    def visit_ReadScalar(self, s: N.ReadScalar) -> str:
        """One element at clamped indices, selected only where the indices are inside the tensor (else 0)."""
        p = self.tk.tensor(s.src.tensor)
        tdt = tir_dtype(p.dtype)
        em = self.emitter(lambda n, i: n)
        dims = tuple(str(d) if isinstance(d, int) else dim_name(d) for d in p.dims)
        idx = [cast(em.value(i), "int64").text for i in s.src.indices]
        inside = " and ".join(f"0 <= {i} and {i} < {d}" for i, d in zip(idx, dims))
        clamped = [f"T.max(T.min({i}, T.int64({d}) - 1), T.int64(0))" for i, d in zip(idx, dims)]
        zero = cast(Val("T.int32(0)", "int32"), tdt).text
        v = f"T.if_then_else({inside}, {self.load_global(p, clamped).text}, {zero})"
        name = "v_" + s.name
        self.names[s.name] = Val(name, tdt)
        return self.c.let(name, v, self.comment(s))

    def visit_AtomicAdd(self, s: N.AtomicAdd) -> str:
        raise Unsupported(f"{self.where} cannot emit atomic_add (no atomic read-modify-write in its TIR)", s.loc,
                          hint="run it with backend='triton' or 'cuda' (or 'reference')")

    def visit_For(self, s: N.For) -> str:
        em = self.emitter(lambda n, i: n)
        lo, hi = cast(em.value(s.start), "int32").text, cast(em.value(s.stop), "int32").text
        name = "v_" + s.var
        self.names[s.var] = Val(name, "int32")
        body = self.block(s.body) or "T.evaluate(0)"
        return self.c.for_(name, lo, hi, body, self.comment(s))

    def dequant_value(self, s: N.Dequant, win: Window, idx: tuple[str, ...], em: ExprEmitter, out: str) -> Val:
        """(q - zero) * scale of one element, in f32, rounded to the tile's dtype."""
        elem = win.element(idx)
        q = self.load_global(win.tensor, elem)
        group = cast(em.value(s.group), "int32").text
        gidx = elem[:-1] + [f"T.floordiv({elem[-1]}, {group})"]
        v = cast(q, "float32").text
        if s.zero is not None:
            z = cast(self.load_global(self.tk.tensor(s.zero), gidx), "float32").text
            v = f"({v} - {z})"
        sc = cast(self.load_global(self.tk.tensor(s.scale), gidx), "float32").text
        return cast(Val(f"({v} * {sc})", "float32"), out)

    def reduce_identity(self, op: str, cd: str) -> str:
        return {"sum": "T.float32(0.0)" if cd == "float32" else f"T.{cd}(0)",
                "max": f'T.{cd}("-inf")' if cd == "float32" else f"T.min_value(\"{cd}\")",
                "min": f'T.{cd}("inf")' if cd == "float32" else f"T.max_value(\"{cd}\")"}[op]


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.split("\n"))


def combine(op: str, a: str, b: str) -> str:
    return f"({a} + {b})" if op == "sum" else f"T.{op}({a}, {b})"


def reduce_dtype(tk, r: N.Reduce) -> str:
    return compute_dtype(tir_dtype(tk.type_of(r).dtype))
