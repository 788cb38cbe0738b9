"""Scalar semantics shared by constant folding, the interpreter and the runtime.

Integer `//` and `%` truncate toward zero, as they do in C, CUDA and Triton, so
every backend agrees on negative operands; `cdiv(a, b)` is the ceiling of a / b.
"""
from __future__ import annotations

import math


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def binop(op: str, a, b):
    """Apply a binary op to Python scalars."""
    ints = isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool)
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b
    if op == "floordiv":
        return _trunc_div(a, b) if ints else math.floor(a / b)
    if op == "mod":
        return a - b * _trunc_div(a, b) if ints else math.fmod(a, b)
    if op == "cdiv":
        return -((-a) // b) if ints else math.ceil(a / b)
    if op == "max":
        return max(a, b)
    if op == "min":
        return min(a, b)
    if op == "pow":
        return a ** b
    if op in ("and", "or", "xor", "shl", "shr"):
        return {"and": lambda: a & b, "or": lambda: a | b, "xor": lambda: a ^ b,
                "shl": lambda: a << b, "shr": lambda: a >> b}[op]()
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b, "eq": a == b, "ne": a != b}[op]
