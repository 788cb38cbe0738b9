"""Ahead-of-time libraries: build with the full TVM anywhere, run with TVM's runtime alone.

`build_aot` writes one shared library per target (`export_library`) and a JSON file
beside it with the function's signature, each written under a temporary name and
moved into place, so a reader never sees half a file.  Built on a machine without a
GPU, a CUDA library carries CUDA source, which TVM compiles when the library is
loaded: `load_aot` registers `tvm_callback_cuda_compile` for that (`build.use_nvcc`).  Host code
is built for a portable x86-64 level so libraries move between machines.

A library's name carries a hash of the generated TIR (hence of the kernel, its constants and
dtypes), the architecture and the TVM version: with `TILELANG_TVM_AOT=<dir>` the launcher runs
the library of exactly the specialization called (`find_aot`), and one that is missing is an
error listing what the folder holds, never another kernel's code.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ...diagnostics import TileError
from ...ir.dtypes import DTYPES
from ...runtime.args import BoundCall
from .build import AOT_ENV, call_args, cuda_arch, generate, launch, overlapping, target_kind, use_nvcc
from .signature import Signature, TensorArg, signature

HOST = {"kind": "llvm", "mcpu": "x86-64-v3"}  # AVX2: portable across the x86-64 servers we deploy to
_LOADED: dict[Path, "AotLauncher"] = {}


def aot_path(tk, out_dir: str | Path, target: str | None, tvm_version: str) -> Path:
    """`<dir>/<kernel>-<hash>.<llvm|sm_XX>.so`: the hash covers the TIR, the architecture and TVM."""
    tag = _tag(target)
    digest = hashlib.sha256(f"{generate(tk, target)}\n{tag}\n{tvm_version}".encode()).hexdigest()[:12]
    return Path(out_dir) / f"{tk.kernel.name}-{digest}.{tag}.so"


def _tag(target: str | None) -> str:
    return "llvm" if target_kind(target) == "llvm" else cuda_arch(target)


def build_aot(tk, out_dir: str | Path, target: str | Sequence[str] | None = None) -> list[Path]:
    """Write `<kernel>-<hash>.<target>.so` (and its `.json`) for each target; the libraries' paths."""
    import tvm
    targets = [target] if target is None or isinstance(target, str) else list(target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sig = signature(tk)
    paths = []
    for t in targets:
        kind = target_kind(t)
        path, tag = aot_path(tk, out, t, tvm.__version__), _tag(t)
        if not path.exists():
            host = tvm.target.Target(HOST)
            tgt = host if kind == "llvm" else tvm.target.Target({"kind": "cuda", "arch": tag}, host=host)
            ex = tvm.compile(tvm.script.from_source(generate(tk, t)), target=tgt)
            meta = {"signature": _sig_json(sig), "target": kind, "arch": tag, "tvm": tvm.__version__,
                    "consts": _consts(tk)}
            _atomic(path.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
            _atomic(path, ex.export_library)
        paths.append(path)
    return paths


def _consts(tk) -> dict[str, str]:
    return {k: str(getattr(v, "name", v)) for k, v in sorted(tk.consts.items())}


def find_aot(tk, folder: str | Path, target: str | None) -> "AotLauncher":
    """The prebuilt library of this specialization in `folder`; a TileError naming what is there if none."""
    _import_tvm_runtime()
    import tvm
    path = aot_path(tk, folder, target, tvm.__version__)
    if path in _LOADED:
        return _LOADED[path]
    if not path.exists():
        name = tk.kernel.name
        have = [json.loads(j.read_text()) for j in sorted(Path(folder).glob(f"{name}-*.json"))]
        have = [f"{m['arch']} {_show(m.get('consts', {}))}" for m in have] or ["none"]
        raise TileError(f"no prebuilt TVM library for kernel '{name}' with {_show(_consts(tk))} for "
                        f"{_tag(target)} (TVM {tvm.__version__}) in {AOT_ENV}={folder}; it holds "
                        f"'{name}' for: {'; '.join(have)}", tk.kernel.loc,
                        hint=f"build it where TVM's compiler is (tilelang.backends.tvm.build_aot or "
                        f"scripts/tvm_aot_prebuild.py), or unset {AOT_ENV} to compile here")
    _LOADED[path] = load_aot(path)
    return _LOADED[path]


def _show(consts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in consts.items())


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o755 if path.suffix == ".so" else 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sig_json(sig: Signature) -> dict:
    d = asdict(sig)
    d["tensors"] = [dict(t, packed=t["packed"]["name"] if t["packed"] else None) for t in d["tensors"]]
    return d


def _sig_from_json(d: dict) -> Signature:
    tensors = tuple(TensorArg(**{**t, "shape": tuple(t["shape"]),
                                 "packed": DTYPES[t["packed"]] if t["packed"] else None}) for t in d["tensors"])
    return Signature(d["name"], tensors, tuple(d["dim_vars"]), tuple(d["dim_args"]),
                     tuple(tuple(s) for s in d["scalars"]))


class AotLauncher:
    """A kernel loaded from a library built by `build_aot`; called with a BoundCall."""

    def __init__(self, path: Path, func, sig: Signature, target: str):
        self.path, self.func, self.sig, self.target = path, func, sig, target

    def __call__(self, call: BoundCall) -> None:
        want = "cpu" if self.target == "llvm" else "cuda"
        bad = sorted(i.device for i in call.infos.values() if not i.device.startswith(want))
        if bad:
            raise TileError(f"{self.path.name} runs on {want} arrays, got arrays on {bad}",
                            hint="move the arrays to the library's device")
        args = call_args(self.sig, call)
        if overlapping(args, self.sig):
            raise TileError(f"{self.path.name} was built for arguments that do not share memory, "
                            f"but two of {sorted(call.arrays)} overlap", hint="pass separate arrays")
        launch(self.func, args, call)


def load_aot(path: str | Path) -> AotLauncher:
    """Load a library written by `build_aot`, with TVM's runtime only if that is all there is."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    _import_tvm_runtime()
    import tvm
    if meta["target"] == "cuda":
        _enable_cuda(meta["arch"])
    mod = tvm.runtime.load_module(str(path))
    sig = _sig_from_json(meta["signature"])
    return AotLauncher(path, mod[sig.name], sig, meta["target"])


def _import_tvm_runtime() -> None:
    """Import tvm; where its compiler library was left out (a deployment), ask for the runtime alone."""
    spec = importlib.util.find_spec("tvm")
    if spec is None:
        raise TileError("loading a TVM library needs the `tvm` package (its runtime at least)",
                        hint="pip install apache-tvm, or carry a runtime-only copy (see DEVICE.md)")
    lib = Path(spec.submodule_search_locations[0]) / "lib"
    if lib.is_dir() and not list(lib.glob("libtvm_compiler*")):
        os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")


def _enable_cuda(arch: str) -> None:
    """Register TVM's CUDA runtime (left unloaded by a runtime-only import) and our compiler callback."""
    import tvm
    import tvm_ffi
    if tvm_ffi.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True) is None:
        runtime = Path(tvm.__file__).parent / "lib"
        tvm_ffi.libinfo.load_lib_ctypes(package="tvm", target_name="tvm_runtime_cuda",
                                        extra_lib_paths=[runtime], mode="RTLD_LOCAL")
    use_nvcc(arch)
