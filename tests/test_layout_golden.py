"""Golden layouts: the plan of every kernel in kernels/*.tile at its default constants, for Hopper
(sm_90a: wgmma) and for the portable target (sm_80: mma.sync). These are the plans the CUDA and
TVM backends emit (tests/test_plan_is_what_runs.py checks that against the generated code).

Each plan is rendered with `tilelang.layout.show.layouts_text` and compared with
tests/golden/layouts/<file>.<kernel>.<target>.txt. A difference means inference changed (or the
kernel did): read the diff, and if the new layouts are intended, rewrite the files with

    TILELANG_UPDATE_GOLDEN=1 python -m pytest tests/test_layout_golden.py

which also deletes golden files of kernels that no longer exist.
"""

import difflib
import os
from pathlib import Path

import pytest

import tilelang
from tilelang.layout.show import layouts_text

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "layouts"
UPDATE = os.environ.get("TILELANG_UPDATE_GOLDEN") == "1"


TARGETS = ("sm_90a", "sm_80")


def kernels():
    for f in sorted((ROOT / "kernels").glob("*.tile")):
        for name in tilelang.load(f):
            for target in TARGETS:
                yield f, name, target


CASES = list(kernels())


@pytest.mark.parametrize("path,name,target", CASES, ids=[f"{f.stem}.{n}.{t}" for f, n, t in CASES])
def test_golden_layouts(path, name, target):
    text = layouts_text(tilelang.load(path)[name].lower(), target=target)
    golden = GOLDEN / f"{path.stem}.{name}.{target}.txt"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
        return
    assert golden.exists(), f"no golden file {golden.name}: run with TILELANG_UPDATE_GOLDEN=1 to create it"
    expected = golden.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(golden), "inferred",
                                            n=2))
        pytest.fail(f"layouts of {path.name}:{name} changed (TILELANG_UPDATE_GOLDEN=1 accepts them):\n{diff[:6000]}")


def test_no_stale_golden_files():
    wanted = {f"{f.stem}.{n}.{t}.txt" for f, n, t in CASES}
    stale = sorted(p.name for p in GOLDEN.glob("*.txt") if p.name not in wanted)
    if UPDATE:
        for name in stale:
            (GOLDEN / name).unlink()
        return
    assert not stale, f"golden files without a kernel: {stale} (TILELANG_UPDATE_GOLDEN=1 removes them)"


def test_golden_text_shows_what_a_reviewer_needs():
    text = (GOLDEN / "gemm.gemm.sm_80.txt").read_text()
    for needle in ("for sm_80", "tile a: shared f16[64, 32]", "layout  swizzle(2, 3, 3)", "0 bank conflicts",
                   "tile acc: register f32[64, 64]", "T0V0", "cp.async.16", "ldmatrix.x4.trans",
                   "mma.m16n8k16.f32.f16", "2x2 warps"):
        assert needle in text
    text = (GOLDEN / "gemm.gemm.sm_90a.txt").read_text()
    for needle in ("for sm_90a", "1x1 warpgroups", "wgmma.m64n64k16.f32.f16", "operands by descriptor"):
        assert needle in text
