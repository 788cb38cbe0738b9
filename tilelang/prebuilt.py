"""`tilelang.load_build(DIR)`: run the kernels of a `tilelang build` folder where no compiler is.

The folder holds, per kernel, the `.tile` file it came from and the backend's compiled
artifact (a Triton or nvcc cubin, launched through CuPy; a TVM library, loaded with TVM's
runtime alone).  A call binds its arguments against the kernel's parameters as any call
does, specializes it (dtypes from the arguments, constants pinned or default) and runs the
artifact whose content key (`runtime.cache.spec_key`) matches: the lookup depends on what
the kernel is, never on where a file was.  A specialization that was not built is an error
naming what the folder holds; nothing is ever compiled here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .backends import get_backend
from .diagnostics import TileError
from .frontend.tile_parser import parse_file
from .ir.nodes import Kernel
from .passes import lower
from .runtime.args import bind
from .runtime.cache import spec_key


class BuiltKernel:
    """A kernel of a build folder: calls run its prebuilt artifacts (outputs written in place)."""

    def __init__(self, ir: Kernel, folder: Path, backend: str, target: str, entries: dict[str, dict]):
        self.ir, self.folder, self.backend, self.target = ir, folder, backend, target
        self.entries = entries  # spec key -> manifest entry
        self._launchers: dict[tuple, Any] = {}

    @property
    def name(self) -> str:
        return self.ir.name

    def __call__(self, *args, **kwargs) -> None:
        call = bind(self.ir, args, kwargs)
        key = tuple(sorted((k, str(v)) for k, v in call.consts.items()))
        launcher = self._launchers.get(key)
        if launcher is None:
            launcher = self._launchers[key] = self._load(call.consts)
        launcher(call)

    def _load(self, consts: dict):
        tk = lower(self.ir, consts)
        entry = self.entries.get(spec_key(tk, self.backend, self.target))
        if entry is None:
            have = "; ".join(_show(e["consts"]) for e in self.entries.values()) or "none"
            raise TileError(f"{self.folder} has no {self.backend} build of kernel '{self.name}' with "
                            f"{_show({k: str(v) for k, v in tk.consts.items()})}; it holds '{self.name}' with: "
                            f"{have}", self.ir.loc,
                            hint="call it with the dtypes and constants it was built for, or build those "
                                 "(`tilelang build` builds each kernel at its default constants)")
        if entry["load"] is None:
            raise TileError(f"kernel '{self.name}' in {self.folder} has sources only: nvcc was not found when it "
                            "was built", self.ir.loc,
                            hint=f"rebuild it where nvcc is on PATH (`tilelang build --backend {self.backend}`)")
        return get_backend(self.backend).load_aot(tk, self.folder / entry["load"])

    def __repr__(self) -> str:
        return f"<BuiltKernel {self.name} ({self.backend} {self.target}) from {self.folder}>"


def _show(consts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in consts.items())


def load_build(folder: str | Path) -> dict[str, BuiltKernel]:
    """Every kernel of a `tilelang build` output folder, by name."""
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.exists():
        raise TileError(f"{folder} is not a `tilelang build` folder: it has no manifest.json",
                        hint="give the folder `tilelang build SRC -o OUT` wrote (OUT)")
    m = json.loads(manifest.read_text())
    by_kernel: dict[tuple[str, str], dict[str, dict]] = {}
    for e in m["kernels"]:
        by_kernel.setdefault((e["file"], e["kernel"]), {})[e["spec"]] = e
    modules = {file: parse_file(folder / file) for file, _ in by_kernel}
    return {name: BuiltKernel(modules[file].kernel(name), folder, m["backend"], m["target"], entries)
            for (file, name), entries in by_kernel.items()}
