"""Readable text for IR: what `tilelang show` prints and error messages quote.

Expressions print in the language's own syntax; with a TypedKernel each
statement that defines a tile is annotated with the tile's inferred type.
"""
from __future__ import annotations

from . import nodes as N

_SYM = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**",
        "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "&", "or": "|",
        "xor": "^", "shl": "<<", "shr": ">>"}


def expr_str(e) -> str:
    if isinstance(e, N.Const):
        v = e.value
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float) and v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(e, (N.Var, N.TileRef)):
        return e.name
    if isinstance(e, N.BlockId):
        return f"block_id({e.axis})"
    if isinstance(e, N.BinOp):
        if e.op in _SYM:
            return f"({expr_str(e.lhs)} {_SYM[e.op]} {expr_str(e.rhs)})"
        return f"{e.op}({expr_str(e.lhs)}, {expr_str(e.rhs)})"
    if isinstance(e, N.Unary):
        if e.op == "neg":
            return f"-{expr_str(e.x)}"
        if e.op == "not":
            return f"~{expr_str(e.x)}"
        return f"{e.op}({expr_str(e.x)})"
    if isinstance(e, N.Cast):
        return f"{e.dtype}({expr_str(e.x)})"
    if isinstance(e, N.Where):
        return f"where({expr_str(e.cond)}, {expr_str(e.a)}, {expr_str(e.b)})"
    if isinstance(e, N.Reduce):
        return f"{e.op}({expr_str(e.x)}, axis={e.axis})"
    if isinstance(e, N.Broadcast):
        return f"broadcast({expr_str(e.x)}, {_shape(e.shape)})"
    if isinstance(e, N.Iota):
        return f"iota({_shape(e.shape)}, axis={e.axis})"
    if isinstance(e, N.Full):
        return f"full({e.dtype}[{', '.join(map(expr_str, e.shape))}], {expr_str(e.value)})"
    if isinstance(e, N.Transpose):
        return f"trans({expr_str(e.x)})"
    if isinstance(e, N.ElemOffset):
        return f"{expr_str(e.start)}:{'' if e.stop is None else expr_str(e.stop)}"
    if isinstance(e, N.GlobalRef):
        return f"{e.tensor}[{', '.join(map(expr_str, e.indices))}]"
    return repr(e)


def _shape(dims) -> str:
    return "(" + ", ".join(map(expr_str, dims)) + ("," if len(dims) == 1 else "") + ")"


def stmt_lines(s: N.Stmt, typed=None, indent: str = "    ") -> list[str]:
    def note(name: str) -> str:
        return f"  # {typed.tiles[name]}" if typed is not None and name in typed.tiles else ""

    if isinstance(s, N.Let):
        return [f"{indent}{s.name} = {expr_str(s.value)};"]
    if isinstance(s, N.ReadScalar):
        return [f"{indent}{s.name} = {expr_str(s.src)};"]
    if isinstance(s, N.Alloc):
        extra = "" if s.init is None else f", init={expr_str(s.init)}"
        extra += "" if s.layout is None else f", layout={s.layout}"
        return [f"{indent}{s.name} = {s.scope}({s.dtype}[{', '.join(map(expr_str, s.shape))}]{extra});"]
    if isinstance(s, N.Assign):
        return [f"{indent}{s.name} = {expr_str(s.value)};{note(s.name) if s.define else ''}"]
    if isinstance(s, N.Copy):
        pad = "" if s.pad is None else f", pad={expr_str(s.pad)}"
        return [f"{indent}copy({expr_str(s.src)}, {expr_str(s.dst)}{pad});"]
    if isinstance(s, N.Gemm):
        flags = "".join(f", {f}=true" for f in ("trans_a", "trans_b") if getattr(s, f))
        return [f"{indent}gemm({s.a.name}, {s.b.name}, {s.acc.name}{flags});"]
    if isinstance(s, N.Dequant):
        zero = "" if s.zero is None else f", zero={s.zero}"
        return [f"{indent}dequant({expr_str(s.src)}, {s.dst.name}, scale={s.scale}, group={expr_str(s.group)}{zero});"]
    if isinstance(s, N.If):
        lines = [f"{indent}if {expr_str(s.cond)} {{"]
        for b in s.body:
            lines += stmt_lines(b, typed, indent + "    ")
        if s.orelse:
            lines.append(f"{indent}}} else {{")
            for b in s.orelse:
                lines += stmt_lines(b, typed, indent + "    ")
        return lines + [f"{indent}}}"]
    if isinstance(s, N.AtomicAdd):
        return [f"{indent}atomic_add({s.src.name}, {expr_str(s.dst)});"]
    if isinstance(s, N.For):
        it = "range" if s.stages is None else "pipelined"
        st = "" if s.stages is None else f", stages={expr_str(s.stages)}"
        lines = [f"{indent}for {s.var} in {it}({expr_str(s.start)}, {expr_str(s.stop)}{st}) {{"]
        for b in s.body:
            lines += stmt_lines(b, typed, indent + "    ")
        return lines + [f"{indent}}}"]
    return [f"{indent}{s!r}"]


def param_str(p: N.Param) -> str:
    if isinstance(p, N.TensorParam):
        return f"{p.name}: {p.dtype}[{', '.join(map(str, p.dims))}]" + (f" @ {p.storage}" if p.storage != "plain" else "")
    if isinstance(p, N.ScalarParam):
        return f"{p.name}: {p.dtype}"
    default = "" if p.default is None else f" = {p.default}"
    cands = f"[{', '.join(map(str, p.candidates))}]" if p.candidates else ""
    return f"{p.name}: {'const' if p.kind == 'int' else 'dtype'}{cands}{default}"


def kernel_str(k: N.Kernel, typed=None) -> str:
    """The kernel in .tile syntax (re-parseable), tiles annotated with their types if `typed`."""
    head = f"kernel {k.name}({', '.join(param_str(p) for p in k.params)})"
    launch = f"    grid({', '.join(map(expr_str, k.grid))}) threads({expr_str(k.threads)})"
    body = [line for s in k.body for line in stmt_lines(s, typed)]
    return "\n".join([head, launch, "{", *body, "}"])
