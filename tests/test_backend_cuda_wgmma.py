"""Hopper wgmma in the CUDA backend (tilelang/backends/cuda/wgmma.py), as the layout plan decides it.

Without a GPU (descriptors, tilings and fragments themselves: tests/test_layout_wgmma.py): the
canonical wgmma layouts the plan chooses for gemm operands, which gemms take wgmma (only for
sm_90a: the emulator and other archs keep mma.sync),
and the generated source compiled by nvcc for sm_90a: HGMMA in the SASS, no spills, no
serialized wgmma.  With a GPU (`-m gpu`, an H100/H200): gemms through wgmma match torch in f16
and bf16 on shapes that are not multiples of the tile, for every operand orientation.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

import tilelang
from tilelang.backends.cuda.codegen import generate_source
from tilelang.backends.cuda.plan import make_plan
from tilelang.layout.shared import smem_gmma

from test_backend_cuda_sass import CUOBJDUMP, NVCC, has, opcodes

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
# ----------------------------------------------------------------------------- the plan


def _gemm(**consts):
    return tilelang.load(KERNEL_DIR / "gemm.tile")["gemm"].lower(**consts)


def test_wgmma_only_for_sm_90a():
    tk = _gemm(T="f16")
    assert make_plan(tk, "sm_90a").wgmma and not make_plan(tk, "sm_90a").mma
    for arch in (None, "sm_80", "sm_90"):
        plan = make_plan(tk, arch)
        assert not plan.wgmma and plan.mma
    code = generate_source(tk).code  # what the CPU emulator builds
    assert "#define TL_WGMMA 0" in code and "wgmma.mma_async" not in code


def test_plan_layouts_descriptors_and_pipeline_lag():
    tk = _gemm(T="bf16", BM=128, BN=256, BK=64, STAGES=4, THREADS=256)
    plan = make_plan(tk, "sm_90a")
    (wg,) = plan.wgmma.values()
    assert (wg.tiling.wgm, wg.tiling.wgn, wg.tiling.inst_n) == (2, 1, 256)
    assert plan.layouts["a"].layout == smem_gmma(128, 64, 2) and plan.layouts["b"].layout == smem_gmma(64, 256, 2)
    assert wg.a_desc.k_major and not wg.b_desc.k_major
    assert wg.a_desc.wg_stride == 64 * 128 and wg.a_desc.starts == ((0, 32, 64, 96),)
    assert wg.b_desc.starts == ((0, 2048, 4096, 6144),)
    assert all(off % 1024 == 0 for off in plan.smem_offsets.values())
    (pipe,) = plan.pipelines.values()
    assert pipe.lag == 1 and pipe.ahead == 2


def test_three_stages_needed_to_keep_a_group_in_flight():
    plan = make_plan(_gemm(T="f16", STAGES=3), "sm_90a")
    assert next(iter(plan.pipelines.values())).lag == 1
    src = tilelang.loads(GEMM2, "g.tile")["g2"].lower()
    assert next(iter(make_plan(src, "sm_90a").pipelines.values())).lag == 0


GEMM2 = """
kernel g2(A: f16[M, K], B: f16[K, N], C: f16[M, N]) grid(cdiv(M, 64), cdiv(N, 64)) threads(128) {
    a = shared(f16[64, 32]);
    b = shared(f16[32, 64]);
    acc = register(f32[64, 64]);
    for k in pipelined(cdiv(K, 32), stages=2) {
        copy(A[block_id(0), k], a);
        copy(B[k, block_id(1)], b);
        gemm(a, b, acc);
    }
    copy(acc, C[block_id(0), block_id(1)]);
}
"""

# A^T: a is [K, M] in memory (trans_a), B^T: b is [N, K] (trans_b), and both.
ORIENTED = """
kernel gemm_t(A: T[K, M], B: T[N, K], C: T[M, N], T: dtype = f16, BM: const = 128, BN: const = 128,
              BK: const = 64) grid(cdiv(M, BM), cdiv(N, BN)) threads(256)
{
    a = shared(T[BK, BM]);
    b = shared(T[BN, BK]);
    acc = register(f32[BM, BN]);
    for k in pipelined(cdiv(K, BK), stages=3) {
        copy(A[k, block_id(0)], a);
        copy(B[block_id(1), k], b);
        gemm(a, b, acc, trans_a=true, trans_b=true);
    }
    copy(acc, C[block_id(0), block_id(1)]);
}
"""


def test_transposed_operands_use_the_transpose_flags():
    tk = tilelang.loads(ORIENTED, "t.tile")["gemm_t"].lower()
    plan = make_plan(tk, "sm_90a")
    (wg,) = plan.wgmma.values()
    assert not wg.a_desc.k_major and wg.b_desc.k_major
    assert "m64n128k16.f32.f16.f16" in generate_source(tk, "sm_90a").code
    assert ", p, 1, 1, 1, 0;" in generate_source(tk, "sm_90a").code  # A MN-major, B K-major


# ----------------------------------------------------------------------------- nvcc / SASS

SASS_CASES = [
    ("gemm", "gemm", {"T": "f16"}),
    ("gemm", "gemm", {"T": "bf16", "BM": 128, "BN": 128, "BK": 64, "STAGES": 4, "THREADS": 256}),
    ("gemm", "gemm", {"T": "f16", "BM": 128, "BN": 256, "BK": 64, "STAGES": 4, "THREADS": 256}),
    ("linear", "linear", {"T": "bf16"}),
    ("attention", "attention_prefill", {"T": "f16"}),
]


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("file,name,consts", SASS_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_sm90a_source_compiles_to_hgmma(file, name, consts):
    tk = tilelang.load(KERNEL_DIR / f"{file}.tile")[name].lower(**consts)
    with tempfile.TemporaryDirectory() as work:
        cu, cubin = Path(work) / "k.cu", Path(work) / "k.cubin"
        cu.write_text(generate_source(tk, "sm_90a").code)
        proc = subprocess.run([NVCC, "-std=c++17", "-O3", "-arch=sm_90a", "-cubin", str(cu), "-o", str(cubin)],
                              check=True, capture_output=True, text=True)
        ops = opcodes(subprocess.run([CUOBJDUMP, "-sass", str(cubin)], check=True, capture_output=True,
                                     text=True).stdout)
    assert has(ops, "HGMMA"), dict(ops.most_common(12))
    assert "C7515" not in proc.stderr, proc.stderr  # ptxas serialized the wgmmas
    assert not has(ops, "STL") and not has(ops, "LDL"), "registers spill to local memory"
    if name == "gemm":
        assert not has(ops, "HMMA") and not has(ops, "LDSM") and has(ops, "LDGSTS")


# ----------------------------------------------------------------------------- GPU


def on_hopper():
    torch = pytest.importorskip("torch")
    pytest.importorskip("cupy")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("wgmma and TMA need an sm_90 device")
    return torch


def check(c, ref, what):
    err = ((c.float() - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-2, f"{what}: relative error {err:.3g}"


def run_gemm(dt, shape, **consts):
    """kernels/gemm.tile through the CUDA backend on random operands, checked against torch."""
    torch = on_hopper()
    k = tilelang.load(KERNEL_DIR / "gemm.tile")["gemm"]
    M, N, K = shape
    td = {"f16": torch.float16, "bf16": torch.bfloat16}[dt]
    g = torch.Generator(device="cuda").manual_seed(M * N + K)
    a = torch.randn(M, K, device="cuda", dtype=td, generator=g)
    b = torch.randn(K, N, device="cuda", dtype=td, generator=g)
    c = torch.empty(M, N, device="cuda", dtype=td)
    k(a, b, c, backend="cuda", T=dt, TC=dt, **consts)
    check(c, a.float() @ b.float(), f"{dt} {consts} {shape}")
    return k


def run_transposed(dt, M, N, K):
    """The ORIENTED kernel (A stored K x M, B stored N x K) checked against torch."""
    torch = on_hopper()
    k = tilelang.loads(ORIENTED, "t.tile")["gemm_t"]
    td = {"f16": torch.float16, "bf16": torch.bfloat16}[dt]
    a = torch.randn(K, M, device="cuda", dtype=td)
    b = torch.randn(N, K, device="cuda", dtype=td)
    c = torch.empty(M, N, device="cuda", dtype=td)
    k(a, b, c, backend="cuda", T=dt)
    check(c, a.float().t() @ b.float().t(), dt)
    return k


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("consts", [
    {}, {"BM": 128, "BN": 128, "BK": 64, "STAGES": 4, "THREADS": 256},
    {"BM": 128, "BN": 256, "BK": 64, "STAGES": 3, "THREADS": 256}, {"BM": 64, "BN": 128, "BK": 64, "STAGES": 4},
    {"BM": 64, "BN": 64, "BK": 32, "STAGES": 3, "THREADS": 256}])
@pytest.mark.parametrize("shape", [(333, 517, 259), (130, 260, 1000), (256, 256, 64)])
def test_gemm_through_wgmma_matches_torch(dt, consts, shape):
    assert make_plan(tilelang.load(KERNEL_DIR / "gemm.tile")["gemm"].lower(T=dt, TC=dt, **consts), "sm_90a").wgmma
    run_gemm(dt, shape, **consts)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_transposed_operands_through_wgmma_match_torch(dt):
    run_transposed(dt, 200, 333, 520)
