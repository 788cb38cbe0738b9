"""`pip install .` into a fresh venv, used from another folder: scripts/install_check.sh end to end
(the library's torch operator eagerly and under torch.compile on the CPU, and a TVM build folder
run by load_build with TVM's runtime alone)."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_installed_package_runs_ops_compile_and_load_build(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "scripts/install_check.sh"), str(tmp_path / "work")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "torch.compile on the CPU" in r.stdout and "TVM's runtime alone" in r.stdout
