"""Prebuilt kernels: `tilelang build` folders run through `tilelang.load_build` where no compiler is,
lookups by content (never by the path a file was loaded from), fingerprints that follow the compiler.

The TVM llvm build is loaded in a fresh process with TVM's runtime alone (its compiler library is
never mapped, and neither Triton nor nvcc is needed).  GPU runs of Triton and nvcc cubins are marked `gpu`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
import tilelang.build as build_mod  # noqa: E402
from kernel_refs import KERNELS, TOL, poisoned, rand, rel_err, rmsnorm  # noqa: E402
from tilelang.diagnostics import TileError  # noqa: E402
from tilelang.runtime.args import bind  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _src(tmp_path: Path, *stems: str) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for s in stems:
        shutil.copy(KERNELS / f"{s}.tile", src)
    return src


def _one_kernel_src(tmp_path: Path) -> Path:
    """A folder holding one file with one kernel (`add`): counts in the build summary stay fixed
    however the library's files grow."""
    text = (KERNELS / "elementwise.tile").read_text()
    start = text.index("kernel add(")
    src = tmp_path / "src"
    src.mkdir()
    (src / "add.tile").write_text(text[start:text.index("\n}\n", start) + 3])
    return src


def test_tvm_build_runs_with_the_runtime_alone_from_another_folder(tmp_path, capsys):
    pytest.importorskip("tvm")
    out = tmp_path / "out"
    assert build_mod.build(_src(tmp_path, "rmsnorm"), "tvm", out) == 0
    assert "2 built" in capsys.readouterr().out
    moved = tmp_path / "elsewhere" / "kit"  # the folder travels: nothing in it names where it was made
    shutil.move(str(out), str(moved))
    script = textwrap.dedent(f"""
        import sys, numpy as np, tilelang
        ks = tilelang.load_build({str(moved)!r})
        rng = np.random.default_rng(0)
        x = rng.standard_normal((5, 300)).astype(np.float16)
        w = rng.standard_normal(300).astype(np.float16)
        y = np.full_like(x, np.nan)
        ks["rmsnorm"](x, w, y, 1e-6)
        np.save({str(tmp_path / "y.npy")!r}, y)
        maps = open("/proc/self/maps").read()
        assert "libtvm_compiler" not in maps and "triton" not in sys.modules, "a compiler was loaded"
        try:
            ks["rmsnorm"](x.astype(np.float32), w, y.astype(np.float32), 1e-6)
        except tilelang.TileError as e:
            print(e.render())
    """)
    env = {"TVM_USE_RUNTIME_LIB": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "HOME": str(tmp_path)}  # no nvcc on PATH; the runtime library instead of the compiler
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    rng = np.random.default_rng(0)  # the script's inputs again
    x = rng.standard_normal((5, 300)).astype(np.float16)
    w = rng.standard_normal(300).astype(np.float16)
    assert rel_err(np.load(tmp_path / "y.npy"), rmsnorm(x, w, 1e-6)) < TOL
    assert "has no tvm build of kernel 'rmsnorm' with T=f32" in r.stdout
    assert "it holds 'rmsnorm' with: T=f16, TW=f16, TY=f16" in r.stdout


def test_tvm_library_found_by_content_from_another_path(tmp_path, monkeypatch):
    """The same kernel loaded from a copy of its file finds the library built from the original."""
    pytest.importorskip("tvm")
    import tilelang.backends.tvm as tvm_backend
    from tilelang.backends.tvm.build import BUILD_SECONDS
    rng = np.random.default_rng(1)
    x = rand(rng, (3, 45), "f16")
    k = tilelang.load(KERNELS / "softmax.tile")["softmax"]
    tvm_backend.build_aot(k.lower(**bind(k.ir, (x, x.copy()), {}).consts), tmp_path / "libs")
    copy = tmp_path / "copy" / "renamed.tile"
    copy.parent.mkdir()
    copy.write_text("# a comment that moves every line\n" + (KERNELS / "softmax.tile").read_text())
    monkeypatch.setenv("TILELANG_TVM_AOT", str(tmp_path / "libs"))
    builds = len(BUILD_SECONDS)
    got, want = poisoned(x.shape, "f16"), poisoned(x.shape, "f16")
    tilelang.load(copy)["softmax"](x, got, backend="tvm")
    k(x, want, backend="reference")
    assert rel_err(got, want) < TOL and len(BUILD_SECONDS) == builds


def test_build_fingerprint_follows_the_compilers_own_code(tmp_path, monkeypatch, capsys):
    src, out = _one_kernel_src(tmp_path), tmp_path / "out"
    assert build_mod.build(src, "triton", out) == 0
    assert "1 built" in capsys.readouterr().out
    assert build_mod.build(src, "triton", out) == 0
    assert "0 built, 1 unchanged" in capsys.readouterr().out
    import tilelang.runtime.cache as cache
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "an edited code generator")
    assert build_mod.build(src, "triton", out) == 0
    assert "1 built, 0 unchanged" in capsys.readouterr().out
    entry, = json.loads((out / "manifest.json").read_text())["kernels"]
    meta = json.loads((out / entry["load"]).with_suffix(".json").read_text())
    assert entry["binary"] and meta["scratch_params"] >= 0 and meta["args"][0] == ["tensor", "X"]


def test_build_without_nvcc_writes_sources_and_says_so(tmp_path, monkeypatch, capsys):
    import tilelang.backends.cuda.aot as cuda_aot
    monkeypatch.setattr(cuda_aot, "find_nvcc", lambda: None)
    monkeypatch.setattr(build_mod, "find_nvcc", lambda: None)
    out = tmp_path / "out"
    assert build_mod.build(_one_kernel_src(tmp_path), "cuda", out) == 0
    text = capsys.readouterr().out
    assert "SOURCES ONLY" in text and "nvcc was not found here: add" in text
    assert sorted(p.name for p in (out / "add").iterdir()) == ["add.cu", "add.json", "add.tile"]
    x = np.zeros((2, 3), np.float16)
    with pytest.raises(TileError, match="has sources only: nvcc was not found when it was built"):
        tilelang.load_build(out)["add"](x, x, x.copy())


def test_load_build_of_a_folder_without_manifest(tmp_path):
    with pytest.raises(TileError, match="not a `tilelang build` folder"):
        tilelang.load_build(tmp_path)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_cubins_run_through_load_build(tmp_path, backend, capsys):
    """Triton and nvcc cubins launched through CuPy, checked against torch on odd shapes."""
    import torch
    if backend == "cuda" and shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed")
    out = tmp_path / "out"
    assert build_mod.build(_src(tmp_path, "rmsnorm", "softmax"), backend, out) == 0, capsys.readouterr()
    ks = tilelang.load_build(out)
    x = torch.randn(37, 1000, dtype=torch.float16, device="cuda")
    w = torch.randn(1000, dtype=torch.float16, device="cuda")
    y = torch.full_like(x, float("nan"))
    ks["rmsnorm"](x, w, y, 1e-6)
    assert rel_err(y.cpu(), torch.nn.functional.rms_norm(x.float(), (1000,), w.float(), 1e-6).cpu()) < TOL
    y = torch.full_like(x, float("nan"))
    ks["softmax"](x, y)
    assert rel_err(y.cpu(), torch.softmax(x.float(), -1).cpu()) < TOL
