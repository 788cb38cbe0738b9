"""Helpers over generated source text that every backend needs (backends share these, not each other)."""
from __future__ import annotations


def encloses(code: str) -> bool:
    """Whether `code` is one parenthesized expression: its first `(` is closed by its last character."""
    if not (code.startswith("(") and code.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(code):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(code) - 1:
            return False
    return True


def paren(code: str) -> str:
    """`code` as an operand of an arithmetic operator: parenthesized unless it is a name, a number or
    already one parenthesized expression (C++ and TVMScript alike)."""
    return code if code.isidentifier() or code.isdigit() or encloses(code) else f"({code})"
