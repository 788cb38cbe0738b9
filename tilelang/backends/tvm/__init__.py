"""TVM TIR backend: tile kernels as TVMScript PrimFuncs, built for llvm (CPU) or CUDA.

    generate(tk, target)          -> TVMScript text (tirx dialect)
    compile(tk, target)           -> launcher(bound_call); target None: llvm for CPU arrays, cuda for GPU ones
    build_aot(tk, out_dir, target) -> shared libraries written with `export_library`
    load_aot(tk, path)            -> launcher that needs only TVM's runtime
    TILELANG_TVM_AOT=<dir>        -> kernel calls run <dir>'s prebuilt libraries, never compile
                                     (scripts/tvm_aot_prebuild.py, scripts/tvm_runtime_kit.sh)

The cuda lowering (lower_cuda.py) emits the layout plan, `tilelang.layout.infer_layouts(tk, "sm_80")`
(TVM has no wgmma): every register tile's task mapping (mapping.py), every shared tile's layout
(smem.py), which tiles are kept in shared memory or recomputed, each gemm's instruction and warp
grid (mma.py), the vector width of global -> shared copies.  It realizes its own way what the
plan leaves to a backend: shared-memory mirrors of register tiles read across threads,
reductions through shared buffers and warp shuffles, cp.async rings, barriers.  The llvm
lowering (lower_llvm.py) keeps its own loop structure and warns about the layout annotations it
ignores (after the layout pass has accepted them).

`tvm` itself is imported on the first build, not here.
"""
from __future__ import annotations

from .aot import aot_artifact, aot_target, build_aot, load_aot
from .build import Launcher, generate

NAME = "tvm"
SOURCE_SUFFIX = ".tir.py"


def compile(tk, target: str | None = None) -> Launcher:  # noqa: A001 - backend interface name
    return Launcher(tk, target)


__all__ = ["NAME", "aot_artifact", "aot_target", "compile", "generate", "build_aot", "load_aot"]
