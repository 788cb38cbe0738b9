"""Parse `.tile` text with lark into the surface tree, then into IR.

Syntax errors become `TileError`s naming file:line:col, the token found and what
would have been accepted there.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Tree

from ..diagnostics import SourceLoc, TileError, TileErrors
from ..ir.nodes import Module
from . import surface as S
from .builder import build_kernel

_BINOPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "or_": "|",
           "xor": "^", "and_": "&", "shl": "<<", "shr": ">>", "add": "+", "sub": "-",
           "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**"}

_TOKEN_WORDS = {"LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['",
                "RSQB": "']'", "SEMICOLON": "';'", "COMMA": "','", "COLON": "':'", "EQUAL": "'='",
                "NAME": "a name", "NUMBER": "a number", "KERNEL": "'kernel'",
                "GRID": "'grid'", "THREADS": "'threads'", "FOR": "'for'", "IN": "'in'",
                "$END": "end of file"}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).with_name("tile.lark")).read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_surface(text: str, file: str = "<string>") -> list[S.SKernel]:
    """Parse `.tile` text into surface kernels (syntax only)."""
    lines = text.splitlines()
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        raise _syntax_error(e, text, lines, file) from None
    return [_Converter(file, lines).kernel(k) for k in tree.children]


def parse_module(text: str, file: str = "<string>") -> Module:
    """Parse and build every kernel in `.tile` text; all kernels' errors are reported together."""
    errors: list[TileError] = []
    kernels = []
    for sk in parse_surface(text, file):
        try:
            kernels.append(build_kernel(sk))
        except TileErrors as e:
            errors.extend(e.errors)
        except TileError as e:
            errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else TileErrors(errors)
    return Module(tuple(kernels), file)


def parse_file(path: str | Path) -> Module:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise TileError(f"cannot read {path}: {e.strerror}", hint="check the path") from None
    return parse_module(text, str(path))


def _syntax_error(e: lark.exceptions.UnexpectedInput, text: str, lines: list[str],
                  file: str) -> TileError:
    line, col = getattr(e, "line", 1), getattr(e, "column", 1)
    if line is None or line < 1:  # unexpected end of input
        line = max(len(lines), 1)
        col = len(lines[-1]) + 1 if lines else 1
    loc = SourceLoc(file, line, col, lines[line - 1] if 0 < line <= len(lines) else "")
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else "?"
        return TileError(f"unexpected character {ch!r}", loc,
                         hint="tile source uses Python-style expressions; comments start with '#'")
    expected = sorted(_TOKEN_WORDS.get(t, repr(t.lower()) if t.isupper() else t)
                      for t in getattr(e, "expected", ()) or ())
    found = getattr(e, "token", None)
    what = "end of file" if found is None or found.type == "$END" else repr(str(found))
    shown = ", ".join(expected[:8]) + (", ..." if len(expected) > 8 else "")
    return TileError(f"unexpected {what}", loc, hint=f"expected {shown}" if shown else None)


class _Converter:
    """lark tree -> surface tree, attaching source locations."""

    def __init__(self, file: str, lines: list[str]):
        self.file = file
        self.lines = lines

    def loc(self, node: Tree | Token) -> SourceLoc:
        if isinstance(node, Token):
            line, col, end = node.line, node.column, node.end_column
            end_line = node.end_line
        else:
            m = node.meta
            if getattr(m, "empty", True):
                return SourceLoc(self.file, 0, 0)
            line, col, end, end_line = m.line, m.column, m.end_column, m.end_line
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        length = (end - col) if end_line == line and end else len(text) - col + 1
        return SourceLoc(self.file, line, col, text, max(1, length))

    def kernel(self, t: Tree) -> S.SKernel:
        name, params, grid, threads, block = t.children
        return S.SKernel(str(name), tuple(self.param(p) for p in params.children) if params else (),
                         self.exprs(grid), self.expr(threads), self.block(block), self.loc(name))

    def param(self, t: Tree) -> S.SParam:
        name, ty, default = t.children
        if ty.data in ("tensor_type", "stored_tensor_type"):
            ann: S.SExpr = S.SSubscript(str(ty.children[0]), self.exprs(ty.children[1]), self.loc(ty))
            if ty.data == "stored_tensor_type":  # `T[M, K] @ packed`: the tensor's storage order
                ann = S.SBin("@", ann, S.SName(str(ty.children[2]), self.loc(ty.children[2])), self.loc(ty))
        else:
            ann = S.SName(str(ty.children[0]), self.loc(ty))
        return S.SParam(str(name), ann, self.expr(default) if default is not None else None, self.loc(name))

    def block(self, t: Tree) -> tuple[S.SStmt, ...]:
        return tuple(self.stmt(s) for s in t.children)

    def stmt(self, t: Tree) -> S.SStmt:
        if t.data == "assign":
            targets, value = t.children
            return S.SAssign(tuple(str(n) for n in targets.children), self.expr(value), self.loc(t))
        if t.data == "expr_stmt":
            return S.SExprStmt(self.call(t.children[0]), self.loc(t))
        var, it, body = t.children
        return S.SFor(str(var), self.call(it), self.block(body), self.loc(t))

    def exprs(self, t: Tree | None) -> tuple[S.SExpr, ...]:
        if t is None:
            return ()
        return tuple(self.expr(c) for c in t.children if c is not None)

    def call(self, t: Tree) -> S.SCall:
        name, args = t.children
        pos, kw = [], []
        for a in (args.children if args is not None else ()):
            if a is None:
                continue
            if isinstance(a, Tree) and a.data == "kwarg":
                kw.append((str(a.children[0]), self.expr(a.children[1])))
            elif kw:
                raise TileError("positional argument after a keyword argument", self.loc(a),
                                hint="put positional arguments first")
            else:
                pos.append(self.expr(a))
        return S.SCall(str(name), tuple(pos), tuple(kw), self.loc(t))

    def expr(self, t: Tree | Token) -> S.SExpr:
        loc = self.loc(t)
        if isinstance(t, Token):
            raise TileError(f"unexpected {str(t)!r}", loc)
        kind = t.data
        if kind == "number":
            return S.SNum(_number(str(t.children[0])), loc)
        if kind == "name":
            return S.SName(str(t.children[0]), loc)
        if kind == "call":
            return self.call(t)
        if kind == "subscript":
            return S.SSubscript(str(t.children[0]), self.exprs(t.children[1]), loc)
        if kind == "tuple":
            items = []
            for c in t.children:
                if c is None:
                    continue
                items.extend(self.exprs(c) if isinstance(c, Tree) and c.data == "exprs" else [self.expr(c)])
            return S.STuple(tuple(items), loc)
        if kind == "neg":
            return S.SUnary("-", self.expr(t.children[0]), loc)
        if kind == "invert":
            return S.SUnary("~", self.expr(t.children[0]), loc)
        if kind in _BINOPS:
            return S.SBin(_BINOPS[kind], self.expr(t.children[0]), self.expr(t.children[1]), loc)
        raise TileError(f"unexpected syntax {kind!r}", loc)


def _number(text: str) -> int | float:
    if text.startswith(("0x", "0X")):
        return int(text, 16)
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)
