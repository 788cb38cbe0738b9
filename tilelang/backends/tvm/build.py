"""Build generated TVMScript with TVM and call it on torch, numpy or cupy arrays.

`import tvm` costs seconds, so it happens on the first build, never on import.
Built modules are cached in memory per (specialized kernel, target, aliasing), and
as libraries in the shared disk cache (`aot.cached_module`): the specialized kernel
already carries every constant and dtype.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
import tempfile
import threading
import warnings
import time
from pathlib import Path
from typing import Any

from ...diagnostics import TileError
from ...runtime.args import BoundCall
from ..nvcc import find_nvcc
from .signature import Signature, signature

_LOCK = threading.Lock()
_TEXT: dict[tuple, str] = {}
_BUILT: dict[tuple, Any] = {}
BUILD_SECONDS: list[float] = []  # wall time of each build, for reports and tests
AOT_ENV = "TILELANG_TVM_AOT"  # folder of prebuilt libraries (aot.py) the launcher runs instead of compiling


def target_kind(target: str | None) -> str:
    """'llvm' or 'cuda' for a target name: None/'llvm'/'cpu', or 'cuda', 'cuda:sm_90a', 'sm_80'."""
    if target in (None, "llvm", "cpu"):
        return "llvm"
    if target == "cuda" or target.startswith(("cuda:", "sm_")):
        return "cuda"
    raise TileError(f"unknown TVM target '{target}'", hint="use 'llvm' (CPU) or 'cuda', 'cuda:sm_80', 'cuda:sm_90a'")


def cuda_arch(target: str | None) -> str:
    """The sm_XX a CUDA target names; 'cuda' alone means the local GPU's, or sm_90a without one."""
    if target and "sm_" in target:
        return target[target.index("sm_"):]
    return local_cuda_arch() or "sm_90a"


def local_cuda_arch() -> str | None:
    """sm_XX of the GPU torch sees (sm_90a on Hopper, for wgmma), or None."""
    try:
        import torch
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"sm_{major}{minor}{'a' if major == 9 else ''}"
    except ImportError:
        pass
    return None


def tvm_target(target: str | None):
    import tvm
    if target_kind(target) == "llvm":
        return tvm.target.Target.from_device(tvm.cpu())
    return tvm.target.Target({"kind": "cuda", "arch": cuda_arch(target)}, host=tvm.target.Target.from_device(tvm.cpu()))


def warn_ignored_annotations(tk) -> None:
    """The CPU keeps its own loop structure: say which layout annotations it ignores (once per kernel),
    after the layout pass has given its verdict on them (every target accepts or rejects them alike)."""
    from ...ir import nodes as N
    from ...ir.visit import walk_stmts
    from ...layout import infer_layouts
    infer_layouts(tk)
    named = [s for s in walk_stmts(tk.kernel.body) if isinstance(s, N.Alloc) and s.layout is not None]
    if named and tk.kernel.name not in _WARNED:
        _WARNED.add(tk.kernel.name)
        where = ", ".join(f"'{s.name}' ({s.layout.loc})" for s in named)
        warnings.warn(f"TVM llvm (the CPU) ignores the layout annotations of kernel '{tk.kernel.name}': {where}; "
                      f"they apply on GPU targets", stacklevel=3)


_WARNED: set[str] = set()


def generate(tk, target: str | None = None, noalias: bool = True) -> str:
    """TVMScript text of the kernel for `target`."""
    key = (tk.kernel, target_kind(target), noalias)
    text = _TEXT.get(key)
    if text is None:
        if target_kind(target) == "llvm":
            warn_ignored_annotations(tk)
            from .lower_llvm import lower_llvm as lower
        else:
            from .lower_cuda import lower_cuda as lower
        text = lower(tk, noalias)
        _TEXT[key] = text
    return text


