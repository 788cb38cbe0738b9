"""TVM TIR backend: tile kernels as TVMScript PrimFuncs, built for llvm (CPU) or CUDA.

    generate(tk, target)          -> TVMScript text (tirx dialect)
    compile(tk, target)           -> launcher(bound_call); target None: llvm for CPU arrays, cuda for GPU ones
    build_aot(tk, out_dir, target) -> shared libraries written with `export_library`
    load_aot(tk, path)            -> launcher that needs only TVM's runtime
    TILELANG_TVM_AOT=<dir>        -> kernel calls run <dir>'s prebuilt libraries, never compile
                                     (scripts/tvm_aot_prebuild.py, scripts/tvm_runtime_kit.sh)

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
