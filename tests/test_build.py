"""`tilelang build`: artifacts and manifest, rebuild only what changed, every failure listed."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tilelang.cli", "build", str(src), "--backend", "triton",
                           "-o", str(out), *extra], capture_output=True, text=True, cwd=ROOT)


def test_build_rebuild_and_errors(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    shutil.copy(ROOT / "kernels/softmax.tile", src)
    r = build(src, out)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["kernels"]
    assert entry["kernel"] == "softmax" and manifest["backend"] == "triton"
    assert {Path(o).suffix for o in entry["outputs"]} >= {".py", ".cubin", ".ptx"}
    assert all((out / o).stat().st_size > 0 for o in entry["outputs"])
    assert "1 built, 0 unchanged, 0 failed" in r.stdout

    r = build(src, out)  # nothing changed
    assert "0 built, 1 unchanged, 0 failed" in r.stdout

    (src / "softmax.tile").write_text((src / "softmax.tile").read_text() + "\n# touched\n")
    assert "1 built, 0 unchanged" in build(src, out).stdout

    (src / "broken.tile").write_text("kernel k(A: f16[M]) grid(1) threads(32) { x = nope; }\n")
    (src / "bad_launch.tile").write_text("kernel j(A: f16[M]) grid(1) threads(40) { x = register(f16[16]); }\n")
    r = build(src, out)
    assert r.returncode == 1
    assert "broken.tile:1:" in r.stderr and "unknown name 'nope'" in r.stderr
    assert "bad_launch.tile:1:" in r.stderr and "40 threads per block" in r.stderr
    assert "1 unchanged, 2 failed" in r.stdout
    assert not list(out.rglob(".*.tmp*")) and not [p for p in out.rglob("*") if p.name.startswith(".")]


def test_a_kernel_the_backend_cannot_take_is_listed_not_failed(tmp_path):
    """Triton reads packed weights only in the plain [N, K] packing: the build names the kernel and the
    reason, builds the rest and succeeds."""
    src = tmp_path / "src"
    src.mkdir()
    text = (ROOT / "kernels/gemm_wNa16.tile").read_text()
    start = text.index("kernel wNa16_packed(")
    (src / "packed.tile").write_text(text[start:text.index("\n}\n", start) + 3])
    shutil.copy(ROOT / "kernels/softmax.tile", src)
    r = build(src, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "1 built, 0 unchanged, 1 not supported by triton, 0 failed" in r.stdout
    assert "note: not built for triton: wNa16_packed (" in r.stderr and "packed.tile:1:" in r.stderr
    assert "reads 'W' only in the plain [N, K] packing" in r.stderr and "error:" not in r.stderr
