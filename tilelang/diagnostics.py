"""Source locations and the one error type users see.

Every IR node keeps a `SourceLoc`; every user mistake becomes a `TileError` that
prints `file:line:col`, the offending source line with a caret, and a hint.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceLoc:
    file: str
    line: int
    col: int
    source_line: str = ""
    length: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN = SourceLoc("<unknown>", 0, 0)


class TileError(Exception):
    """A mistake in a kernel or in how it is called, reported in the user's terms."""

    def __init__(self, message: str, loc: SourceLoc | None = None, hint: str | None = None,
                 related: tuple[tuple[str, SourceLoc], ...] = ()):
        self.message = message
        self.loc = loc
        self.hint = hint
        self.related = related
        super().__init__(self.render())

    def render(self) -> str:
        parts = [f"{self.loc}: error: {self.message}" if self.loc else f"error: {self.message}"]
        parts += _excerpt(self.loc)
        for note, loc in self.related:
            parts.append(f"{loc}: note: {note}")
            parts += _excerpt(loc)
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)


class TileErrors(TileError):
    """Several independent errors found in one pass, reported together."""

    def __init__(self, errors: list[TileError]):
        self.errors = errors
        Exception.__init__(self, "\n".join(e.render() for e in errors))

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


def _excerpt(loc: SourceLoc | None) -> list[str]:
    if loc is None or not loc.source_line:
        return []
    text = loc.source_line.rstrip("\n")
    caret = " " * (max(loc.col, 1) - 1) + "^" * max(1, min(loc.length, len(text) - loc.col + 1))
    return [f"    {text}", f"    {caret}"]


class InternalError(TileError):
    """A bug in tilelang itself (a pass produced something its own checks reject), not in the kernel.

    Says so, names the pass and the kernel, and points at the statement being compiled."""

    def __init__(self, message: str, where: str, kernel: str, loc: SourceLoc | None = None):
        self.where = where
        self.kernel = kernel
        super().__init__(f"internal compiler error in {where} (kernel '{kernel}'): {message}", loc,
                         hint="this is a bug in tilelang, not in your kernel: please report it with the kernel; "
                              "annotating the tile's layout may work around it")
