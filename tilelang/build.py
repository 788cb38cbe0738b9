"""`tilelang build DIR`: compile every `.tile` kernel for a backend, ahead of time.

For each kernel (at its default constants) the backend's generated source is
written under `OUT/<file stem>/`, with a copy of the `.tile` file it came from,
plus compiled binaries (`build_aot`: Triton cubins, nvcc cubins, TVM libraries
with their CUDA fatbins), plus `OUT/manifest.json`.  `tilelang.load_build(OUT)`
runs them where no compiler is (`prebuilt.py`).  Where a binary cannot be made
here (no nvcc for the CUDA backend or TVM's CUDA code), the sources are written
and the summary says so.  A kernel is rebuilt only when its fingerprint changed:
the source file, the specialization, tilelang's own code, the tools' versions and
whether nvcc is present.  Every kernel is attempted; all errors are listed at the
end and the exit status is non-zero if any failed.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, progress
from .backends import get_backend
from .backends.nvcc import find_nvcc
from .diagnostics import TileError, TileErrors, Unsupported
from .frontend.tile_parser import parse_file
from .passes import lower
from .runtime.cache import cache_key, spec_key, write_atomic

_TOOLS = {"triton": ("triton",), "tvm": ("apache-tvm",), "cuda": ()}


@dataclass
class Result:
    file: Path
    kernel: str
    status: str  # "built", "cached", "unsupported" (another backend takes it) or "failed"
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    binary: bool = False


def fingerprint(tk, text: str, backend: str, target: str) -> str:
    """What a kernel's artifacts depend on (`cache_key`, tilelang's code included), plus the file's text
    (the generated code cites its lines) and whether nvcc is there to make binaries."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    return cache_key(tk, backend, target, tools=_TOOLS.get(backend, ()), extra=f"{digest};nvcc={find_nvcc()}")


def build(src_dir: str | Path, backend: str = "triton", out: Path = Path("build"),
          target: str | None = None) -> int:
    from .frontend.sources import kernel_files
    be = get_backend(backend)
    if not hasattr(be, "build_aot"):
        raise TileError(f"backend '{backend}' has no ahead-of-time build", hint="use triton, tvm or cuda")
    target = be.aot_target(target)
    out = Path(out)
    manifest_path = out / "manifest.json"
    try:
        old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except (OSError, json.JSONDecodeError):
        old = {}
    old_entries = {(e["source"], e["kernel"]): e for e in old.get("kernels", [])
                   if old.get("backend") == backend and "source" in e}
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
        progress.step(i, len(jobs), f"{f.name}:{name}")
        t0 = time.perf_counter()
        try:
            tk = lower(kernel)
            text = f.read_text()
            fp = fingerprint(tk, text, backend, target)
            prev = old_entries.get((str(f), name))
            if prev and prev.get("fingerprint") == fp and all((out / o).exists() for o in prev["outputs"]):
                results.append(Result(f, name, "cached", outputs=prev["outputs"], binary=prev["binary"]))
                entries.append(prev)
                continue
            kdir = out / f.stem
            write_atomic(kdir / f.name, text)  # what `load_build` parses: the folder needs nothing else
            src_path = kdir / f"{name}{be.SOURCE_SUFFIX}"
            write_atomic(src_path, be.generate(tk, target))
            aot = be.build_aot(tk, kdir, target)
            artifact, binary = be.aot_artifact(aot)
            rel = [str(p.relative_to(out)) for p in [src_path, *(p for p in aot if p != src_path)]]
            results.append(Result(f, name, "built", time.perf_counter() - t0, rel, binary=binary))
            entries.append({"source": str(f), "file": f"{f.stem}/{f.name}", "kernel": name, "fingerprint": fp,
                            "spec": spec_key(tk, backend, target), "outputs": rel, "binary": binary,
                            "load": str(artifact.relative_to(out)) if artifact else None,
                            "consts": {k: str(v) for k, v in tk.consts.items()}})
        except Unsupported as e:  # another backend takes it: listed, not a failed build
            where = f"{e.loc.file}:{e.loc.line}:{e.loc.col}" if e.loc else str(f)
            results.append(Result(f, name, "unsupported", error=f"{name} ({where}): {e.message}"))
        except TileError as e:
            results.append(Result(f, name, "failed", time.perf_counter() - t0, error=e.render()))
        except Exception as e:  # a backend/toolchain failure: report it with the kernel it came from
            results.append(Result(f, name, "failed", time.perf_counter() - t0,
                                  error=f"{f}:{kernel.loc.line}: error: {backend} backend failed on kernel "
                                        f"'{name}': {type(e).__name__}: {e}"))
    progress.done()
    write_atomic(manifest_path, json.dumps({"backend": backend, "target": target, "tilelang": __version__,
                                            "kernels": entries}, indent=2))
    _summary(results, backend, target, out)
    return 1 if any(r.status == "failed" for r in results) else 0


def _summary(results: list[Result], backend: str, target: str, out: Path) -> None:
    rows = [("kernel", "file", "status", "time", "binary", "outputs")]
    for r in results:
        rows.append((r.kernel, r.file.name, r.status, f"{r.seconds:.2f}s" if r.status == "built" else "-",
                     "-" if r.status in ("failed", "unsupported") else "yes" if r.binary else "SOURCES ONLY",
                     ", ".join(Path(o).name for o in r.outputs) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    failed = [r for r in results if r.status == "failed"]
    counts = {s: sum(r.status == s for r in results) for s in ("built", "cached", "unsupported", "failed")}
    unsupported = f"{counts['unsupported']} not supported by {backend}, " if counts["unsupported"] else ""
    print(f"\n{backend} ({target}) -> {out}/: {counts['built']} built, {counts['cached']} unchanged, "
          f"{unsupported}{counts['failed']} failed")
    sources_only = [r.kernel for r in results if r.status in ("built", "cached") and not r.binary]
    if sources_only:
        print(f"note: {len(sources_only)} kernel(s) have sources only, no compiled binary, because nvcc was not "
              f"found here: {', '.join(sources_only)}. The machine that runs them must compile them "
              "(install the CUDA toolkit here and build again to embed cubins/fatbins).")
    for r in results:
        if r.status == "unsupported":
            print(f"note: not built for {backend}: {r.error}", file=sys.stderr)
    for r in failed:
        print(r.error, file=sys.stderr)
