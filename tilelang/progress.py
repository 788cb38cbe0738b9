"""A progress bar on stderr for long commands (build, tune, bench): no dependency.

On a terminal the bar redraws in place; in a log (not a tty) each step is one line,
so a run cut short still shows how far it got.  stdout stays clean for the tables.
"""
from __future__ import annotations

import sys

WIDTH = 24


def step(i: int, n: int, label: str) -> None:
    """Show step `i` of `n` (1-based) with a label."""
    done = WIDTH * i // max(n, 1)
    line = f"[{'#' * done}{'.' * (WIDTH - done)}] {i}/{n} {label}"
    if sys.stderr.isatty():
        print("\r" + line[:100].ljust(100), end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr, flush=True)


def done() -> None:
    """End the bar's line on a terminal."""
    if sys.stderr.isatty():
        print(file=sys.stderr)
