"""The kernel library, shipped inside the package: `tilelang.kernels.load("rmsnorm")`, `tilelang.kernels.rmsnorm`.

The `.tile` files have one home, the repository's `kernels/` folder (see its README).
A wheel carries them as `tilelang/_kernels/` (setup.py maps the folder there); a
checkout or an editable install reads `kernels/` itself.  Kernels are found by name
across the files (names are unique in the library) and loaded once per process, so
every user of `tilelang.kernels.gemm` shares its compiled variants.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .diagnostics import TileError
from .kernel import TileKernel, load as load_file


def library_dir() -> Path:
    """The folder of the library's `.tile` files: the wheel's `tilelang/_kernels/`, else the checkout's `kernels/`."""
    here = Path(__file__).resolve().parent
    for folder in (here / "_kernels", here.parent / "kernels"):
        if any(folder.glob("*.tile")):
            return folder
    raise TileError(f"tilelang's kernel library is missing: neither {here / '_kernels'} nor {here.parent / 'kernels'} "
                    "holds .tile files", hint="reinstall tilelang (`pip install .` from the repository)")


@lru_cache(maxsize=1)
def _library() -> dict[str, TileKernel]:
    out: dict[str, TileKernel] = {}
    for f in sorted(library_dir().glob("*.tile")):
        out.update(load_file(f))
    return out


def names() -> list[str]:
    """Every kernel of the library, by name."""
    return sorted(_library())


def load(name: str) -> TileKernel:
    """The library's kernel `name` (e.g. "rmsnorm", "linear_residual")."""
    kernels = _library()
    if name not in kernels:
        raise TileError(f"the kernel library has no kernel '{name}'", hint="kernels: " + ", ".join(names()))
    return kernels[name]


def __getattr__(name: str) -> TileKernel:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return load(name)
    except TileError as e:
        raise AttributeError(str(e)) from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(names()))
