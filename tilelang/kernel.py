"""The user-facing kernel object: `@tile_kernel`, `tilelang.load(...)` and calling a kernel."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .backends import get_backend
from .diagnostics import TileError
from .frontend.python_frontend import build_function
from .frontend.tile_parser import parse_file, parse_module
from .ir.nodes import Kernel
from .layout import infer_layouts
from .passes import TypedKernel, lower
from .passes.specialize import resolve_consts, with_candidates
from .runtime import autotune
from .runtime.args import BoundCall, bind


def _key(consts: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in consts.items()))


class TileKernel:
    """A kernel's IR plus compiled variants, one per (backend, target, constants).

    Calls on a GPU backend autotune the consts declared with candidates that the
    caller does not pin (`runtime/autotune.py`); `tuned(...)` shows the choice."""

    def __init__(self, ir: Kernel, tuner: autotune.Autotuner | None = None):
        self.ir = ir
        self.tuner = tuner or autotune.TUNER
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
            # one verdict on the kernel's layouts for every backend (the CPU ones take the GPU plan's)
            infer_layouts(tk, target if backend in ("cuda", "tvm") else None)
            self._launchers[key] = get_backend(backend).compile(tk, target)
        return self._launchers[key]

    def with_candidates(self, **candidates: Sequence[int]) -> "TileKernel":
        """This kernel with other candidate lists for its int consts, e.g. `with_candidates(BN=[16, 32, 64])`."""
        return TileKernel(with_candidates(self.ir, candidates), self.tuner)

    def __call__(self, *args, backend: str | None = None, target: str | None = None, **kwargs) -> None:
        """Run on arrays (torch, numpy or cupy); outputs are written in place."""
        call, backend = self._bind(args, kwargs, backend)
        self.compile(backend, target, **self._consts(call, backend, target))(call)

    def tuned(self, *args, backend: str | None = None, target: str | None = None, **kwargs) -> dict[str, Any]:
        """Every compile-time constant a call with these arguments would run with: pinned, tuned or default.

        Tunes now (without launching on the arguments) if the call would and no choice is cached."""
        call, backend = self._bind(args, kwargs, backend)
        return resolve_consts(self.ir, self._consts(call, backend, target))

    def _bind(self, args: tuple, kwargs: dict, backend: str | None) -> tuple[BoundCall, str]:
        call = bind(self.ir, args, kwargs)
        devices = {i.device for i in call.infos.values()}
        if backend is None:
            backend = "triton" if devices - {"cpu"} else "reference"
        if len(devices) > 1:
            raise TileError(f"arguments of '{self.name}' are on different devices: {sorted(devices)}", self.ir.loc,
                            hint="move every tensor to one device")
        return call, backend

    def _consts(self, call: BoundCall, backend: str, target: str | None) -> dict[str, Any]:
        """The call's pinned constants plus, on a GPU backend, the tuned values of the free tunable ones."""
        if not _tunes(backend, call):
            return call.consts
        choice = self.tuner.choose(self.ir, call, backend, target,
                                   lambda consts: self.compile(backend, target, **consts))
        return call.consts if choice is None else {**call.consts, **choice.config}

    def __repr__(self) -> str:
        return f"<TileKernel {self.name}>"


def _tunes(backend: str, call: BoundCall) -> bool:
    """Autotuning runs on GPU arrays with a compiling backend, unless TILELANG_AUTOTUNE=0.

    The reference interpreter and Triton's interpreter never tune: their timings say nothing about a GPU."""
    if not autotune.enabled() or backend == "reference" or not call.infos:
        return False
    if any(not i.device.startswith("cuda") for i in call.infos.values()):
        return False
    if backend == "triton":
        from .backends.triton.launcher import interpreting
        return not interpreting()
    return True


def tile_kernel(fn) -> TileKernel:
    """Decorator: a Python function written in the tile language becomes a TileKernel."""
    return TileKernel(build_function(fn))


def load(path: str | Path) -> dict[str, TileKernel]:
    """Every kernel of a `.tile` file, by name."""
    return {k.name: TileKernel(k) for k in parse_file(path).kernels}


def loads(text: str, file: str = "<string>") -> dict[str, TileKernel]:
    return {k.name: TileKernel(k) for k in parse_module(text, file).kernels}
