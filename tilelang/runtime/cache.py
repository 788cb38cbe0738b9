"""The on-disk kernel cache shared by every backend.

An entry is a folder named by a key that hashes everything that can change the
compiled artifact: the specialized IR's text, the backend, the target, the
compile-time constants and the versions of the tools involved.  Entries are
written into a private temporary folder and renamed into place, so a reader
never sees half an entry and two concurrent builds of one key both succeed
(the second rename loses and its copy is discarded).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

from ..ir.printer import kernel_str


def cache_root() -> Path:
    """`$TILELANG_CACHE_DIR`, else `~/.cache/tilelang`."""
    env = os.environ.get("TILELANG_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tilelang"


def tool_versions(packages: Iterable[str]) -> str:
    out = []
    for p in sorted(packages):
        try:
            out.append(f"{p}={metadata.version(p)}")
        except metadata.PackageNotFoundError:
            out.append(f"{p}=absent")
    return ",".join(out)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of tilelang's own sources and templates, read once per process.

    Generated code depends on the code generators as much as on the IR, and a
    checkout changes them without changing `__version__`; this keeps an edited
    backend from being served the artifacts of the previous one."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".jinja", ".j2", ".lark") and path.is_file():
            h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def spec_key(tk, backend: str, target: str | None) -> str:
    """Hash of what a specialization *is*: the specialized IR's text, backend, target and constants.

    Content only: the same kernel loaded from another path, or re-parsed after a comment
    changed, has the same key.  Prebuilt artifacts (`tilelang build`, TVM libraries) are
    found by this key, since running them needs no compiler."""
    consts = ",".join(f"{k}={v}" for k, v in sorted(tk.consts.items(), key=lambda kv: kv[0]))
    text = "\n".join([kernel_str(tk.kernel), backend, str(target), consts])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_key(tk, backend: str, target: str | None, tools: Iterable[str] = (), extra: str = "") -> str:
    """Hash of everything an artifact depends on: the specialization (`spec_key`), tilelang's own
    code (`code_fingerprint`) and the versions of the tools that compile it."""
    from .. import __version__
    text = "\n".join([spec_key(tk, backend, target), f"tilelang={__version__}+{code_fingerprint()}",
                      tool_versions(tools), extra])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class DiskCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> Path | None:
        """The entry's folder if it is complete, else None."""
        p = self.path(key)
        return p if (p / ".complete").exists() else None

    def put(self, key: str, files: Mapping[str, bytes | str]) -> Path:
        """Write an entry atomically; if another writer got there first, theirs is kept."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        try:
            for name, data in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data.encode() if isinstance(data, str) else data)
            (tmp / ".complete").write_text("")
            try:
                os.rename(tmp, final)
            except OSError:
                if self.get(key) is None:  # a stale incomplete entry: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a single file so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
