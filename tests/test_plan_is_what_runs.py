"""What `tilelang show --layouts` prints is what the CUDA backend emits.

For every kernel of the library, in f16 and bf16, for sm_80 (mma.sync) and sm_90a (wgmma, TMA),
the layout plan's decisions are read back from the generated CUDA source (`plan_check.py`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tilelang
from tilelang.backends.cuda.codegen import generate_source
from tilelang.layout import infer_layouts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_check import assert_cuda_follows_plan  # noqa: E402

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
CASES = [(f.stem, name, dt, target) for f in sorted(KERNELS.glob("*.tile")) for name in tilelang.load(f)
         for dt in ("f16", "bf16") for target in ("sm_80", "sm_90a")]


def _lowered(file: str, name: str, dt: str):
    k = tilelang.load(KERNELS / f"{file}.tile")[name]
    return k.lower(**{c.name: dt for c in k.ir.consts if c.kind == "dtype" and c.default in ("f16", "bf16")})


@pytest.mark.parametrize("file,name,dt,target", CASES, ids=[f"{f}.{n}.{d}.{t}" for f, n, d, t in CASES])
def test_generated_cuda_is_the_plan(file, name, dt, target):
    assert_cuda_follows_plan(_lowered(file, name, dt), target)


def test_a_layout_the_plan_changes_changes_the_code():
    """The check above can fail: a plan with another swizzle makes other code."""
    src = (KERNELS / "gemm.tile").read_text().replace("a = shared(T[BM, BK]);", "a = shared(T[BM, BK], layout=padded(8));")
    tk = tilelang.loads(src, "gemm.tile")["gemm"].lower()
    plain = generate_source(_lowered("gemm", "gemm", "f16"), "sm_80").code
    padded = generate_source(tk, "sm_80").code
    sw = infer_layouts(_lowered("gemm", "gemm", "f16"), "sm_80").shared("a").swizzle
    assert infer_layouts(tk, "sm_80").shared("a").swizzle is None and infer_layouts(tk, "sm_80").shared("a").row_stride == 40
    assert f">> {sw.base + sw.shift}) & {(1 << sw.bits) - 1}) << {sw.base}))" in plain
    assert "* 40" in padded and plain != padded
