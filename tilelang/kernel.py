"""The user-facing kernel object: `@tile_kernel`, `tilelang.load(...)` and calling a kernel."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .backends import get_backend
from .diagnostics import TileError
from .frontend.python_frontend import build_function
from .frontend.tile_parser import parse_file, parse_module
from .ir.nodes import Kernel
from .passes import TypedKernel, lower
from .passes.specialize import resolve_consts
from .runtime.args import bind


def _key(consts: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in consts.items()))


class TileKernel:
    """A kernel's IR plus compiled variants, one per (backend, target, constants)."""

    def __init__(self, ir: Kernel):
        self.ir = ir
        self._typed: dict[tuple, TypedKernel] = {}
        self._launchers: dict[tuple, Any] = {}

    @property
    def name(self) -> str:
        return self.ir.name

    def lower(self, **consts) -> TypedKernel:
        """The typed kernel for these compile-time constants (defaults for the rest)."""
        values = resolve_consts(self.ir, consts)
        key = _key(values)
        if key not in self._typed:
            self._typed[key] = lower(self.ir, values)
        return self._typed[key]

    def compile(self, backend: str = "reference", target: str | None = None, **consts):
        tk = self.lower(**consts)
        key = (backend, target, _key(tk.consts))
        if key not in self._launchers:
            self._launchers[key] = get_backend(backend).compile(tk, target)
        return self._launchers[key]

    def __call__(self, *args, backend: str | None = None, target: str | None = None, **kwargs) -> None:
        """Run on arrays (torch, numpy or cupy); outputs are written in place."""
        call = bind(self.ir, args, kwargs)
        if backend is None:
            on_gpu = any(i.device != "cpu" for i in call.infos.values())
            backend = "triton" if on_gpu else "reference"
        devices = {i.device for i in call.infos.values()}
        if len(devices) > 1:
            raise TileError(f"arguments of '{self.name}' are on different devices: {sorted(devices)}", self.ir.loc,
                            hint="move every tensor to one device")
        self.compile(backend, target, **call.consts)(call)

    def __repr__(self) -> str:
        return f"<TileKernel {self.name}>"


def tile_kernel(fn) -> TileKernel:
    """Decorator: a Python function written in the tile language becomes a TileKernel."""
    return TileKernel(build_function(fn))


def load(path: str | Path) -> dict[str, TileKernel]:
    """Every kernel of a `.tile` file, by name."""
    return {k.name: TileKernel(k) for k in parse_file(path).kernels}


def loads(text: str, file: str = "<string>") -> dict[str, TileKernel]:
    return {k.name: TileKernel(k) for k in parse_module(text, file).kernels}
