"""Hopper wgmma in the CUDA backend (tilelang/backends/cuda/wgmma.py).

Without a GPU: the canonical wgmma layouts the plan chooses for gemm operands, the shared-memory
matrix descriptors read off them (exact encodings), the warpgroup tilings and accumulator
fragments, which gemms take wgmma (only for sm_90a: the emulator and other archs keep mma.sync),
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
from tilelang.backends.cuda import wgmma as W
from tilelang.backends.cuda.codegen import generate_source
from tilelang.backends.cuda.plan import make_plan
from tilelang.backends.cuda.smem import gmma, row_major

from test_backend_cuda_sass import CUOBJDUMP, NVCC, has, opcodes

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
MN_K = lambda mn, k: (mn, k)  # noqa: E731 - operand (mn, k) stored at tile (mn, k): K-major
K_MN = lambda mn, k: (k, mn)  # noqa: E731 - stored at (k, mn): MN-major

# ----------------------------------------------------------------------------- descriptors


def test_descriptor_bit_fields():
    d = W.Descriptor(start=32, lbo=16, sbo=1024, width=128)
    assert d.encode(0x400) == (1 << 62) | (64 << 32) | (1 << 16) | ((0x400 + 32) >> 4)
    assert W.Descriptor(0, 4096, 512, 64).high == (2 << 62) | (32 << 32) | (256 << 16)
    assert W.Descriptor(0, 0, 256, 32).high == (3 << 62) | (16 << 32)


@pytest.mark.parametrize("cols,width,sbo", [(64, 128, 1024), (32, 64, 512), (16, 32, 256)])
def test_k_major_descriptor_from_a_swizzled_row(cols, width, sbo):
    """A [64, cols] f16 tile: one atom column; 8-row groups SBO apart; a k-step moves the start 32 bytes."""
    lay = gmma((64, cols), 2)
    assert lay.block == 0 and lay.swizzle.shift == 3 and 16 << lay.swizzle.bits == width
    assert W.descriptor(lay, 2, True, MN_K, 0, 0, 64) == W.Descriptor(0, 16, sbo, width)
    assert W.descriptor(lay, 2, True, MN_K, 0, 16, 64) == W.Descriptor(32, 16, sbo, width)
    assert W.descriptor(lay, 2, True, MN_K, 8, 0, 8).start == sbo  # the second 8-row group


def test_k_major_descriptor_of_a_blocked_tile():
    """K = 128 halfs (256-byte rows) is two 128-byte column blocks of 64 x 64 elements."""
    lay = gmma((64, 128), 2)
    assert lay.block == 64 and lay.cosize == 64 * 128
    assert W.descriptor(lay, 2, True, MN_K, 0, 48, 64) == W.Descriptor(96, 16, 1024, 128)
    assert W.descriptor(lay, 2, True, MN_K, 0, 64, 64) == W.Descriptor(64 * 64 * 2, 16, 1024, 128)


def test_mn_major_descriptor_of_b():
    """B [32, 128] (N contiguous): LBO steps between 64-column blocks, SBO between 8-row k groups."""
    lay = gmma((32, 128), 2)
    assert W.descriptor(lay, 2, False, K_MN, 0, 0, 128) == W.Descriptor(0, 32 * 128, 1024, 128)
    assert W.descriptor(lay, 2, False, K_MN, 0, 16, 128) == W.Descriptor(16 * 128, 32 * 128, 1024, 128)
    assert W.descriptor(lay, 2, False, K_MN, 64, 0, 64) == W.Descriptor(32 * 128, 0, 1024, 128)


@pytest.mark.parametrize("shape", [(64, 64), (32, 128), (64, 32), (128, 256)])
def test_descriptor_addresses_are_the_layout(shape):
    """The hardware's address model under the derived descriptor lands on the layout's offsets."""
    lay = gmma(shape, 2)
    for k_major, coord, extent in ((True, MN_K, 64), (False, K_MN, min(shape[1], 256))):
        if k_major and shape[0] < 64:
            continue
        k = shape[1] if k_major else shape[0]
        for k0 in range(0, k, 16):
            d = W.descriptor(lay, 2, k_major, coord, 0, k0, extent)
            assert d is not None
            for mn in range(extent):
                for kk in range(16):
                    assert d.address(mn, kk, 2, k_major) == 2 * lay.at(coord(mn, k0 + kk))


def test_layouts_a_descriptor_cannot_express_are_refused():
    assert W.descriptor(row_major((64, 64)), 2, True, MN_K, 0, 0, 64) is None
    from tilelang.backends.cuda.smem import SmemLayout
    from tilelang.layout import standard_swizzle
    wide = SmemLayout((64, 128), (128, 1), standard_swizzle(128, 2))  # Sw<3,3,4>: 256-byte rows
    assert W.descriptor(wide, 2, True, MN_K, 0, 0, 64) is None
    assert gmma((60, 64), 2) is None and gmma((64, 24), 2) is None


# ----------------------------------------------------------------------------- tilings and fragments

@pytest.mark.parametrize("m,n,threads,grid,inst_n,nsplit", [
    (64, 64, 128, (1, 1), 64, 1), (128, 128, 256, (2, 1), 128, 1), (128, 256, 256, (2, 1), 256, 1),
    (64, 64, 256, (1, 2), 32, 1), (64, 512, 128, (1, 1), 256, 2), (256, 128, 256, (2, 1), 128, 1)])
def test_warpgroup_tiling(m, n, threads, grid, inst_n, nsplit):
    t = W.wgmma_tiling(m, n, threads)
    assert (t.wgm, t.wgn, t.inst_n, t.nsplit) == (*grid, inst_n, nsplit)


def test_no_tiling_where_m64_does_not_fit():
    assert W.wgmma_tiling(48, 64, 128) is None and W.wgmma_tiling(64, 64, 96) is None
    assert W.wgmma_tiling(64, 60, 128) is None


@pytest.mark.parametrize("m,n,threads", [(64, 64, 128), (128, 128, 256), (256, 64, 256), (64, 64, 256)])
def test_accumulator_mapping_is_the_wgmma_fragment(m, n, threads):
    """PTX's m64nNk16 D fragment: warp w of a warpgroup holds rows 16w + lane/4 (+8), columns
    8j + 2 (lane % 4) (+1), in registers (j * 4 + {0: row, 1: col+1, 2: row+8, 3: both})."""
    t = W.wgmma_tiling(m, n, threads)
    task = W.mapping(t, threads).task
    for tid in range(threads):
        g, w, lane = tid // 128, (tid % 128) // 32, tid % 32
        for v in range(task.values_per_thread):
            i, r = divmod(v, t.ni * 4)
            j, e = divmod(r, 4)
            row = (g // t.wgn) * t.rows + 64 * i + 16 * w + lane // 4 + 8 * (e // 2)
            col = (g % t.wgn) * t.cols + 8 * j + 2 * (lane % 4) + e % 2
            assert task(tid, v) == (row, col)


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
    assert plan.layouts["a"] == gmma((128, 64), 2) and plan.layouts["b"] == gmma((64, 256), 2)
    assert wg.a.k_major and not wg.b.k_major
    assert wg.a.wg_stride == 64 * 128 and wg.a.starts == ((0, 32, 64, 96),)
    assert wg.b.starts == ((0, 2048, 4096, 6144),)
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
    assert not wg.a.k_major and wg.b.k_major
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
