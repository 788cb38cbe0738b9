"""Compiling generated CUDA with NVRTC (through CuPy) and launching it on torch or cupy arrays.

CuPy is imported only here, lazily: generating code or building cubins with nvcc
needs no GPU.  CuPy picks the architecture of the current device; shared memory
beyond 48 KB per block is enabled with `cudaFuncSetAttribute`
(`RawKernel.max_dynamic_shared_size_bytes`).  Launches go to torch's current
stream when the arguments are torch tensors.
"""
from __future__ import annotations

import glob
import os
import sys
from contextlib import nullcontext

import numpy as np

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.scalar import binop
from ...passes.infer import TypedKernel
from ...runtime.args import BoundCall
from .codegen import Source, generate_source
from .errors import explain

NVRTC_OPTIONS = ("-std=c++17",)
DEFAULT_SMEM = 48 * 1024


def _cupy():
    try:
        import cupy
    except ImportError as e:
        raise TileError(f"the CUDA backend needs CuPy to compile and launch kernels ({e})",
                        hint="pip install cupy-cuda13x (or cupy-cuda12x), or use backend='triton'") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception as e:  # noqa: BLE001 - CUDA reports a missing driver in many ways
        raise TileError(f"the CUDA backend found no usable GPU ({e})",
                        hint="run on a machine with an NVIDIA GPU, or use backend='reference'") from None
    return cupy


def _include_options(cupy) -> tuple[str, ...]:
    """Where cuda_fp16.h and friends live: a CUDA toolkit, or the headers of pip's nvidia-* wheels."""
    roots = [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME")]
    try:
        roots.append(cupy.cuda.get_cuda_path())
    except Exception:  # noqa: BLE001 - older CuPy
        pass
    dirs = [os.path.join(r, "include") for r in roots + ["/usr/local/cuda"] if r]
    for entry in sys.path:  # site-packages/nvidia/{cuda_runtime,cu13,...}/include
        dirs += sorted(glob.glob(os.path.join(entry, "nvidia", "*", "include")))
    for d in dirs:
        if os.path.isfile(os.path.join(d, "cuda_fp16.h")):
            return (f"--include-path={d}",)
    return ()


class Launcher:
    """Runs one compiled kernel: grid, block and dynamic shared memory come from the IR."""

    def __init__(self, tk: TypedKernel, src: Source, kernel):
        self.tk, self.src, self.kernel = tk, src, kernel
        if src.smem_bytes > DEFAULT_SMEM:
            kernel.max_dynamic_shared_size_bytes = src.smem_bytes

    def __call__(self, call: BoundCall) -> None:
        grid = grid_of(self.tk, call)
        if min(grid) <= 0:
            return
        args = []
        for kind, name in self.src.params:
            if kind == "tensor":
                args.append(np.uint64(_pointer(call.arrays[name], name)))
            elif kind == "dim":
                args.append(np.int32(call.dims[name]))
            else:
                p = self.tk.kernel.param(name)
                v = call.scalars[name]
                args.append(np.float32(v) if p.dtype.is_float else np.int32(v) if p.dtype.kind == "bool"
                            else np.int64(v))
        import cupy
        device = next((int(i.device.split(":")[1]) for i in call.infos.values() if i.device.startswith("cuda")), 0)
        with cupy.cuda.Device(device):
            stream = _stream(call)
            with stream if stream is not None else nullcontext():
                self.kernel(grid, (self.src.threads, 1, 1), tuple(args), shared_mem=self.src.smem_bytes)


def grid_of(tk: TypedKernel, call: BoundCall) -> tuple[int, int, int]:
    """The launch grid (x, y, z) for a call: the kernel's grid expressions on its dims and scalars."""
    env = {**call.dims, **call.scalars, **{k: v for k, v in tk.consts.items() if isinstance(v, int)}}
    g = [int(_eval(e, env)) for e in tk.kernel.grid]
    g += [1] * (3 - len(g))
    if g[1] > 65535 or g[2] > 65535:
        raise TileError(f"grid {tuple(g)} of kernel '{tk.kernel.name}' exceeds CUDA's 65535 blocks on axes 1 "
                        "and 2", tk.kernel.loc, hint="put the largest extent on grid axis 0")
    return g[0], g[1], g[2]


def _eval(e: N.Expr, env: dict):
    if isinstance(e, N.Const):
        return e.value
    if isinstance(e, N.Var):
        return env[e.name]
    if isinstance(e, N.BinOp):
        return binop(e.op, _eval(e.lhs, env), _eval(e.rhs, env))
    if isinstance(e, N.Cast):
        return int(_eval(e.x, env)) if e.dtype.is_int else float(_eval(e.x, env))
    if isinstance(e, N.Unary) and e.op == "neg":
        return -_eval(e.x, env)
    raise TileError(f"cannot evaluate grid extent {type(e).__name__} on the host", getattr(e, "loc", None))


def _pointer(a, name: str) -> int:
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        if a.device.type != "cuda":
            raise TileError(f"argument '{name}' is on {a.device}; the CUDA backend needs GPU tensors",
                            hint="move it with .cuda()")
        return a.data_ptr()
    if mod == "cupy":
        return a.data.ptr
    raise TileError(f"argument '{name}' is a {type(a).__name__}; the CUDA backend takes torch or cupy GPU arrays",
                    hint="use torch.tensor(..., device='cuda') or cupy.asarray(...)")


def _stream(call: BoundCall):
    if not any(type(a).__module__.split(".")[0] == "torch" for a in call.arrays.values()):
        return None
    import cupy
    import torch
    dev = next(a.device for a in call.arrays.values() if type(a).__module__.split(".")[0] == "torch")
    stream = torch.cuda.current_stream(dev)
    from_external = getattr(cupy.cuda.Stream, "from_external", None)  # CuPy >= 14; ExternalStream is deprecated
    if from_external is not None and hasattr(stream, "__cuda_stream__"):
        return from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, dev.index or 0)


def compile(tk: TypedKernel, target: str | None = None) -> Launcher:  # noqa: A001 - backend interface name
    """Generate, compile with NVRTC (via CuPy) and load; `target` is unused (the device decides)."""
    cupy = _cupy()
    src = generate_source(tk)
    try:
        module = cupy.RawModule(code=src.code, options=NVRTC_OPTIONS + _include_options(cupy))
        kernel = module.get_function(src.name)
    except cupy.cuda.compiler.CompileException as e:
        raise explain(str(e), src.code, src.name, "NVRTC") from None
    return Launcher(tk, src, kernel)
