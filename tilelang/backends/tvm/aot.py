"""Ahead-of-time libraries: build with the full TVM anywhere, run with TVM's runtime alone.

`build_aot` writes one shared library per target (`export_library`) and a JSON file
beside it with the function's signature, each written under a temporary name and
moved into place, so a reader never sees half a file.  TVM's pip build keeps a CUDA
library's device code as source, to be compiled when the library is loaded; where
nvcc is present at build time, `build_aot` compiles it now and writes the fatbin
beside the library (`.fatbin`), and `load_aot` serves it to TVM instead of
compiling (`build.PREBUILT`), so the machine that runs it needs no compiler.  Host
code is built for a portable x86-64 level so libraries move between machines.

A library's name carries the specialization's content key (`runtime.cache.spec_key`: the
specialized IR, constants and dtypes, target), never the path its source was loaded from:
with `TILELANG_TVM_AOT=<dir>` the launcher runs the library of exactly the specialization
called (`find_aot`), and one that is missing is an error listing what the folder holds,
never another kernel's code.  The JIT path keeps the same libraries in the shared disk
cache (`cached_module`), so a later process loads instead of compiling.
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ...diagnostics import TileError
from ...ir.dtypes import DTYPES
from ...runtime.args import BoundCall
from ...runtime.cache import DiskCache, cache_key, cache_root, spec_key
from ..nvcc import find_nvcc
from .build import (AOT_ENV, PREBUILT, call_args, compile_tir, cuda_arch, generate, launch, nvcc_fatbin,
                    overlapping, source_digest, target_kind, tvm_target, use_nvcc)
from .signature import Signature, TensorArg, signature

HOST = {"kind": "llvm", "mcpu": "x86-64-v3"}  # AVX2: portable across the x86-64 servers we deploy to
_LOADED: dict[Path, "AotLauncher"] = {}


def aot_path(tk, out_dir: str | Path, target: str | None) -> Path:
    """`<dir>/<kernel>-<key>.<llvm|sm_XX>.so`, the key being the specialization's content key."""
    tag = _tag(target)
    return Path(out_dir) / f"{tk.kernel.name}-{spec_key(tk, 'tvm', tag)[:12]}.{tag}.so"


def _tag(target: str | None) -> str:
    return "llvm" if target_kind(target) == "llvm" else cuda_arch(target)


def library_files(lib: Path) -> list[Path]:
    """A library and the files written beside it (signature, and the fatbin where nvcc made one)."""
    return [p for p in (lib, lib.with_suffix(".json"), lib.with_suffix(".fatbin")) if p.exists()]


def build_aot(tk, out_dir: str | Path, target: str | Sequence[str] | None = None) -> list[Path]:
    """Write `<kernel>-<key>.<target>.so` (with its `.json`, and `.fatbin` for CUDA where nvcc
    is) for each target; every file's path, each library first."""
    import tvm
    targets = [target] if target is None or isinstance(target, str) else list(target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in targets:
        path = aot_path(tk, out, t)
        if not path.exists():
            host = tvm.target.Target(HOST)
            tgt = host if target_kind(t) == "llvm" else tvm.target.Target({"kind": "cuda", "arch": _tag(t)}, host=host)
            export(tk, t, tgt, path)
        paths += library_files(path)
    return paths


def aot_target(target: str | None) -> str:
    """The target `build_aot` builds for, by its full name: "llvm" or "cuda:sm_XX"."""
    return "llvm" if target_kind(target) == "llvm" else f"cuda:{cuda_arch(target)}"


def aot_artifact(paths: list[Path]) -> tuple[Path | None, bool]:
    """The library `load_aot` takes among `build_aot`'s files, and whether it runs without compiling."""
    lib = next(p for p in paths if p.suffix == ".so")
    return lib, has_binary(lib)


def export(tk, target: str | None, tgt, path: Path, noalias: bool = True) -> None:
    """Compile for `tgt` and write the library, its signature and (CUDA, nvcc present) its fatbin."""
    import tvm
    ex = compile_tir(tk, generate(tk, target, noalias), tgt)
    kind, tag = target_kind(target), _tag(target)
    meta = {"signature": _sig_json(signature(tk)), "target": kind, "arch": tag, "tvm": tvm.__version__,
            "consts": _consts(tk), "noalias": noalias, "binary": None}
    if kind == "cuda" and find_nvcc():
        code = next(m for m in ex.mod.imports if m.kind == "cuda").inspect_source()
        binary = nvcc_fatbin(code, tag)
        _atomic(path.with_suffix(".fatbin"), lambda p: Path(p).write_bytes(binary))
        meta["binary"] = {"file": path.with_suffix(".fatbin").name, "source_sha256": source_digest(code)}
    _atomic(path.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(meta, indent=1)))
    _atomic(path, ex.export_library)


