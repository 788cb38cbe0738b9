"""The Triton backend: typed kernels become readable `@triton.jit` Python source.

`generate(tk)` returns the source (`tilelang build` writes it, and `build_aot` the
PTX/cubin for an architecture, no GPU needed); `compile(tk, target)` loads it and
returns a launcher for BoundCalls.  CUDA tensors run compiled; with
TRITON_INTERPRET=1 set before triton is imported, CPU tensors run in Triton's
interpreter, which is how the tests check this backend without a GPU.
"""
from .aot import aot_artifact, aot_target, build_aot, compile_binary, load_aot
from .launcher import Launcher, compile, load_source
from .lower import Program, generate, lower

NAME = "triton"
SOURCE_SUFFIX = ".py"

__all__ = ["NAME", "SOURCE_SUFFIX", "Launcher", "Program", "aot_artifact", "aot_target", "build_aot", "compile", "compile_binary", "generate",
           "load_aot", "load_source", "lower"]
