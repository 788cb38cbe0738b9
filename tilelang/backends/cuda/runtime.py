"""Compiling generated CUDA with NVRTC (through CuPy) and launching it on torch or cupy arrays.

CuPy is imported only here, lazily: generating code or building cubins with nvcc
needs no GPU.  NVRTC compiles for the current device's architecture, sm_90a on sm_90
(H100/H200, for wgmma), straight to a cubin kept in the shared disk cache (`_cubin`);
shared memory beyond 48 KB per block is enabled with `cudaFuncSetAttribute`
(`RawKernel.max_dynamic_shared_size_bytes`).  Launches go to torch's current
stream when the arguments are torch tensors.

On sm_90a, pipelined wgmma operands are loaded by TMA (tma.py): the launcher encodes a tensor
map per such tile for each call's pointers and dims (cached) and passes it by value, as a
one-element numpy array of 128 bytes (CuPy passes those by value).  A call whose tensors TMA
cannot describe (base or row pitch not 16-byte aligned) runs a variant compiled without TMA,
built on first need.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.scalar import binop
from ...passes.infer import TypedKernel
from ...runtime.args import BoundCall
from ...runtime.cache import DiskCache, cache_key, cache_root
from ...runtime.cubin import cupy_module, device_pointer, launch, load_function
from . import tma as TMA
from .codegen import Source, generate_source
from .errors import explain

NVRTC_OPTIONS = ("-std=c++17",)


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

    def __init__(self, tk: TypedKernel, src: Source, kernel, fallback=None):
        self.tk, self.src, self.kernel = tk, src, kernel  # kernel: from `cubin.load_function`
        self._fallback, self._fallback_launcher = fallback, None  # builds the variant without TMA

    def __call__(self, call: BoundCall) -> None:
        grid = grid_of(self.tk, call)
        if min(grid) <= 0:
            return
        maps = self.tensor_maps(call)
        if maps is None:
            if self._fallback_launcher is None:
                self._fallback_launcher = self._fallback()
            self._fallback_launcher(call)
            return
        args = []
        for kind, name in self.src.params:
            if kind == "tmap":
                continue  # appended last, from `maps`
            if kind == "tensor":
                args.append(np.uint64(device_pointer(call.arrays[name], name)))
            elif kind == "dim":
                args.append(np.int32(call.dims[name]))
            else:
                p = self.tk.kernel.param(name)
                v = call.scalars[name]
                args.append(np.float32(v) if p.dtype.is_float else np.int32(v) if p.dtype.kind == "bool"
                            else np.int64(v))
        args += maps
        launch(self.kernel, call, grid, self.src.threads, tuple(args), self.src.smem_bytes)

    def tensor_maps(self, call: BoundCall) -> list[np.ndarray] | None:
        """The call's tensor maps in parameter order, or None if TMA cannot describe one of its tensors."""
        maps = []
        for ld in self.src.tma:
            a = call.arrays[ld.tensor]
            ptr, dims = device_pointer(a, ld.tensor), tuple(int(d) for d in a.shape)
            if not TMA.usable(ptr, dims, ld.elem_bytes):
                return None
            maps.append(np.frombuffer(TMA.encode(ld, ptr, dims), dtype=np.dtype((np.void, TMA.MAP_BYTES))).copy())
        return maps


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


def device_arch(cupy) -> str:
    """The current device's arch: "sm_90a" on compute capability 9.0 (wgmma), else sm_XY (portable code)."""
    cc = cupy.cuda.Device(getattr(cupy.cuda.runtime, "getDevice", lambda: 0)()).compute_capability
    return "sm_90a" if cc == "90" else f"sm_{cc}"


def compile(tk: TypedKernel, target: str | None = None) -> Launcher:  # noqa: A001 - backend interface name
    """Generate, compile with NVRTC and load; `target` (e.g. "sm_90a", "sm_80") overrides the device's arch."""
    cupy = cupy_module()
    arch = target if target is not None else device_arch(cupy)
    return _launcher(cupy, tk, arch, tma=arch == "sm_90a")


def _launcher(cupy, tk: TypedKernel, arch: str, tma: bool) -> Launcher:
    src = generate_source(tk, arch, tma)
    options = NVRTC_OPTIONS + _include_options(cupy)
    try:
        kernel = load_function(_cubin(cupy, tk, src.code, arch, options), src.name,
                               src.smem_bytes)
    except cupy.cuda.compiler.CompileException as e:
        raise explain(str(e), src.code, src.name, "NVRTC") from None
    return Launcher(tk, src, kernel, (lambda: _launcher(cupy, tk, arch, False)) if src.tma else None)


def _cubin(cupy, tk: TypedKernel, code: str, arch: str, options: tuple[str, ...]) -> Path:
    """NVRTC straight to a cubin for `arch`, kept in the shared disk cache (`runtime/cache.py`).

    Keyed like every backend's artifacts (`cache_key`), plus the source (with or without TMA),
    the options and NVRTC's version.  CuPy's RawModule(code=...) would append its own
    `-arch=sm_XY` (without the "a" suffix that wgmma needs) and cache elsewhere, so the cubin
    is made here, through CuPy's NVRTC bindings, and loaded with RawModule(path=...)."""
    from cupy_backends.cuda.libs import nvrtc
    opts = options + (f"--gpu-architecture={arch}", "-ftz=true")  # CuPy's path adds -ftz=true too
    extra = "\0".join((hashlib.sha256(code.encode()).hexdigest(), *opts, str(nvrtc.getVersion())))
    key = cache_key(tk, "cuda", arch, tools=("cupy", "cupy-cuda12x", "cupy-cuda13x"), extra=extra)
    cache = DiskCache(cache_root() / "cuda")
    entry = cache.get(key)
    if entry is None:
        prog = nvrtc.createProgram(code, "tilelang_kernel.cu", (), ())
        try:
            try:
                nvrtc.compileProgram(prog, opts)
            except nvrtc.NVRTCError:
                raise cupy.cuda.compiler.CompileException(nvrtc.getProgramLog(prog), code, "tilelang_kernel.cu",
                                                          opts) from None
            cubin = nvrtc.getCUBIN(prog)
        finally:
            nvrtc.destroyProgram(prog)
        entry = cache.put(key, {"kernel.cubin": cubin})
    return entry / "kernel.cubin"