def has_binary(lib: Path) -> bool:
    """Whether a library runs without compiling anything where it is loaded (llvm, or CUDA with its fatbin)."""
    meta = json.loads(lib.with_suffix(".json").read_text())
    return meta["target"] == "llvm" or bool(meta.get("binary"))


def cached_module(tk, target: str | None, noalias: bool):
    """The kernel's module for the JIT path: its library in the shared disk cache, built there on a miss.

    Keyed by `cache_key` (the specialization, tilelang's code, TVM's version, aliasing and the
    exact host target: a library built for this CPU's features must not be served to another).
    Where no library can be written (no C compiler for `export_library`), the module is built in
    memory, with a warning."""
    tgt = tvm_target(target)
    key = cache_key(tk, "tvm", _tag(target), tools=("apache-tvm",), extra=f"noalias={noalias};{tgt}")
    cache = DiskCache(cache_root() / "tvm")
    entry = cache.get(key)
    if entry is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = aot_path(tk, tmp, target)
            try:
                export(tk, target, tgt, path, noalias)
            except TileError:
                raise
            except Exception as e:  # noqa: BLE001 - export_library needs a host C compiler
                warnings.warn(f"tilelang: TVM library not cached on disk ({type(e).__name__}: {e}); "
                              "building in memory", stacklevel=2)
                return compile_tir(tk, generate(tk, target, noalias), tgt)
            entry = cache.put(key, {p.name: p.read_bytes() for p in Path(tmp).iterdir()})
    return load_aot(tk, next(entry.glob("*.so"))).module


def _consts(tk) -> dict[str, str]:
    return {k: str(getattr(v, "name", v)) for k, v in sorted(tk.consts.items())}


def find_aot(tk, folder: str | Path, target: str | None) -> "AotLauncher":
    """The prebuilt library of this specialization in `folder`; a TileError naming what is there if none."""
    path = aot_path(tk, folder, target)
    if path in _LOADED:
        return _LOADED[path]
    if not path.exists():
        name, consts = tk.kernel.name, _consts(tk)
        have = [json.loads(j.read_text()) for j in sorted(Path(folder).glob(f"{name}-*.json"))]
        lines = [f"{m['arch']} {_show(m.get('consts', {}))}" + (" (from another version of the kernel's code)"
                 if m.get("consts") == consts and m["arch"] == _tag(target) else "") for m in have]
        raise TileError(f"no prebuilt TVM library for kernel '{name}' with {_show(consts)} for "
                        f"{_tag(target)} in {folder}; it holds '{name}' for: {'; '.join(lines) or 'none'}",
                        tk.kernel.loc,
                        hint=f"build it where TVM's compiler is (`tilelang build --backend tvm`, "
                        f"tilelang.backends.tvm.build_aot or scripts/tvm_aot_prebuild.py), or unset {AOT_ENV} "
                        "to compile here")
    _LOADED[path] = load_aot(tk, path)
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

    def __init__(self, tk, path: Path, module, sig: Signature, target: str):
        self.tk, self.path, self.module, self.sig, self.target = tk, path, module, sig, target
        self.func = module[sig.name]

    def __call__(self, call: BoundCall) -> None:
        want = "cpu" if self.target == "llvm" else "cuda"
        bad = sorted(i.device for i in call.infos.values() if not i.device.startswith(want))
        if bad:
            raise TileError(f"{self.path.name} runs on {want} arrays, got arrays on {bad}", self.tk.kernel.loc,
                            hint="move the arrays to the library's device")
        args = call_args(self.sig, call)
        if overlapping(args, self.sig):
            raise TileError(f"{self.path.name} was built for arguments that do not share memory, "
                            f"but two of {sorted(call.arrays)} overlap", self.tk.kernel.loc,
                            hint="pass separate arrays")
        launch(self.func, args, call)


def load_aot(tk, path: str | Path) -> AotLauncher:
    """Load a library written by `build_aot` from typed kernel `tk` (errors point at its source), with
    TVM's runtime only if that is all there is."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    _import_tvm_runtime()
    import tvm
    if meta["tvm"] != tvm.__version__:
        raise TileError(f"{path} was built with TVM {meta['tvm']}, and this is TVM {tvm.__version__}",
                        hint="rebuild it with this TVM version, or install the one it was built with")
    if meta["target"] == "cuda":
        binary = meta.get("binary")
        if binary:
            PREBUILT[binary["source_sha256"]] = path.with_name(binary["file"]).read_bytes()
        _enable_cuda(meta["arch"])
    mod = tvm.runtime.load_module(str(path))
    return AotLauncher(tk, path, mod, _sig_from_json(meta["signature"]), meta["target"])


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
