"""`@tile_kernel`: the tile language embedded in Python.

The decorated function is never run.  Its source is parsed with `ast` into the
same surface tree as `.tile` text and built by the same builder, so

    @tile_kernel
    def scale(X: T[M, N], Y: T[M, N], s: f32, T: dtype = f16, BM: const = 64, BN: const = 64):
        launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=128)
        x = register(T[BM, BN])
        copy(X[block_id(0), block_id(1)], x)
        y = x * s
        copy(y, Y[block_id(0), block_id(1)])

is the kernel a `.tile` file would spell `kernel scale(...) grid(...) threads(128) { ... }`.
Tensor dims are bare names: use `from __future__ import annotations` (or write them
as strings, `T["M", "N"]`) so Python does not evaluate them.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from functools import partial

from ..diagnostics import SourceLoc, TileError, internal_errors
from ..ir.nodes import Kernel, Module
from . import surface as S
from .builder import build_kernel, build_module

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
           ast.LShift: "<<", ast.RShift: ">>", ast.MatMult: "@"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def parse_function(fn) -> S.SKernel:
    """Python function -> surface kernel."""
    try:
        lines, first = inspect.getsourcelines(fn)
        file = inspect.getsourcefile(fn) or "<python>"
    except (OSError, TypeError):
        raise TileError(f"cannot read the source of {getattr(fn, '__name__', fn)!r}",
                        hint="@tile_kernel needs a function defined in a file") from None
    raw = "".join(lines)
    text = textwrap.dedent(raw)
    indent = len(lines[0]) - len(lines[0].lstrip()) if text != raw else 0
    tree = ast.parse(text)
    fdef = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return _Converter(file, first - 1, indent, lines).kernel(fdef)


def parse_python_source(text: str, file: str = "<python>") -> list[S.SKernel]:
    """Every function of a Python source text as a surface kernel (for tests and tools)."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    conv = _Converter(file, 0, 0, lines)
    return [conv.kernel(n) for n in tree.body if isinstance(n, ast.FunctionDef)]


def parse_python_module(text: str, file: str = "<python>") -> Module:
    """Every `@tile_kernel` function of Python source text, built without running the module (so a
    file can be checked safely, and each kernel's errors are reported, not just the first one's)."""
    tree = _python_ast(text, file)
    conv = _Converter(file, 0, 0, text.splitlines(keepends=True))
    return build_module([partial(conv.kernel, f) for f in tile_kernel_functions(tree)], file)


def defines_tile_kernels(text: str) -> bool:
    """Whether Python source text has `@tile_kernel` functions (or is too broken to tell)."""
    if "tile_kernel" not in text:
        return False
    try:
        return bool(tile_kernel_functions(ast.parse(text)))
    except (SyntaxError, ValueError):
        return True


def tile_kernel_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """The functions decorated `@tile_kernel` (or `@<module>.tile_kernel`), wherever they are defined."""
    def decorated(d: ast.expr) -> bool:
        return (isinstance(d, ast.Name) and d.id == "tile_kernel") or \
            (isinstance(d, ast.Attribute) and d.attr == "tile_kernel")
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and any(map(decorated, n.decorator_list))]
    return sorted(found, key=lambda n: n.lineno)


def _python_ast(text: str, file: str) -> ast.Module:
    try:
        return ast.parse(text, file)
    except SyntaxError as e:
        line = e.lineno or 1
        lines = text.splitlines()
        loc = SourceLoc(file, line, e.offset or 1, lines[line - 1] if 0 < line <= len(lines) else "")
        raise TileError(f"Python syntax error: {e.msg}", loc, hint="the file must be valid Python") from None
    except ValueError as e:  # e.g. a NUL byte in the source
        raise TileError(f"cannot parse {file} as Python: {e}") from None


