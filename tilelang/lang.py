"""Names used inside `@tile_kernel` functions, importable so linters and editors know them.

The decorated function is parsed, never run: calling these outside a kernel is an error.
Dtypes are real objects because Python evaluates parameter defaults (`T: dtype = f16`).
"""
from __future__ import annotations

import builtins

from .diagnostics import TileError
from .frontend.builder import TILE_FUNCS
from .ir.dtypes import DTYPES


def _outside(name: str):
    def fn(*args, **kwargs):
        raise TileError(f"{name}(...) is part of the tile language and only means something inside a "
                        "@tile_kernel function")
    fn.__name__ = name
    return fn


class _Marker(str):
    """`const` and `dtype` as annotations; `const[16, 32]` (candidates) must evaluate too, since
    Python evaluates annotations at definition time unless the module uses postponed annotations."""

    def __getitem__(self, _):
        return self


const = _Marker("const")
dtype = _Marker("dtype")
packed = _Marker("packed")  # a tensor's storage order: `W: u4[N, K] @ packed`
launch = _outside("launch")
globals().update({name: _outside(name) for name in TILE_FUNCS})
globals().update(DTYPES)

# Python builtins of the same name (range, sum, max, ...) are not exported: kernels never run,
# so they need no binding, and shadowing them would break ordinary code in the user's module.
__all__ = ["const", "dtype", "packed", "launch", *(n for n in TILE_FUNCS if not hasattr(builtins, n)),
           *DTYPES]
