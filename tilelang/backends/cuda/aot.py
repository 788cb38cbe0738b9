"""Ahead-of-time builds with nvcc, and loading them where no compiler is.

`build_aot` writes the generated source, a cubin and PTX, and `<stem>.json` with what
a launch needs (function name, threads, shared memory, parameters), each file written
atomically.  Without nvcc it writes the source and the JSON only (`has_binary` tells).
`load_aot` runs a cubin through CuPy: no nvcc, no NVRTC.  These builds do not use TMA
(its tensor maps are encoded per call from generated descriptions), so they run on
any arrays.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from ...diagnostics import TileError
from ...passes.infer import TypedKernel
from ...runtime.cache import write_atomic
from ...runtime.cubin import load_function
from ..nvcc import find_nvcc
from .codegen import Source, generate_source
from .errors import explain
from .runtime import Launcher

NVCC_OPTIONS = ("-std=c++17", "-O3")


def nvcc() -> str:
    found = find_nvcc()
    if found is None:
        raise TileError("nvcc was not found", hint="install the CUDA toolkit and put nvcc on PATH")
    return found


def run_nvcc(code: str, name: str, args: list[str], workdir: str) -> None:
    """Compile `code` with nvcc `args`; a failure becomes a TileError pointing at the `.tile` lines."""
    cu = os.path.join(workdir, f"{name}.cu")
    with open(cu, "w") as f:
        f.write(code)
    proc = subprocess.run([nvcc(), *NVCC_OPTIONS, *args, cu], capture_output=True, text=True, cwd=workdir)
    if proc.returncode:
        raise explain(proc.stderr + proc.stdout, code, name, "nvcc")


def build_aot(tk: TypedKernel, out_dir, arch: str = "sm_90a", stem: str | None = None) -> list[Path]:
    """Write `<stem>.cu`, `<stem>.cubin` and `<stem>.ptx` (stem: the kernel name) and `<stem>.json` into
    `out_dir`; without nvcc, the source and the JSON only."""
    src = generate_source(tk, arch)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or src.name
    files = [(out / f"{stem}.cu", src.code.encode())]
    if find_nvcc() is not None:
        with tempfile.TemporaryDirectory() as work:
            for ext, flag in (("cubin", "-cubin"), ("ptx", "-ptx")):
                target = os.path.join(work, f"{stem}.{ext}")
                run_nvcc(src.code, stem, [f"-arch={arch}", flag, "-o", target], work)
                files.append((out / f"{stem}.{ext}", Path(target).read_bytes()))
    meta = {"name": src.name, "threads": src.threads, "smem_bytes": src.smem_bytes, "arch": arch,
            "params": [list(p) for p in src.params]}
    files.append((out / f"{stem}.json", json.dumps(meta, indent=1).encode()))
    for path, data in files:
        write_atomic(path, data)
    return [p for p, _ in files]


def aot_target(target: str | None) -> str:
    """The architecture `build_aot` builds for: sm_90a (wgmma) unless named."""
    return target or "sm_90a"


def aot_artifact(paths: list[Path]) -> tuple[Path | None, bool]:
    """The cubin `load_aot` takes among `build_aot`'s files (None: sources only), and whether there is one."""
    cubin = next((p for p in paths if p.suffix == ".cubin"), None)
    return cubin, cubin is not None


def load_aot(tk: TypedKernel, cubin: str | Path) -> Launcher:
    """A launcher for a cubin written by `build_aot` (its `.json` beside it), through CuPy alone."""
    cubin = Path(cubin)
    meta = json.loads(cubin.with_suffix(".json").read_text())
    if not cubin.exists():
        raise TileError(f"{cubin.parent / cubin.stem}.cu has no cubin beside it: it was built without nvcc",
                        hint="rebuild it where nvcc is on PATH (`tilelang build --backend cuda`)")
    src = Source("", meta["name"], meta["threads"], meta["smem_bytes"],
                 tuple((kind, name) for kind, name in meta["params"]), ())
    return Launcher(tk, src, load_function(cubin, meta["name"], meta["smem_bytes"]))
