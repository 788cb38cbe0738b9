"""An uncaught TileError in a user's script prints the located message first and the user's own frames
after it, never tilelang's; TILELANG_DEBUG=1 gives the full traceback.  Run as real scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ADD = '''
import numpy as np
import tilelang

KERNELS = tilelang.loads("""
kernel add(X: f32[N], Y: f32[N], BN: const = 32) grid(cdiv(N, BN)) threads(32) {
    x = register(f32[BN]);
    copy(X[block_id(0)], x);
    copy(x, Y[block_id(0)]);
}
""", "add.tile")


def run():
    KERNELS["add"].lower(BQ=3)


run()
'''

PY_KERNEL = '''from __future__ import annotations
from tilelang import tile_kernel
from tilelang.lang import *


@tile_kernel
def scale(X: f32[M], Y: f32[M], BM: const = 32):
    launch(grid=(cdiv(M, BM),), threads=32)
    x = register(f32[BM])
    copy(X[block_id(0)], xx)
'''


def _run(tmp_path: Path, script: str, debug: bool = False, name: str = "user.py") -> subprocess.CompletedProcess:
    (tmp_path / name).write_text(script)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    env.pop("TILELANG_DEBUG", None)
    if debug:
        env["TILELANG_DEBUG"] = "1"
    return subprocess.run([sys.executable, name], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_located_message_comes_first_and_only_user_frames_follow(tmp_path):
    r = _run(tmp_path, ADD)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "add.tile:2:8: error: kernel 'add' has no compile-time parameter 'BQ'", r.stderr
    assert "Traceback" not in r.stderr and str(ROOT / "tilelang") not in r.stderr, r.stderr
    assert f'File "{tmp_path / "user.py"}", line 18, in <module>' in r.stderr  # run()
    assert f'File "{tmp_path / "user.py"}", line 15, in run' in r.stderr  # the call that failed
    assert lines[-1].startswith("(tilelang's own frames are hidden; TILELANG_DEBUG=1")


def test_debug_shows_the_full_traceback(tmp_path):
    r = _run(tmp_path, ADD, debug=True)
    assert r.returncode == 1
    assert r.stderr.startswith("Traceback (most recent call last):"), r.stderr
    assert str(ROOT / "tilelang" / "passes") in r.stderr  # the frame that raised it
    assert "TileError: add.tile:2:8: error: kernel 'add' has no compile-time parameter 'BQ'" in r.stderr


def test_a_kernel_mistake_found_while_importing_a_module(tmp_path):
    (tmp_path / "mykernels.py").write_text(PY_KERNEL)
    r = _run(tmp_path, "import mykernels\n")
    first, *rest = r.stderr.splitlines()
    assert first == f"{tmp_path / 'mykernels.py'}:10:26: error: unknown name 'xx'", r.stderr
    assert rest[2].startswith("  hint: did you mean 'x'?")
    assert "importlib" not in r.stderr and "frozen" not in r.stderr and str(ROOT / "tilelang") not in r.stderr
    assert f'File "{tmp_path / "mykernels.py"}", line 6, in <module>' in r.stderr  # the decorator


def test_other_exceptions_keep_python_s_traceback(tmp_path):
    r = _run(tmp_path, "import tilelang\n\nraise ValueError('not ours')\n")
    assert r.stderr.startswith("Traceback (most recent call last):") and "ValueError: not ours" in r.stderr


def test_ipython_shows_tile_errors_the_same_way(tmp_path):
    pytest.importorskip("IPython")
    script = ("from IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance()\n"
              "shell.run_cell('import tilelang')\n"
              "shell.run_cell('tilelang.loads(\"kernel k(A: f16[M]) grid(1) threads(32) { x = y; }\", \"k.tile\")')\n")
    r = _run(tmp_path, script)
    shown = r.stdout + r.stderr
    assert "k.tile:1:47: error: unknown name 'y'" in shown, shown
    assert str(ROOT / "tilelang") not in shown and "TILELANG_DEBUG=1" in shown
