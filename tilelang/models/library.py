"""The kernel library as the models call it: every kernel of `kernels/*.tile` by name, run on one
backend, each call counted (the launches-per-token figure) and, while a trace is open, recorded
with its scalar arguments (a decode step that a CUDA graph replays must take the same scalars at
every step: `tests/test_models_graph_safety.py`).

The few steps the language cannot express yet go through `torch_op`, which counts them too; they
are listed in docs/MODELS.md.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from ..diagnostics import TileError
from ..kernel import TileKernel, load

KERNEL_DIR = Path(__file__).resolve().parents[2] / "kernels"


@lru_cache(maxsize=1)
def kernels() -> dict[str, TileKernel]:
    """Every library kernel by name, parsed once per process."""
    if not KERNEL_DIR.is_dir():
        raise TileError(f"the kernel library is missing: no folder {KERNEL_DIR}",
                        hint="tilelang.models runs the kernels of a source checkout's kernels/ folder")
    return {name: k for path in sorted(KERNEL_DIR.glob("*.tile")) for name, k in load(path).items()}


@dataclass
class Call:
    """One recorded launch: the kernel (or torch op) and the scalars it was given."""
    name: str
    scalars: tuple = ()


@dataclass
class Library:
    """Library kernels on `backend` (None: Triton for GPU tensors, the reference interpreter for CPU ones)."""
    backend: str | None = None
    launches: Counter = field(default_factory=Counter)
    trace: list[Call] | None = None
    _variants: dict = field(default_factory=dict)

    def kernel(self, name: str, **candidates) -> TileKernel:
        """A library kernel, or a copy of it with other autotuning candidate lists (cached)."""
        library = kernels()
        if name not in library:
            raise TileError(f"no kernel '{name}' in {KERNEL_DIR}")
        if not candidates:
            return library[name]
        key = (name, tuple(sorted((k, tuple(v)) for k, v in candidates.items())))
        if key not in self._variants:
            self._variants[key] = library[name].with_candidates(**candidates)
        return self._variants[key]

    def untuned(self, name: str, **pinned) -> dict:
        """`pinned` plus every tunable const of kernel `name` at its default: a call that tunes nothing."""
        return {**{c.name: c.default for c in self.kernel(name).ir.consts if c.candidates}, **pinned}

    def __call__(self, name: str, *args, candidates: dict | None = None, **consts) -> None:
        """Launch library kernel `name` (consts pinned by keyword)."""
        self.kernel(name, **(candidates or {}))(*args, backend=self.backend, **consts)
        self._count(name, tuple(a for a in args if isinstance(a, (int, float))))

    def torch_op(self, name: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """A step done by torch because the language cannot express it yet (docs/MODELS.md lists them)."""
        out = fn(*args, **kwargs)
        self._count("torch." + name, ())
        return out

    def _count(self, name: str, scalars: tuple) -> None:
        self.launches[name] += 1
        if self.trace is not None:
            self.trace.append(Call(name, scalars))
