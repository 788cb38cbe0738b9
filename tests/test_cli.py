"""`tilelang check` and `tilelang show` as a user runs them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = sorted((ROOT / "kernels").glob("*.tile"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tilelang.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_passes_on_the_library():
    r = run("check", "kernels/")
    assert r.returncode == 0, r.stderr
    assert f"ok: {len(KERNELS)} file" in r.stdout


@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.name)
def test_check_reports_a_broken_copy_of_each_kernel(path, tmp_path):
    text = path.read_text()
    idx = text.index("copy(")  # break it before its first copy: use an undefined tile
    broken = text[:idx] + "bogus = undefined_tile + 1; " + text[idx:]
    bad = tmp_path / path.name
    bad.write_text(broken)
    line = broken[:idx].count("\n") + 1
    r = run("check", str(tmp_path))
    assert r.returncode == 1
    assert f"{bad}:{line}:" in r.stderr and "unknown name 'undefined_tile'" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_missing_path():
    r = run("check", "no/such/dir")
    assert r.returncode == 1 and "no such file or directory" in r.stderr


def test_show_prints_typed_ir():
    r = run("show", "kernels/gemm.tile", "--const", "BM=32", "--const", "T=bf16")
    assert r.returncode == 0, r.stderr
    assert "a = shared(bf16[32, 32]);" in r.stdout
    assert "kernel gemm(" in r.stdout