def build(tk, target: str | None = None, noalias: bool = True):
    """The kernel's built module (index it by function name), from memory, the disk cache or TVM."""
    key = (tk.kernel, target_kind(target), cuda_arch(target) if target_kind(target) == "cuda" else "", noalias)
    with _LOCK:
        mod = _BUILT.get(key)
        if mod is None:
            from .aot import cached_module
            mod = _BUILT[key] = cached_module(tk, target, noalias)
    return mod


def compile_tir(tk, text: str, tgt):
    """TVM's `Executable` of generated TVMScript for a `tvm.target.Target`; TVM's failures as a TileError."""
    import tvm
    if tgt.kind.name == "cuda":
        use_nvcc(str(tgt.attrs["arch"]))
    t0 = time.perf_counter()
    try:
        func = tvm.script.from_source(text)
        ex = tvm.compile(func, target=tgt)
    except Exception as e:  # TVM's own errors are long C++ traces; keep the first lines
        lines = [x.strip() for x in str(e).splitlines() if "rror" in x or x.lstrip()[:1].isdigit()]
        raise TileError(f"TVM could not build kernel '{tk.kernel.name}': {' | '.join(lines[-3:])[:600]}",
                        tk.kernel.loc, hint="this is a bug in the TVM backend; "
                        "`tilelang.backends.tvm.generate(tk)` shows the generated TIR") from e
    BUILD_SECONDS.append(time.perf_counter() - t0)
    return ex


PREBUILT: dict[str, bytes] = {}  # sha256 of a CUDA source -> the binary a library carries for it (aot.py)


def use_nvcc(arch: str) -> None:
    """Compile TVM's CUDA source with nvcc (or NVRTC through CuPy) for `arch`, or the local GPU's.

    TVM's pip build keeps a CUDA library's device code as source and calls
    `tvm_callback_cuda_compile(source)` when it loads the library.  A library that
    `build_aot` compiled ahead of time carries the binary (`PREBUILT`, filled by
    `aot.load_aot`), which is served without compiling; anything else is compiled
    here (TVM's default needs the cuda-bindings package; nvcc is the project's compiler)."""
    import tvm_ffi
    arch = local_cuda_arch() or arch

    def compile_cuda(code, *_target) -> bytes:
        binary = PREBUILT.get(source_digest(str(code)))
        if binary is not None:
            return binary
        return (nvcc_fatbin if find_nvcc() else _nvrtc)(str(code), arch)
    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda, override=True)


def source_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def nvcc_fatbin(code: str, arch: str) -> bytes:
    """A fatbin of `code` for `arch` (sm_90a: compute_90a), by nvcc."""
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "k.cu", Path(d) / "k.fatbin"
        src.write_text(code)
        num = arch[3:]
        r = subprocess.run([find_nvcc(), "--fatbin", "-O3", f"-gencode=arch=compute_{num},code=sm_{num}",
                            "-o", str(out), str(src)], capture_output=True, text=True)
        if r.returncode:
            raise TileError(f"nvcc failed on TVM's CUDA source:\n{r.stderr[-2000:]}")
        return out.read_bytes()


def _nvrtc(code: str, arch: str) -> bytes:
    try:
        from cupy.cuda import compiler
    except ImportError:
        raise TileError("compiling TVM's CUDA source needs nvcc or CuPy (NVRTC)", hint="install either") from None
    return compiler.compile_using_nvrtc(code, arch=arch.rstrip("a")).encode()


# ----------------------------------------------------------------------------- arguments

