"""Finding nvcc, which the CUDA and TVM backends compile with ahead of time."""
from __future__ import annotations

import os
import shutil


def find_nvcc() -> str | None:
    """nvcc on PATH, else the CUDA toolkit's default location, else None."""
    return shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)
