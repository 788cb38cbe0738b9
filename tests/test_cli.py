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


# ----------------------------------------------------------------------------- in-process (fast)

PY_KERNELS = '''from __future__ import annotations

from tilelang import tile_kernel
from tilelang.lang import *

print("this module is never run by check or show")


@tile_kernel
def scale(X: f32[M], Y: f32[M], BM: const = 32):
    launch(grid=(cdiv(M, BM),), threads=32)
    x = register(f32[BM])
    copy(X[block_id(0)], x)
    y = x * 2.0
    copy(y, Y[block_id(0)])
'''


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from tilelang.cli import main
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    import tilelang
    with pytest.raises(SystemExit) as e:
        cli(capsys, "--version")
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"tilelang {tilelang.__version__}"


def test_check_and_show_read_tile_kernel_python_files_without_running_them(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(PY_KERNELS)
    code, out, err = cli(capsys, "check", str(tmp_path / "mine.py"))
    assert (code, out.strip(), err) == (0, "ok: 1 file checked", "")
    code, out, err = cli(capsys, "show", str(tmp_path / "mine.py"), "--const", "BM=64")
    assert code == 0, err
    assert "kernel scale(" in out and "x = register(f32[64]);" in out and "never run" not in out


def test_check_locates_mistakes_in_python_files(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(PY_KERNELS.replace("y = x * 2.0", "y = xx * 2.0"))
    code, _, err = cli(capsys, "check", str(tmp_path))
    assert code == 1
    assert err.startswith(f"{tmp_path / 'mine.py'}:14:9: error: unknown name 'xx'") and "did you mean 'x'?" in err
    (tmp_path / "mine.py").write_text(PY_KERNELS.replace("def scale(", "def scale(("))
    code, _, err = cli(capsys, "check", str(tmp_path / "mine.py"))
    assert code == 1 and f"{tmp_path / 'mine.py'}:10:" in err and "Python syntax error" in err


def test_folders_are_searched_for_tile_and_python_kernels(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.py").write_text(PY_KERNELS)
    (tmp_path / "helpers.py").write_text("def tile_kernel_helper():\n    return 1\n")  # names it, defines none
    (tmp_path / "gemm.tile").write_text((ROOT / "kernels" / "gemm.tile").read_text())
    code, out, err = cli(capsys, "check", str(tmp_path))
    assert (code, out.strip()) == (0, "ok: 2 files checked"), err


def test_check_on_a_folder_without_kernels_is_an_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("nothing here")
    (tmp_path / "util.py").write_text("x = 1\n")
    code, out, err = cli(capsys, "check", str(tmp_path))
    assert code == 1 and out == ""
    assert f"error: no kernel files in {tmp_path}" in err and ".py files with @tile_kernel functions" in err


def test_a_python_file_without_kernels_is_an_error(tmp_path, capsys):
    (tmp_path / "util.py").write_text("x = 1\n")
    code, _, err = cli(capsys, "show", str(tmp_path / "util.py"))
    assert code == 1 and "util.py defines no @tile_kernel functions" in err


def test_show_unknown_kernel_is_an_error(capsys):
    code, out, err = cli(capsys, "show", str(ROOT / "kernels" / "rmsnorm.tile"), "--kernel", "rmsnrom")
    assert code == 1 and out == ""
    assert "has no kernel 'rmsnrom'" in err and "did you mean 'rmsnorm'?" in err


@pytest.mark.parametrize("const, suggestion", [("BQ=128", None), ("bn=128", "did you mean 'BN'?")])
def test_show_unknown_const_is_an_error(capsys, const, suggestion):
    code, out, err = cli(capsys, "show", str(ROOT / "kernels" / "gemm.tile"), "--const", const)
    name = const.split("=")[0]
    assert code == 1 and out == ""
    assert f"error: --const {name}: not a compile-time parameter of kernel 'gemm'" in err
    assert "BK, BM, BN" in err
    assert (suggestion in err) if suggestion else ("did you mean" not in err)


def test_show_const_of_one_kernel_of_several(capsys):
    """A const that only some kernels of the file have applies to those; the others keep their defaults."""
    code, out, err = cli(capsys, "show", str(ROOT / "kernels" / "rmsnorm.tile"), "--const", "BH=128")
    assert code == 0, err
    assert "kernel rmsnorm(" in out and "kernel add_rmsnorm(" in out
