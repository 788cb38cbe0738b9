"""Compiling generated CUDA with NVRTC (through CuPy) and launching it on torch or cupy arrays.

CuPy is imported only here, lazily: generating code or building cubins with nvcc
needs no GPU.  NVRTC compiles for the current device's architecture, sm_90a on sm_90
(H100/H200, for wgmma), straight to a cubin kept in the shared disk cache (`_cubin`);
shared memory beyond 48 KB per block is enabled with `cudaFuncSetAttribute`
(`RawKernel.max_dynamic_shared_size_bytes`).  Kernels are launched with `cuLaunchKernel`
directly (`Launcher`), on torch's current stream when the arguments are torch tensors,
else on CuPy's.

On sm_90a, pipelined wgmma operands are loaded by TMA (tma.py): the launcher encodes a tensor
map per such tile for each call's pointers and dims (cached) and passes it by value, 128 bytes
among the parameters.  A call whose tensors TMA cannot describe (base or row pitch not 16-byte
aligned) runs a variant compiled without TMA, built on first need.
"""
from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ...diagnostics import TileError
from ...ir import nodes as N
from ...ir.scalar import binop
from ...passes.infer import TypedKernel
from ...runtime import dispatch
from ...runtime.args import BoundCall, runtime_values
from ...runtime.cache import DiskCache, cache_key, cache_root
from ...runtime.cubin import DEFAULT_SMEM, cupy_module, device_pointer, load_function
from . import ctype
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
    """Runs one compiled kernel: grid, block and dynamic shared memory come from the IR.

    Every launch goes through `fast(call)`'s prepared form: a direct `cuLaunchKernel` (CuPy's thin
    driver binding, none of RawKernel's per-call argument handling) on parameters packed in place
    (`_Params`).  A call through `__call__` prepares one for itself; repeated calls through
    `TileKernel` reuse the one prepared for their signature (runtime/dispatch.py)."""

    def __init__(self, tk: TypedKernel, src: Source, kernel, fallback=None):
        self.tk, self.src, self.kernel = tk, src, kernel  # kernel: from `cubin.load_function`
        self._fallback, self._fallback_launcher = fallback, None  # builds the variant without TMA
        self._functions: dict[int, int] = {}  # device -> CUfunction

    def __call__(self, call: BoundCall) -> None:
        self._prepare(call)(runtime_values(self.tk.kernel, call))

    def fast(self, call: BoundCall) -> dispatch.Launch | None:
        """The launch for every call with `call`'s signature, or None if the grid reads a scalar (then each
        call prepares its own)."""
        return None if dispatch.grid_reads_scalars(self.tk.kernel) else self._prepare(call)

    def _prepare(self, call: BoundCall) -> dispatch.Launch:
        grid = grid_of(self.tk, call)
        for name, a in call.arrays.items():
            device_pointer(a, name)  # a TileError unless it is a GPU array
        if min(grid) <= 0:
            return lambda values: None
        for ld in self.src.tma:  # the signature fixes pointer alignment and dims, so this holds for all its calls
            a = call.arrays[ld.tensor]
            if not TMA.usable(device_pointer(a, ld.tensor), tuple(int(d) for d in a.shape), ld.elem_bytes):
                if self._fallback_launcher is None:
                    self._fallback_launcher = self._fallback()
                return self._fallback_launcher._prepare(call)
        import cupy
        device = next((int(i.device.split(":")[1]) for i in call.infos.values() if i.device.startswith("cuda")), 0)
        function = self._function(cupy, device)
        params = _Params(self.tk, self.src, call)
        torch_args = any(type(a).__module__.split(".")[0] == "torch" for a in call.arrays.values())
        stream = dispatch.torch_stream() if torch_args else (lambda index: cupy.cuda.get_current_stream().ptr)
        current = cupy.cuda.runtime.getDevice
        threads, smem, launch_kernel = self.src.threads, self.src.smem_bytes, cupy.cuda.driver.launchKernel

        def launch(values: list) -> None:
            if current() != device:
                with cupy.cuda.Device(device):
                    return launch(values)
            with params.lock:
                launch_kernel(function, *grid, threads, 1, 1, smem, stream(device), params.fill(values), 0)

        return launch

    def _function(self, cupy, device: int) -> int:
        """The kernel's CUfunction on `device`: loaded, and its shared-memory limit raised, once per device
        (not while a CUDA graph is being captured, where launches are prepared too)."""
        function = self._functions.get(device)
        if function is None:
            with cupy.cuda.Device(device):
                function = self.kernel.kernel.ptr
                if self.src.smem_bytes > DEFAULT_SMEM:
                    self.kernel.max_dynamic_shared_size_bytes = self.src.smem_bytes
            self._functions[device] = function
        return function


