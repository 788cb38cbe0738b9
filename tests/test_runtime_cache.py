"""The on-disk cache: keys that change with everything that matters, atomic concurrent writes."""
from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

from tilelang import load
from tilelang.runtime.cache import DiskCache, cache_key, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def test_key_depends_on_consts_backend_target_and_ir():
    g = load(ROOT / "kernels/gemm.tile")["gemm"]
    base = cache_key(g.lower(), "triton", "sm_90", ["triton"])
    assert base == cache_key(g.lower(), "triton", "sm_90", ["triton"])
    others = {
        cache_key(g.lower(BM=32), "triton", "sm_90", ["triton"]),
        cache_key(g.lower(T="bf16"), "triton", "sm_90", ["triton"]),
        cache_key(g.lower(), "cuda", "sm_90", ["triton"]),
        cache_key(g.lower(), "triton", "sm_80", ["triton"]),
        cache_key(g.lower(), "triton", "sm_90", ["triton"], extra="other tool version"),
    }
    assert base not in others and len(others) == 5


def _writer(root: str, i: int) -> str:
    entry = DiskCache(Path(root)).put("k" * 32, {"kernel.py": f"writer {i}\n" * 5000, "sub/meta.json": "{}"})
    return (entry / "kernel.py").read_text()


def test_concurrent_puts_leave_one_complete_entry(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        texts = pool.starmap(_writer, [(str(tmp_path), i) for i in range(8)])
    cache = DiskCache(tmp_path)
    entry = cache.get("k" * 32)
    assert entry is not None
    content = (entry / "kernel.py").read_text()
    assert all(t == content for t in texts)  # every writer reads the one winning entry, whole
    assert len(set(content.splitlines())) == 1
    assert [p.name for p in entry.parent.iterdir()] == ["k" * 32]  # no temporaries left behind


def test_incomplete_entry_is_a_miss_and_gets_replaced(tmp_path):
    cache = DiskCache(tmp_path)
    stale = cache.path("a" * 32)
    stale.mkdir(parents=True)
    (stale / "kernel.py").write_text("half")
    assert cache.get("a" * 32) is None
    entry = cache.put("a" * 32, {"kernel.py": "whole"})
    assert (entry / "kernel.py").read_text() == "whole"


def test_write_atomic_replaces_whole_file(tmp_path):
    p = tmp_path / "d" / "manifest.json"
    write_atomic(p, "one")
    write_atomic(p, "two")
    assert p.read_text() == "two" and [x.name for x in p.parent.iterdir()] == ["manifest.json"]


def _gemv():
    return load(ROOT / "kernels/gemv.tile")["gemv"].lower(BN=16)


def _triton_writer(root: str) -> tuple[str, str]:
    """In a fresh process: write (or find) gemv's Triton entry under `root`."""
    from tilelang.backends.triton.launcher import cached_program
    os.environ["TILELANG_CACHE_DIR"] = root
    program, path, _ = cached_program(_gemv(), "sm_90")
    return program.source, str(path)


def test_triton_modules_are_reused_from_disk_without_lowering(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    from tilelang.backends.triton import launcher
    tk = _gemv()
    monkeypatch.setenv("TILELANG_CACHE_DIR", str(tmp_path))
    first = launcher.compile(tk, "sm_90")
    entry = DiskCache(tmp_path / "triton").get(cache_key(tk, "triton", "sm_90", tools=("triton",)))
    assert entry is not None and (entry / "kernel.py").read_text() == first.program.source

    def no_lowering(tk):
        raise AssertionError("a cache hit must not lower again")

    monkeypatch.setattr(launcher, "lower", no_lowering)
    assert launcher.compile(tk, "sm_90").program == first.program
    with pytest.raises(AssertionError, match="must not lower"):  # another target is another entry
        launcher.compile(tk, "sm_80")


def test_unreadable_triton_entry_is_regenerated(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    from tilelang.backends.triton.launcher import cached_program
    monkeypatch.setenv("TILELANG_CACHE_DIR", str(tmp_path))
    first, path, _ = cached_program(_gemv(), "sm_90")
    (path.parent / "program.json").write_text("{truncated")
    with pytest.warns(UserWarning, match="unreadable Triton cache entry"):
        program, again, _ = cached_program(_gemv(), "sm_90")
    assert program == first and again == path and "fn_name" in (again.parent / "program.json").read_text()


def test_two_processes_writing_one_triton_entry(tmp_path):
    pytest.importorskip("triton")
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_triton_writer, [str(tmp_path)] * 2)
    assert results[0] == results[1]
    entry = Path(results[0][1]).parent
    assert (entry / ".complete").exists() and [p.name for p in entry.parent.iterdir()] == [entry.name]
