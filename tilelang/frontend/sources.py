"""Kernel source files as the command line names them: `.tile` files, Python files whose `@tile_kernel`
functions are read (never run), and folders holding either."""
from __future__ import annotations

from pathlib import Path

from ..diagnostics import TileError
from ..ir.nodes import Module
from .python_frontend import defines_tile_kernels, parse_python_module
from .tile_parser import parse_module, read_source

_WHAT = {".tile": ".tile files", ".py": ".py files with @tile_kernel functions"}


def kernel_files(paths: list[str], suffixes: tuple[str, ...] = (".tile", ".py")) -> list[Path]:
    """Files named directly, and under each folder its `.tile` files and (if `suffixes` has ".py") the `.py`
    files that define `@tile_kernel` functions, sorted; a folder with none of them is an error saying so."""
    give = _give(suffixes)
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix in suffixes and not _hidden(f.relative_to(p))
                           and (f.suffix == ".tile" or defines_tile_kernels(_text(f))))
            if not found:
                raise TileError(f"no kernel files in {p}", hint=give)
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise TileError(f"no such file or directory: {p}", hint=give)
    return out


def parse_source_file(path: str | Path) -> Module:
    """Every kernel of a `.tile` or `.py` file, built; a file that defines none is an error."""
    text = read_source(path)
    module = parse_python_module(text, str(path)) if Path(path).suffix == ".py" else parse_module(text, str(path))
    if not module.kernels:
        kind = "@tile_kernel functions" if Path(path).suffix == ".py" else "kernels"
        raise TileError(f"{path} defines no {kind}", hint=_give(tuple(_WHAT)))
    return module


def _give(suffixes: tuple[str, ...]) -> str:
    return "give " + ", ".join(_WHAT[s] for s in suffixes) + " or folders that hold them"


def _hidden(relative: Path) -> bool:
    """Inside a dot-folder (.git, .venv) or a cache: never a kernel source."""
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""