class _Converter:
    def __init__(self, file: str, line_offset: int, indent: int, lines: list[str]):
        self.file, self.line_offset, self.indent, self.lines = file, line_offset, indent, lines

    def loc(self, node: ast.AST) -> SourceLoc:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + self.indent + 1
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        end_col = getattr(node, "end_col_offset", None)
        length = (end_col + self.indent + 1 - col) if end_col is not None and getattr(node, "end_lineno", line) == line else 1
        return SourceLoc(self.file, line + self.line_offset, col, text, max(1, length))

    def fail(self, node: ast.AST, what: str, hint: str | None = None) -> TileError:
        return TileError(what, self.loc(node), hint=hint)

    def kernel(self, f: ast.FunctionDef) -> S.SKernel:
        a = f.args
        if a.vararg or a.kwarg or a.posonlyargs:
            raise self.fail(f, "tile kernels take plain named parameters", hint="remove *args / **kwargs / '/'")
        params = a.args + a.kwonlyargs
        defaults: list[ast.expr | None] = [None] * (len(a.args) - len(a.defaults)) + list(a.defaults)
        defaults += list(a.kw_defaults)
        sparams = []
        for p, d in zip(params, defaults):
            if p.annotation is None:
                raise self.fail(p, f"parameter '{p.arg}' needs a type",
                                hint="e.g. A: f16[M, K], eps: f32, BM: const = 64, T: dtype = f16")
            sparams.append(S.SParam(p.arg, self.expr(p.annotation), self.expr(d) if d is not None else None,
                                    self.loc(p)))
        body = list(f.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        if not body or not _is_call_to(body[0], "launch"):
            raise self.fail(f, f"kernel '{f.name}' must start with launch(grid=(...), threads=N)",
                            hint="the launch gives the grid over tiles and the threads per block")
        launch = self.call(body[0].value)
        kw = dict(launch.kwargs)
        if launch.args or set(kw) != {"grid", "threads"}:
            raise self.fail(body[0], "launch takes exactly grid=(...) and threads=N")
        grid = kw["grid"].items if isinstance(kw["grid"], S.STuple) else (kw["grid"],)
        return S.SKernel(f.name, tuple(sparams), tuple(grid), kw["threads"],
                         self.block(body[1:]), self.loc(f))

    def block(self, stmts: list[ast.stmt]) -> tuple[S.SStmt, ...]:
        return tuple(self.stmt(s) for s in stmts)

    def stmt(self, s: ast.stmt) -> S.SStmt:
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1:
                raise self.fail(s, "chained assignment is not supported")
            t = s.targets[0]
            names = t.elts if isinstance(t, ast.Tuple) else [t]
            if not all(isinstance(n, ast.Name) for n in names):
                raise self.fail(t, "assign to plain names", hint="write global tensors with copy(tile, T[i, j])")
            return S.SAssign(tuple(n.id for n in names), self.expr(s.value), self.loc(s))
        if isinstance(s, ast.AugAssign):
            if not isinstance(s.target, ast.Name):
                raise self.fail(s.target, "assign to plain names")
            value = S.SBin(_binop(self, s.op, s), S.SName(s.target.id, self.loc(s.target)),
                           self.expr(s.value), self.loc(s))
            return S.SAssign((s.target.id,), value, self.loc(s))
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call):
            return S.SExprStmt(self.call(s.value), self.loc(s))
        if isinstance(s, ast.For):
            if s.orelse or not isinstance(s.target, ast.Name) or not isinstance(s.iter, ast.Call):
                raise self.fail(s, "loops are `for i in range(...)` or `for i in pipelined(..., stages=N)`")
            return S.SFor(s.target.id, self.call(s.iter), self.block(s.body), self.loc(s))
        if isinstance(s, ast.If):
            return S.SIf(self.expr(s.test), self.block(s.body), self.block(s.orelse), self.loc(s))
        if isinstance(s, ast.Pass):
            raise self.fail(s, "'pass' is not a tile statement", hint="remove it")
        raise self.fail(s, f"{type(s).__name__} statements are not part of the tile language",
                        hint="statements are assignments, copy/gemm/dequant calls and for loops")

    def call(self, c: ast.Call) -> S.SCall:
        if not isinstance(c.func, ast.Name):
            raise self.fail(c.func, "call tile functions by their plain name", hint="e.g. exp(x), not math.exp(x)")
        if any(isinstance(a, ast.Starred) for a in c.args) or any(k.arg is None for k in c.keywords):
            raise self.fail(c, "*args and **kwargs are not supported in tile kernels")
        return S.SCall(c.func.id, tuple(self.expr(a) for a in c.args),
                       tuple((k.arg, self.expr(k.value)) for k in c.keywords), self.loc(c))

    def expr(self, e: ast.expr) -> S.SExpr:
        loc = self.loc(e)
        if isinstance(e, ast.Name):
            return S.SName(e.id, loc)
        if isinstance(e, ast.Constant):
            if isinstance(e.value, str):  # string dims: T["M", "N"]
                return S.SName(e.value, loc)
            if isinstance(e.value, (bool, int, float)):
                return S.SNum(e.value, loc)
            raise self.fail(e, f"constant {e.value!r} is not a tile value")
        if isinstance(e, ast.BinOp):
            return S.SBin(_binop(self, e.op, e), self.expr(e.left), self.expr(e.right), loc)
        if isinstance(e, ast.UnaryOp):
            if isinstance(e.op, ast.USub):
                return S.SUnary("-", self.expr(e.operand), loc)
            if isinstance(e.op, (ast.Invert, ast.Not)):
                return S.SUnary("~", self.expr(e.operand), loc)
            return self.expr(e.operand)  # unary plus
        if isinstance(e, ast.Compare):
            if len(e.ops) != 1:
                raise self.fail(e, "chained comparisons are not supported", hint="write (a < b) & (b < c)")
            if type(e.ops[0]) not in _CMPOPS:
                raise self.fail(e, f"'{type(e.ops[0]).__name__}' comparisons are not tile operators",
                                hint="compare values with <, <=, >, >=, == or !=")
            return S.SBin(_CMPOPS[type(e.ops[0])], self.expr(e.left), self.expr(e.comparators[0]), loc)
        if isinstance(e, ast.BoolOp):
            raise self.fail(e, "'and'/'or' are not tile operators", hint="use & and | on comparisons")
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.Subscript):
            if not isinstance(e.value, ast.Name):
                raise self.fail(e, "only parameters and dtypes can be indexed")
            idx = e.slice.elts if isinstance(e.slice, ast.Tuple) else [e.slice]
            return S.SSubscript(e.value.id, tuple(self.subscript(i) for i in idx), loc)
        if isinstance(e, (ast.Tuple, ast.List)):
            return S.STuple(tuple(self.expr(i) for i in e.elts), loc)
        raise self.fail(e, f"{type(e).__name__} expressions are not part of the tile language")


    def subscript(self, i: ast.expr) -> S.SExpr:
        """A window index: an expression, or `start:` / `start:stop` (an offset in elements)."""
        if not isinstance(i, ast.Slice):
            return self.expr(i)
        if i.lower is None or i.step is not None:
            raise self.fail(i, "a window slice is `start:` or `start:stop` (an offset in elements)",
                            hint="e.g. A[pos:, j] for the window whose first row is element pos")
        return S.SSlice(self.expr(i.lower), None if i.upper is None else self.expr(i.upper), self.loc(i))


def _binop(conv: _Converter, op: ast.operator, node: ast.AST) -> str:
    if type(op) not in _BINOPS:
        raise conv.fail(node, f"operator {type(op).__name__} is not supported")
    return _BINOPS[type(op)]


def _is_call_to(s: ast.stmt, name: str) -> bool:
    return isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) \
        and isinstance(s.value.func, ast.Name) and s.value.func.id == name


def build_function(fn) -> Kernel:
    with internal_errors("the Python front end", getattr(fn, "__name__", None)):
        sk = parse_function(fn)
    return build_kernel(sk)
