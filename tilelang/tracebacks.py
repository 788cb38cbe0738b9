"""How an uncaught TileError reaches the user: the located message first, then the user's own frames
(the calls that led there); tilelang's internal frames only with TILELANG_DEBUG=1.

A TileError already says where the mistake is and what to do; the frames of the compiler that found
it are noise to the user (and its exception chain, often a KeyError it was converted from, more so).
`install()`, run on `import tilelang`, chains a `sys.excepthook` that shows TileErrors this way and
hands every other exception to the hook that was there before; IPython and Jupyter ask the error
itself (`TileError._render_traceback_`, see `ipython_view`).  The command line reports through
`report_command_error`.  The choice is made when the error is shown, so TILELANG_DEBUG may be set at
any time.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from types import TracebackType

from .diagnostics import InternalError, TileError

_PACKAGE = str(Path(__file__).resolve().parent) + os.sep
_DEBUG_NOTE = "(tilelang's own frames are hidden; TILELANG_DEBUG=1 shows the full traceback)"


def debug() -> bool:
    """TILELANG_DEBUG=1: show full tracebacks, tilelang's frames and chained exceptions included."""
    return os.environ.get("TILELANG_DEBUG", "") not in ("", "0")


def format_error(e: TileError, tb: TracebackType | None) -> str:
    """The error's located message, then the frames of the user's code that led to it."""
    parts = [e.render()]
    frames = [f for f in traceback.extract_tb(tb) if not _internal(f.filename)]
    if frames:
        parts.append("raised in (most recent call last):")
        parts += [entry.rstrip("\n") for entry in traceback.format_list(frames)]
    parts.append(_DEBUG_NOTE)
    return "\n".join(parts)


def report_command_error(e: Exception, command: str) -> int:
    """Print an exception that ended a command line run, as a located message; the exit status.

    A file the system refused is the user's to fix; anything else that is not a TileError is a bug of
    the compiler and is reported as one (with its traceback under TILELANG_DEBUG=1)."""
    if isinstance(e, OSError) and not isinstance(e, TileError):
        e = TileError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    elif not isinstance(e, TileError):
        internal = InternalError(f"{type(e).__name__}: {e}", f"'{command}'")
        internal.__cause__ = e
        e = internal
    if debug() and isinstance(e, InternalError):
        traceback.print_exception(e.__cause__ or e, file=sys.stderr)
    print(e.render(), file=sys.stderr)
    return 1


def install() -> None:
    """Show uncaught TileErrors in scripts as `format_error` does (a sys.excepthook chained to the one before)."""
    if not getattr(sys.excepthook, "shows_tile_errors", False):
        sys.excepthook = _chained_hook(sys.excepthook)


def ipython_view(e: TileError):
    """What IPython's `_render_traceback_` protocol calls to show `e`: `format_error`'s lines, starting
    below IPython's own frame that ran the cell.  Under TILELANG_DEBUG=1 an AttributeError, which tells
    IPython that the error has no such method, so it shows its usual full traceback."""
    if debug():
        raise AttributeError("_render_traceback_")
    tb = e.__traceback__
    if tb is not None and f"{os.sep}IPython{os.sep}" in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    return lambda: format_error(e, tb).split("\n")


def _chained_hook(previous):
    def hook(exc_type, exc, tb):
        if isinstance(exc, TileError) and not debug():
            print(format_error(exc, tb), file=sys.stderr)
        else:
            previous(exc_type, exc, tb)
    hook.shows_tile_errors = True
    return hook


def _internal(filename: str) -> bool:
    """A frame of tilelang itself or of Python's import machinery (a kernel module being imported)."""
    return filename.startswith("<frozen ") or os.path.abspath(filename).startswith(_PACKAGE)