_RAW = {"bfloat16": "uint16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}


def to_tvm(x: Any, dtype: str):
    """A TVM tensor sharing memory with a torch/numpy/cupy array, viewed as `dtype`."""
    import numpy as np
    import tvm_ffi
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:  # numpy exports only writable arrays; inputs may be read-only views
            x = x.copy()
        name = _NP_NAMES.get(x.dtype) or _NP_NAMES.setdefault(x.dtype, x.dtype.name)  # `.name` costs 2 us
        if name in _RAW or (dtype == "uint8" and name == "int8"):
            return tvm_ffi.from_dlpack(x.view(_RAW.get(name, "uint8")), require_alignment=0)._create_view(
                x.shape, dtype)
        return tvm_ffi.from_dlpack(x, require_alignment=0)
    if dtype == "uint8" and str(getattr(x, "dtype", "")) in ("torch.int8", "int8"):
        import torch
        x = x.view(torch.uint8) if type(x).__module__.startswith("torch") else x.view("uint8")
    return tvm_ffi.from_dlpack(x, require_alignment=0)


_NP_NAMES: dict = {}


@functools.lru_cache(maxsize=None)
def _itemsize(dtype: str) -> int:
    """Bytes per element of a TIR dtype name: float16 -> 2, float8_e4m3fn -> 1, bool -> 1."""
    bits = re.match(r"[a-z]+(\d*)", dtype).group(1)
    return max(int(bits or 8) // 8, 1)


def overlapping(args: list, sig: Signature) -> bool:
    """Whether two of the converted tensor arguments share memory (then the kernel is built without `noalias`)."""
    spans = sorted((t.data_ptr(), t.data_ptr() + n * _itemsize(a.dtype))
                   for t, a in zip(args, sig.tensors) if (n := t.numel()))
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def launch(f, args: list, call: BoundCall) -> None:
    """Call a built function; on torch CUDA tensors, on torch's current stream (graph capture included)."""
    if any(i.library == "torch" and i.device != "cpu" for i in call.infos.values()):
        import tvm_ffi
        with tvm_ffi.use_torch_stream():
            f(*args)
    else:
        f(*args)


def call_args(sig: Signature, call: BoundCall) -> list:
    """The function's arguments: tensors (sharing memory with the arrays), dims, scalars, then whether
    every tensor is 16-byte aligned (the vector paths of the cuda lowering need it)."""
    args = [to_tvm(call.arrays[t.name], t.dtype) for t in sig.tensors]
    args += [int(call.dims[d]) for d in sig.dim_args]
    args += [float(call.scalars[n]) if dt.startswith("float") else bool(call.scalars[n]) if dt == "bool"
             else int(call.scalars[n]) for n, dt in sig.scalars]
    return args + [int(all(t.data_ptr() % 16 == 0 for t in args[:len(sig.tensors)]))]


class Launcher:
    """Runs a kernel built with TVM; `target=None` picks llvm for CPU arrays and CUDA for GPU ones.

    With TILELANG_TVM_AOT=<folder> set it runs that folder's prebuilt library of the kernel
    (`aot.find_aot`) and never compiles, so TVM's runtime alone is enough."""

    def __init__(self, tk, target: str | None = None):
        self.tk = tk
        self.target = target
        self.sig = signature(tk)
        self._funcs: dict[tuple, Any] = {}  # (target, noalias or AOT folder) -> function, skipping the caches' hashing

    def __call__(self, call: BoundCall) -> None:
        devices = {i.device for i in call.infos.values()}
        target = self.target
        if target is None:
            target = "llvm" if devices <= {"cpu"} else "cuda"
        want = "cpu" if target_kind(target) == "llvm" else "cuda"
        if any(not d.startswith(want) for d in devices):
            raise TileError(f"kernel '{self.tk.kernel.name}' was built for TVM target '{target}' but got arrays "
                            f"on {sorted(devices)}", self.tk.kernel.loc,
                            hint="move the arrays, or pass target='llvm' for CPU and 'cuda' for GPU arrays")
        aot = os.environ.get(AOT_ENV)
        if aot:  # prebuilt libraries (aot.py) instead of compiling: the deployment path
            run = self._funcs.get((target, aot))
            if run is None:
                from .aot import find_aot
                run = self._funcs[(target, aot)] = find_aot(self.tk, aot, target)
            run(call)
            return
        args = call_args(self.sig, call)
        key = (target, not overlapping(args, self.sig))
        f = self._funcs.get(key)
        if f is None:
            f = self._funcs[key] = build(self.tk, target, key[1])[self.sig.name]
        launch(f, args, call)
