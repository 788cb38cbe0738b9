"""Ahead-of-time builds with nvcc: the generated source, a cubin and PTX, written atomically."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...diagnostics import TileError
from ...passes.infer import TypedKernel
from ...runtime.cache import write_atomic
from .codegen import generate_source
from .errors import explain

NVCC_OPTIONS = ("-std=c++17", "-O3")


def nvcc() -> str:
    found = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)
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
    """Write `<stem>.cu`, `<stem>.cubin` and `<stem>.ptx` (stem: the kernel name) into `out_dir`."""
    src = generate_source(tk, arch)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or src.name
    paths = []
    with tempfile.TemporaryDirectory() as work:
        for ext, flag in (("cubin", "-cubin"), ("ptx", "-ptx")):
            target = os.path.join(work, f"{stem}.{ext}")
            run_nvcc(src.code, stem, [f"-arch={arch}", flag, "-o", target], work)
            with open(target, "rb") as f:
                data = f.read()
            paths.append((out / f"{stem}.{ext}", data))
    paths.insert(0, (out / f"{stem}.cu", src.code.encode()))
    for path, data in paths:
        write_atomic(path, data)
    return [p for p, _ in paths]
