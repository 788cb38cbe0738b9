"""The reference interpreter as a backend: runs anywhere, on CPU copies of the arguments."""
from __future__ import annotations

from ..ir.interpreter import run_typed
from ..runtime.args import BoundCall
from ..runtime.arrays import from_numpy_into, to_numpy

NAME = "reference"


class Launcher:
    def __init__(self, tk):
        self.tk = tk

    def __call__(self, call: BoundCall) -> None:
        arrays = {n: to_numpy(a) for n, a in call.arrays.items()}
        run_typed(self.tk, arrays, call.scalars, call.dims)
        for n, a in call.arrays.items():
            from_numpy_into(arrays[n], a)


def compile(tk, target: str | None = None) -> Launcher:  # noqa: A001 - backend interface name
    return Launcher(tk)