class _Params:
    """A kernel's parameters laid out once the way `cuLaunchKernel` takes them (an array of pointers to
    the values), so that a launch writes only what changes between calls: data pointers and scalars in
    one `struct.pack_into`, and a tensor map only when its tensor's pointer changed.  Dims are written
    once: the call signature fixes the shapes.  `fill` and the launch that reads it hold `lock` (the
    driver copies the values at launch)."""

    def __init__(self, tk: TypedKernel, src: Source, call: BoundCall):
        index = dispatch.value_index(tk.kernel)
        codes, self.fields, dims = [], [], []
        for kind, name in src.params:
            if kind == "tensor":
                codes.append("Q")
                self.fields.append((index[name], _data_pointer(call.arrays[name])))
            elif kind == "scalar":
                codes.append(_STRUCT[ctype.scalar_param(tk.kernel.param(name).dtype)])
                self.fields.append((index[name], None))
            elif kind == "dim":
                dims.append(call.dims[name])
        self.dynamic = struct.Struct("@" + "".join(codes))
        dims_at = _align(self.dynamic.size, 4)
        maps_at = _align(dims_at + 4 * len(dims), 64)
        self.buffer = ctypes.create_string_buffer(maps_at + TMA.MAP_BYTES * len(src.tma) + 64)
        base = _align(ctypes.addressof(self.buffer), 64)  # a CUtensorMap is 64-byte aligned
        self.skip = base - ctypes.addressof(self.buffer)
        struct.pack_into(f"@{len(dims)}i", self.buffer, self.skip + dims_at, *dims)
        self.maps = [(ld, index[ld.tensor], _data_pointer(call.arrays[ld.tensor]), base + maps_at + TMA.MAP_BYTES * k,
                      tuple(int(d) for d in call.arrays[ld.tensor].shape)) for k, ld in enumerate(src.tma)]
        self.mapped: list[int | None] = [None] * len(self.maps)  # the pointer each written map describes
        # where each parameter's value lives, in the kernel's order (tensors, dims, scalars, tensor maps)
        at = {"field": iter(_offsets(codes)), "dim": iter(range(dims_at, maps_at, 4)),
              "tmap": iter(range(maps_at, maps_at + TMA.MAP_BYTES * len(src.tma), TMA.MAP_BYTES))}
        where = [base + next(at[kind if kind in ("dim", "tmap") else "field"]) for kind, _ in src.params]
        self.pointers = (ctypes.c_void_p * len(where))(*where)
        self.address = ctypes.addressof(self.pointers)
        self.lock = threading.Lock()

    def fill(self, values: list) -> int:
        """Write one call's values; returns the address of the pointer array to launch with."""
        self.dynamic.pack_into(self.buffer, self.skip,
                               *[values[i] if get is None else get(values[i]) for i, get in self.fields])
        for k, (ld, i, get, at, dims) in enumerate(self.maps):
            ptr = get(values[i])
            if self.mapped[k] != ptr:
                ctypes.memmove(at, TMA.encode(ld, ptr, dims), TMA.MAP_BYTES)
                self.mapped[k] = ptr
        return self.address


_STRUCT = {"float": "f", "long long": "q", "int": "i"}  # ctype.scalar_param -> struct format


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def _offsets(codes: list[str]) -> list[int]:
    """Where each field of a native-aligned struct of these format codes starts."""
    return [struct.calcsize("@" + "".join(codes[:i + 1])) - struct.calcsize("@" + c) for i, c in enumerate(codes)]


def _data_pointer(a) -> Callable[[Any], int]:
    """How to read the device pointer of arrays of `a`'s library (the call signature fixes the library)."""
    return _cupy_data if type(a).__module__.split(".")[0] == "cupy" else _torch_data


def _torch_data(a) -> int:
    return a.data_ptr()


def _cupy_data(a) -> int:
    return a.data.ptr


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
