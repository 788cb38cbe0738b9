"""`tilelang build DIR`: compile every `.tile` kernel for a backend, ahead of time.

For each kernel (at its default constants) the backend's generated source is
written under `OUT/<file stem>/`, plus compiled binaries where the backend can
build them without a GPU (`build_aot`), plus `OUT/manifest.json`.  A kernel is
rebuilt only when its inputs changed (the manifest records a hash of the
source file, backend, target and tool versions).  Every kernel is attempted;
all errors are listed at the end and the exit status is non-zero if any failed.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .backends import get_backend
from .diagnostics import TileError, TileErrors
from .frontend.tile_parser import parse_file
from .passes import lower
from .runtime.cache import tool_versions, write_atomic

_TOOLS = {"triton": ("triton",), "tvm": ("apache-tvm",), "cuda": ("cupy-cuda13x",)}


@dataclass
class Result:
    file: Path
    kernel: str
    status: str  # "built", "cached" or "failed"
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str = ""


def _fingerprint(text: str, backend: str, target: str | None) -> str:
    versions = tool_versions(_TOOLS.get(backend, ()))
    return hashlib.sha256("\n".join([text, backend, str(target), versions, __version__]).encode()).hexdigest()


def _progress(i: int, n: int, label: str) -> None:
    width = 24
    done = width * i // max(n, 1)
    line = f"[{'#' * done}{'.' * (width - done)}] {i}/{n} {label}"
    if sys.stderr.isatty():
        print("\r" + line[:100].ljust(100), end="", file=sys.stderr, flush=True)
    else:
        print(line, file=sys.stderr)


def build(src_dir: str | Path, backend: str = "triton", out: Path = Path("build"),
          target: str | None = None) -> int:
    from .frontend.sources import kernel_files
    be = get_backend(backend)
    out = Path(out)
    manifest_path = out / "manifest.json"
    try:
        old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except (OSError, json.JSONDecodeError):
        old = {}
    old_entries = {(e["file"], e["kernel"]): e for e in old.get("kernels", []) if old.get("backend") == backend}
    files = kernel_files([str(src_dir)], suffixes=(".tile",))
    jobs: list[tuple[Path, str, object]] = []
    results: list[Result] = []
    for f in files:
        try:
            module = parse_file(f)
            jobs += [(f, k.name, k) for k in module.kernels]
        except TileError as e:
            errs = e.errors if isinstance(e, TileErrors) else [e]
            results += [Result(f, "-", "failed", error=x.render()) for x in errs]
    entries = []
    for i, (f, name, kernel) in enumerate(jobs, 1):
        _progress(i, len(jobs), f"{f.name}:{name}")
        fp = _fingerprint(f.read_text(), backend, target)
        prev = old_entries.get((str(f), name))
        if prev and prev.get("fingerprint") == fp and all((out / o).exists() for o in prev["outputs"]):
            results.append(Result(f, name, "cached", outputs=prev["outputs"]))
            entries.append(prev)
            continue
        t0 = time.perf_counter()
        try:
            tk = lower(kernel)
            kdir = out / f.stem
            suffix = be.SOURCE_SUFFIX
            src_path = kdir / f"{name}{suffix}"
            write_atomic(src_path, be.generate(tk, target))
            outputs = [src_path]
            if hasattr(be, "build_aot"):  # without --target, each backend's default (e.g. sm_90a)
                aot = be.build_aot(tk, kdir) if target is None else be.build_aot(tk, kdir, target)
                outputs += [p for p in aot if p not in outputs]
            rel = [str(p.relative_to(out)) for p in outputs]
            results.append(Result(f, name, "built", time.perf_counter() - t0, rel))
            entries.append({"file": str(f), "kernel": name, "fingerprint": fp, "outputs": rel,
                            "consts": {k: str(v) for k, v in tk.consts.items()}})
        except TileError as e:
            results.append(Result(f, name, "failed", time.perf_counter() - t0, error=e.render()))
        except Exception as e:  # a backend/toolchain failure: report it with the kernel it came from
            results.append(Result(f, name, "failed", time.perf_counter() - t0,
                                  error=f"{f}:{kernel.loc.line}: error: {backend} backend failed on kernel "
                                        f"'{name}': {type(e).__name__}: {e}"))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    write_atomic(manifest_path, json.dumps({"backend": backend, "target": target, "tilelang": __version__,
                                            "kernels": entries}, indent=2))
    _summary(results, backend, target, out)
    return 1 if any(r.status == "failed" for r in results) else 0


def _summary(results: list[Result], backend: str, target: str | None, out: Path) -> None:
    rows = [("kernel", "file", "status", "time", "outputs")]
    for r in results:
        rows.append((r.kernel, r.file.name, r.status, f"{r.seconds:.2f}s" if r.status == "built" else "-",
                     ", ".join(Path(o).name for o in r.outputs) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    failed = [r for r in results if r.status == "failed"]
    counts = {s: sum(r.status == s for r in results) for s in ("built", "cached", "failed")}
    print(f"\n{backend} ({target or 'default target'}) -> {out}/: "
          f"{counts['built']} built, {counts['cached']} unchanged, {counts['failed']} failed")
    for r in failed:
        print(r.error, file=sys.stderr)
