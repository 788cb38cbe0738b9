"""Source locations and the error types users see.

Every IR node keeps a `SourceLoc`; every user mistake becomes a `TileError` that
prints `file:line:col`, the offending source line with a caret, and a hint (with a
"did you mean" where a name was misspelt).  A bug of the compiler itself becomes an
`InternalError`, which says so, instead of a bare traceback.
"""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator


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

    @property
    def _render_traceback_(self):
        """IPython's protocol for exceptions that show themselves: the located message first."""
        from .tracebacks import ipython_view
        return ipython_view(self)


class TileErrors(TileError):
    """Several independent errors found in one pass, reported together."""

    def __init__(self, errors: list[TileError]):
        self.errors = errors
        Exception.__init__(self, "\n".join(e.render() for e in errors))

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


class Unsupported(TileError):
    """A valid kernel that one backend cannot take, though another can (e.g. weights in the plan's packed
    order off the CUDA backend): the hint names the backend that does. `tilelang build` lists such kernels
    as unsupported and goes on; a call raises it."""


class InternalError(TileError):
    """A bug in tilelang itself, not in the kernel: a pass produced something its own checks reject, or an
    assertion or unexpected exception escaped a pass or a backend (`internal_errors`; the original
    exception is then the `__cause__`, which TILELANG_DEBUG=1 shows).

    Says so, names the pass (or backend) and the kernel, and points at the statement being compiled."""

    def __init__(self, message: str, where: str, kernel: str | None = None, loc: SourceLoc | None = None,
                 hint: str | None = None):
        self.where = where
        self.kernel = kernel
        on = f" (kernel '{kernel}')" if kernel else ""
        super().__init__(f"internal compiler error in {where}{on}: {message}", loc,
                         hint=hint or "this is a bug in tilelang, not in your kernel: please report it with the "
                                      "kernel (TILELANG_DEBUG=1 shows the full traceback)")


@contextmanager
def internal_errors(stage: str, kernel: str | None = None, loc: SourceLoc | None = None) -> Iterator[None]:
    """Run one stage of the compiler: a TileError (the user's mistake) passes through unchanged; any other
    exception is a compiler bug and becomes an InternalError naming the stage and the kernel."""
    try:
        yield
    except TileError:
        raise
    except Exception as e:  # noqa: BLE001 - anything else escaping a compiler stage is our bug
        raise InternalError(f"{type(e).__name__}: {e}", stage, kernel, loc) from e


def did_you_mean(name: str, known: Iterable[str], hint: str | None = None) -> str | None:
    """`hint`, led by "did you mean 'x'?" when `name` is a likely misspelling of some of `known`.

    Case counts a little (`bm` finds `BM`; `xx` prefers `x` to `X`); a match must be close (short names may
    differ more: `BX` finds `BM`, but `BQ` none of `BK`, `BM`, `BN`) and nearly as close as the best one."""
    def score(k: str) -> float:
        return 0.9 * _similarity(name.lower(), k.lower()) + 0.1 * _similarity(name, k)

    scored = sorted((-score(k), _number_gap(name, k), k) for k in set(known))
    if not scored:
        return hint
    floor = max(0.5 if len(name) <= 2 else 0.6 if len(name) <= 3 else 0.7, -scored[0][0] - 0.05)
    close = [f"'{k}'" for score, gap, k in scored[:3] if -score >= floor]
    if -scored[0][0] < 0.6:  # a weak likeness: the same stem's nearest number (u9 -> u8), or a unique guess
        numbered = min((gap, k) for _, gap, k in scored)
        close = [f"'{numbered[1]}'"] if numbered[0] < 1 << 30 else close if len(close) == 1 else []
    if not close:
        return hint
    guess = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
    return f"did you mean {guess}?" + (f" {hint}" if hint else "")


def _number_gap(a: str, b: str) -> int:
    """How far apart the trailing numbers of two names with one stem are (u9 is nearer u8 than u1)."""
    sa, sb = a.rstrip("0123456789"), b.rstrip("0123456789")
    if sa.lower() != sb.lower() or sa == a or sb == b:
        return 1 << 30
    return abs(int(a[len(sa):]) - int(b[len(sb):]))


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _excerpt(loc: SourceLoc | None) -> list[str]:
    if loc is None or not loc.source_line:
        return []
    text = loc.source_line.rstrip("\n")
    caret = " " * (max(loc.col, 1) - 1) + "^" * max(1, min(loc.length, len(text) - loc.col + 1))
    return [f"    {text}", f"    {caret}"]
