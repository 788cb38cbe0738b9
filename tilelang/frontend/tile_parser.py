"""Parse `.tile` text with lark into the surface tree, then into IR.

Syntax errors become `TileError`s naming file:line:col, the token found and what
would have been accepted there.
"""
from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import lark
from lark import Lark, Token, Tree

from ..diagnostics import SourceLoc, TileError, internal_errors
from ..ir.nodes import Module
from . import surface as S
from .builder import build_module

_BINOPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "or_": "|",
           "xor": "^", "and_": "&", "shl": "<<", "shr": ">>", "add": "+", "sub": "-",
           "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**"}

# Terminals defined by a regular expression, in words; string terminals are shown as their text.
_PATTERN_WORDS = {"NAME": "a name", "NUMBER": "a number", "$END": "end of file"}
_PUNCTUATION = ";)]},=:([{"  # listed first, in this order: most syntax errors are one of these missing
_CLOSERS = {"(": ")", "[": "]", "{": "}"}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).with_name("tile.lark")).read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_surface(text: str, file: str = "<string>") -> list[S.SKernel]:
    """Parse `.tile` text into surface kernels (syntax only)."""
    return [read() for read in _readers(text, file)]


def parse_module(text: str, file: str = "<string>") -> Module:
    """Parse and build every kernel in `.tile` text; all kernels' errors are reported together."""
    return build_module(_readers(text, file), file)


def _readers(text: str, file: str) -> list[Callable[[], S.SKernel]]:
    """Check the syntax of the whole text; then one function per kernel that reads its surface tree."""
    lines = text.split("\n")  # lark counts lines by '\n' only
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        with internal_errors("the .tile parser", loc=SourceLoc(file, 1, 1)):
            error = _SyntaxErrorReport(text, lines, file).error(e)
        raise error from None
    converter = _Converter(file, lines)
    return [partial(converter.kernel, k) for k in tree.children]


def parse_file(path: str | Path) -> Module:
    return parse_module(read_source(path), str(path))


def read_source(path: str | Path) -> str:
    """The text of a kernel source file; a TileError naming the file if it cannot be read as text."""
    try:
        return Path(path).read_text()
    except OSError as e:
        raise TileError(f"cannot read {path}: {e.strerror}", hint="check the path") from None
    except UnicodeDecodeError as e:
        raise TileError(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})",
                        hint="kernel sources are UTF-8 text files") from None


@lru_cache(maxsize=1)
def _terminals() -> dict[str, str | None]:
    """Terminal name -> its literal text, or None for a terminal defined by a regular expression."""
    return {t.name: t.pattern.value if isinstance(t.pattern, lark.lexer.PatternStr) else None
            for t in _parser().terminals}


def describe_terminals(names) -> str:
    """lark terminal names in the user's words: "';', ')' or an operator" (never `__ANON_0` or `SEMICOLON`)."""
    words: set[str] = set()
    for name in names:
        text = _terminals().get(name)
        if text is None:
            words.add(_PATTERN_WORDS.get(name, name.lower()))
        elif not text[0].isalnum() and text not in _PUNCTUATION:
            words.add("an operator")
        else:
            words.add(f"'{text}'")

    def rank(word: str) -> tuple:
        quoted = word[1:-1]
        if word.startswith("'") and quoted in _PUNCTUATION:
            return (0, _PUNCTUATION.index(quoted))
        return (1 if word.startswith("'") else 2, word)

    ordered = sorted(words, key=rank)
    return ordered[0] if len(ordered) == 1 else ", ".join(ordered[:-1]) + " or " + ordered[-1]


class _SyntaxErrorReport:
    """Turns lark's exception into one TileError at the fault: a missing ';' at the end of the
    statement that lacks it, an unclosed bracket at the place it was opened."""

    def __init__(self, text: str, lines: list[str], file: str):
        self.text, self.lines, self.file = text, lines, file

    def loc_at(self, offset: int) -> SourceLoc:
        line = self.text.count("\n", 0, offset) + 1
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        return SourceLoc(self.file, line, col, self.lines[line - 1] if line <= len(self.lines) else "")

    def error(self, e: lark.exceptions.UnexpectedInput) -> TileError:
        if not isinstance(e, lark.exceptions.UnexpectedToken):
            pos = min(getattr(e, "pos_in_stream", None) or 0, len(self.text))
            ch = repr(self.text[pos]) if pos < len(self.text) else "end of file"
            return TileError(f"unexpected character {ch}", self.loc_at(pos),
                             hint="tile source uses Python-style expressions; comments start with '#'")
        found = e.token
        # LALR's own set merges states (it offers ')' at statement level); asking the parser is exact
        expected = set(e.interactive_parser.accepts() if e.interactive_parser else e.expected)
        at_end = found.type == "$END"
        start = len(self.text) if at_end else found.start_pos
        after = self.end_of_code(start)  # just past the code before the unexpected token
        what = "end of file" if at_end else repr(str(found))
        if "SEMICOLON" in expected and after > 0 and \
                (at_end or found.type in ("RBRACE", "FOR") or "\n" in self.text[after:start]):
            next_at = "" if at_end else f" at {self.loc_at(start).line}:{self.loc_at(start).col}"
            return TileError("missing ';' at the end of the statement", self.loc_at(after),
                             hint=f"statements end with ';' (the next token is {what}{next_at})")
        related = ()
        opened = self.open_brackets(start)
        if opened and found.type not in ("NAME", "NUMBER"):
            bracket, offset = opened[-1]
            if _CLOSERS[bracket] in {_terminals().get(t) for t in expected}:
                related = ((f"this '{bracket}' is not closed", self.loc_at(offset)),)
        loc = self.loc_at(after if at_end else start)
        hint = f"expected {describe_terminals(expected)}" if expected else None
        return TileError(f"unexpected {what}", loc, hint=hint, related=related)

    def end_of_code(self, offset: int) -> int:
        """The offset just past the last character of code (not blank, not a comment) before `offset`."""
        line_start = self.text.rfind("\n", 0, offset) + 1
        while True:
            code = self.text[line_start:offset].split("#", 1)[0].rstrip()
            if code or line_start == 0:
                return line_start + len(code)
            offset = line_start - 1
            line_start = self.text.rfind("\n", 0, offset) + 1

    def open_brackets(self, offset: int) -> list[tuple[str, int]]:
        """The brackets opened and not yet closed before `offset`, innermost last, with their offsets."""
        stack: list[tuple[str, int]] = []
        i = 0
        while i < offset:
            ch = self.text[i]
            if ch == "#":
                i = self.text.find("\n", i)
                if i < 0:
                    break
            elif ch in _CLOSERS:
                stack.append((ch, i))
            elif ch in ")]}" and stack:
                stack.pop()
            i += 1
        return stack


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
        if t.data == "if_stmt":
            cond, body, orelse = t.children
            rest = () if orelse is None else self.block(orelse) if orelse.data == "block" else (self.stmt(orelse),)
            return S.SIf(self.expr(cond), self.block(body), rest, self.loc(t))
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
        if kind == "slice":
            start, stop = t.children
            return S.SSlice(self.expr(start), None if stop is None else self.expr(stop), loc)
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
