"""The CUDA C++ backend: typed kernel -> readable CUDA C++ -> NVRTC (via CuPy) or nvcc.

* `generate(tk)`: the source of one `extern "C" __global__` function (no GPU needed);
* `compile(tk, target)`: a launcher for torch/cupy GPU arrays (needs CuPy and a GPU);
* `build_aot(tk, out_dir, arch="sm_90a")`: `.cu`, `.cubin` and `.ptx` files built by nvcc, which
  `load_aot(tk, cubin)` runs through CuPy alone.

Modules: `ctype` (dtypes as C++), `cexpr` (integer expression text), `mapping` (which
thread holds which register-tile element), `smem` (shared layouts), `plan` (decisions
before codegen), `expr` (scalar and elementwise expressions), `codegen` (the kernel: signature,
frame, one statement at a time) over `emitter` (what the statement emitters share) and one
emitter per family: `elementwise` (Alloc, Assign), `reduce`, `copies`, `gemm`, `dequant`,
`pipeline` (loops); they build `cir` (a statement-level C IR that passes tidy before printing).
`wgmma` (Hopper warpgroup MMA: tiling, fragments, smem descriptors), `tma` (tensor maps),
`runtime` (NVRTC and launching), `aot` (nvcc), `emulate` (host C++ emulation for race checks),
`errors` (compiler errors mapped back to the `.tile` source).  The C++ helpers and code shapes are
templates in `templates/` (`templating` loads them).
"""
from __future__ import annotations

from .aot import aot_artifact, aot_target, build_aot, load_aot
from .codegen import generate_source
from .runtime import Launcher, compile  # noqa: A004 - the backend interface name

NAME = "cuda"
SOURCE_SUFFIX = ".cu"


def generate(tk, target: str | None = None) -> str:
    """The CUDA C++ source of a typed kernel (`TileKernel.lower(...)`): for every sm_80+ arch, or
    with wgmma where `target` is "sm_90a"."""
    return generate_source(tk, target).code


__all__ = ["NAME", "Launcher", "aot_artifact", "aot_target", "build_aot", "compile", "generate", "load_aot"]
