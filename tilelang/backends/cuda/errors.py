"""Compiler errors on generated code, shown with the generated line and the `.tile` line it came from.

The generator writes `// file.tile:LINE  source` before each statement; a compiler
message naming line N of the generated file is annotated with the nearest such
comment above N.
"""
from __future__ import annotations

import re

from ...diagnostics import InternalError, TileError

_LOCATION = re.compile(r"\((\d+)\): (error|warning)|\.cu:(\d+):\d*:? *(error|warning)|line (\d+); error")
_ORIGIN = re.compile(r"^\s*// (\S+:\d+)  (.*)$")


def origin(source: str, line: int) -> tuple[str, str] | None:
    """(file.tile:LINE, source text) of the statement that generated line `line` (1-based)."""
    lines = source.split("\n")
    for i in range(min(line, len(lines)) - 1, -1, -1):
        m = _ORIGIN.match(lines[i])
        if m:
            return m.group(1), m.group(2)
    return None


def explain(log: str, source: str, kernel: str, compiler: str) -> TileError:
    """A TileError quoting each error of `log` with its generated line and kernel source line."""
    lines = source.split("\n")
    notes = []
    for entry in log.strip().split("\n"):
        notes.append(entry)
        m = _LOCATION.search(entry)
        if not m or m.group(5):  # ptxas reports PTX lines, which do not map back
            continue
        n = int(m.group(1) or m.group(3))
        if 1 <= n <= len(lines):
            notes.append(f"    generated line {n}: {lines[n - 1].strip()}")
            o = origin(source, n)
            if o:
                notes.append(f"    from {o[0]}: {o[1]}")
    message = f"{compiler} could not compile the CUDA code generated for kernel '{kernel}':\n" + "\n".join(notes)
    if "cannot open source file" in log:
        return TileError(message, hint="the CUDA headers (cuda_fp16.h, ...) were not found: set CUDA_PATH to a "
                                       "CUDA toolkit")
    return InternalError(message, "the CUDA backend", kernel,
                         hint="this is a bug of the CUDA backend, not of your kernel; please report it with the "
                              "kernel (tilelang.backends.cuda.generate(tk) prints the code)")
