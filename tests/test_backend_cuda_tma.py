"""TMA loads of pipelined wgmma operands in the CUDA backend (tilelang/backends/cuda/tma.py).

Without a GPU: the TMA boxes derived from the canonical wgmma layouts (box, column blocks,
swizzle mode), checked against a model of where TMA writes each element; the tensor-map
arguments of a contiguous tensor; which pipelines take TMA (sm_90a with `tma` only, every
producer canonical, no rings); the emulator's and other archs' code unchanged; and the generated
source compiled by nvcc for sm_90a: UTMALDG and mbarrier (SYNCS) instructions, no cp.async.
With a GPU (`-m gpu`, an H100/H200): f16 and bf16 gemms through TMA on sizes that are not
multiples of the tile, transposed operands, and misaligned tensors (the cp.async variant).
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

import tilelang
from tilelang.backends.cuda import tma as TMA
from tilelang.backends.cuda.codegen import generate_source
from tilelang.backends.cuda.plan import make_plan

from test_backend_cuda_sass import CUOBJDUMP, NVCC, has, opcodes
from test_backend_cuda_wgmma import GEMM2, ORIENTED, check, on_hopper, run_gemm, run_transposed

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"
BIG = {"BM": 128, "BN": 256, "BK": 64, "STAGES": 4, "THREADS": 256}


def _gemm(**consts):
    return tilelang.load(KERNEL_DIR / "gemm.tile")["gemm"].lower(**consts)


# ----------------------------------------------------------------------------- boxes


def test_boxes_of_the_big_gemm_tiles():
    plan = make_plan(_gemm(T="f16", **BIG), "sm_90a", tma=True)
    a, b = plan.tma["a"], plan.tma["b"]
    assert (a.box, a.blocks, a.swizzle, a.bytes) == ((64, 128), 1, 3, 128 * 64 * 2)
    assert (b.box, b.block, b.blocks, b.block_elems, b.swizzle) == ((64, 64), 64, 4, 64 * 64, 3)
    assert a.param == "tl_tmap_a" and (a.tensor, b.tensor) == ("A", "B")
    (pipe,) = plan.pipelines.values()
    assert pipe.lag == 1 and pipe.tma_ahead == 3  # stages - 1 ahead, one wgmma group in flight
    (off,) = plan.mbarriers.values()
    assert off % 8 == 0 and off + 8 * 4 <= plan.tiles_bytes


def test_narrow_rows_take_the_64_and_32_byte_swizzles():
    plan = make_plan(tilelang.loads(GEMM2, "g.tile")["g2"].lower(), "sm_90a", tma=True)
    assert (plan.tma["a"].box, plan.tma["a"].swizzle) == ((32, 64), 2)   # [64, 32] halfs: 64-byte rows
    assert (plan.tma["b"].box, plan.tma["b"].swizzle) == ((64, 32), 3)   # [32, 64]: 128-byte rows
    assert next(iter(plan.pipelines.values())).tma_ahead == 2            # 2 stages, no lag


def _tma_byte(ld: TMA.TmaLoad, r: int, c: int) -> int:
    """Where TMA writes element (r, c) of the tile: box c // block, row-major in it with rows of
    block * 2 bytes, then the swizzle on address bits (16-byte chunk ^= 128-byte line, masked)."""
    width = ld.block * 2
    a = (c // ld.block) * ld.block_elems * 2 + r * width + (c % ld.block) * 2
    mask = {1: 1, 2: 3, 3: 7}[ld.swizzle]
    return a ^ (((a >> 7) & mask) << 4)


@pytest.mark.parametrize("consts,tile", [(BIG, "a"), (BIG, "b"), ({}, "a"), ({}, "b")])
def test_tma_writes_the_layout_the_descriptors_read(consts, tile):
    plan = make_plan(_gemm(T="bf16", **consts), "sm_90a", tma=True)
    lay, ld = plan.layouts[tile], plan.tma[tile]
    rows, cols = lay.shape
    assert all(_tma_byte(ld, r, c) == 2 * lay.at((r, c)) for r in range(rows) for c in range(cols))


def test_transposed_operands_take_tma_too():
    plan = make_plan(tilelang.loads(ORIENTED, "t.tile")["gemm_t"].lower(), "sm_90a", tma=True)
    assert plan.tma["a"].box == (64, 64) and plan.tma["a"].blocks == 2   # a: [BK=64, BM=128]
    assert plan.tma["b"].box == (64, 128) and plan.tma["b"].blocks == 1  # b: [BN=128, BK=64]


def test_tensor_map_arguments():
    ld = make_plan(_gemm(T="f16", **BIG), "sm_90a", tma=True).tma["b"]
    assert TMA.map_args(ld, (4096, 1000)) == ((1000, 4096), (2000,))
    three = TMA.TmaLoad("t", "X", "f16", 2, 3, (64, 64, 1), 64, 1, 4096, 3)
    assert TMA.map_args(three, (5, 96, 72)) == ((72, 96, 5), (144, 96 * 144))


def test_what_tma_can_describe():
    assert TMA.usable(1 << 20, (333, 520), 2)
    assert not TMA.usable((1 << 20) + 2, (333, 520), 2)  # base not 16-byte aligned
    assert not TMA.usable(1 << 20, (333, 259), 2)        # row pitch 518 bytes
    assert not TMA.usable(1 << 20, (0, 64), 2)


# ----------------------------------------------------------------------------- which pipelines


def test_tma_only_when_asked_on_sm_90a():
    tk = _gemm(T="f16", **BIG)
    assert not make_plan(tk, "sm_90a").tma and not make_plan(tk, "sm_90a").mbarriers
    for arch in (None, "sm_80", "sm_90"):
        assert not make_plan(tk, arch, tma=True).tma
    code = generate_source(tk).code  # what the CPU emulator builds
    assert "#define TL_TMA 0" in code and "cp.async.bulk" not in code and "tmap" not in code
    src = generate_source(tk, "sm_90a", tma=True)
    assert [p for p in src.params if p[0] == "tmap"] == [("tmap", "a"), ("tmap", "b")]
    assert [ld.tile for ld in src.tma] == ["a", "b"]
    assert src.decls[-1] == "const __grid_constant__ tl::TmaDesc tl_tmap_b"
    assert "tl::cp_async_16(" not in src.code and "tl::tma_load_2d(" in src.code


ANNOTATED = """
kernel g3(A: f16[M, K], B: f16[K, N], C: f16[M, N]) grid(cdiv(M, 64), cdiv(N, 64)) threads(128) {
    a = shared(f16[64, 64], layout=row_major);
    b = shared(f16[64, 64]);
    acc = register(f32[64, 64]);
    for k in pipelined(cdiv(K, 64), stages=3) {
        copy(A[block_id(0), k], a);
        copy(B[k, block_id(1)], b);
        gemm(a, b, acc);
    }
    copy(acc, C[block_id(0), block_id(1)]);
}
"""


def test_a_producer_tma_cannot_write_keeps_the_pipeline_on_cp_async():
    tk = tilelang.loads(ANNOTATED, "g.tile")["g3"].lower()
    plan = make_plan(tk, "sm_90a", tma=True)
    assert not plan.tma and not plan.mbarriers
    assert "tl::cp_async_16" in generate_source(tk, "sm_90a", tma=True).code


# ----------------------------------------------------------------------------- nvcc / SASS

SASS_CASES = [
    ("gemm", "gemm", {"T": "f16"}),
    ("gemm", "gemm", {"T": "bf16", **BIG}),
    ("gemm", "gemm", {"T": "f16", "BM": 128, "BN": 128, "BK": 64, "STAGES": 3, "THREADS": 256}),
]


@pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")
@pytest.mark.parametrize("file,name,consts", SASS_CASES, ids=lambda x: x if isinstance(x, str) else None)
def test_sm90a_source_compiles_to_utmaldg(file, name, consts):
    tk = tilelang.load(KERNEL_DIR / f"{file}.tile")[name].lower(**consts)
    with tempfile.TemporaryDirectory() as work:
        cu, cubin = Path(work) / "k.cu", Path(work) / "k.cubin"
        cu.write_text(generate_source(tk, "sm_90a", tma=True).code)
        subprocess.run([NVCC, "-std=c++17", "-O3", "-arch=sm_90a", "-cubin", str(cu), "-o", str(cubin)],
                       check=True, capture_output=True, text=True)
        ops = opcodes(subprocess.run([CUOBJDUMP, "-sass", str(cubin)], check=True, capture_output=True,
                                     text=True).stdout)
    assert has(ops, "UTMALDG") and has(ops, "HGMMA"), dict(ops.most_common(12))
    assert has(ops, "SYNCS"), "no mbarrier operations"
    assert not has(ops, "LDGSTS"), "cp.async left in the TMA pipeline"
    assert not has(ops, "STL") and not has(ops, "LDL"), "registers spill to local memory"


# ----------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("consts", [{}, BIG, {"BM": 128, "BN": 128, "BK": 64, "STAGES": 3, "THREADS": 256},
                                    {"BM": 64, "BN": 64, "BK": 32, "STAGES": 3, "THREADS": 256}])
@pytest.mark.parametrize("shape", [(328, 520, 264), (64, 136, 40), (512, 512, 512)])
def test_gemm_through_tma_matches_torch(dt, consts, shape):
    """Sizes off the tile (K too: the last box is partly out of bounds, zero-filled), row pitches
    16-byte aligned so TMA is taken (no fallback built)."""
    k = run_gemm(dt, shape, **consts)
    launcher = k.compile("cuda", T=dt, TC=dt, **consts)
    assert launcher.src.tma and launcher._fallback_launcher is None


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_transposed_operands_through_tma_match_torch(dt):
    k = run_transposed(dt, 200, 336, 520)
    assert k.compile("cuda", T=dt)._fallback_launcher is None


@pytest.mark.gpu
def test_misaligned_tensors_run_the_cp_async_variant():
    """A base 2 bytes off 16 and a 259-element row pitch: TMA cannot describe them; the call still
    computes the product, through the variant compiled without TMA."""
    torch = on_hopper()
    k = tilelang.load(KERNEL_DIR / "gemm.tile")["gemm"]
    M, N, K = 300, 264, 256
    buf = torch.randn(M * K + 1, device="cuda", dtype=torch.float16)
    a = buf[1:].view(M, K)  # data_ptr % 16 == 2
    b = torch.randn(K, N, device="cuda", dtype=torch.float16)
    c = torch.empty(M, N, device="cuda", dtype=torch.float16)
    k(a, b, c, backend="cuda", **BIG)
    launcher = k.compile("cuda", **BIG)
    assert launcher._fallback_launcher is not None and not launcher._fallback_launcher.src.tma
    check(c, a.float() @ b.float(), "misaligned base")
    a2 = torch.randn(M, 259, device="cuda", dtype=torch.float16)
    b2 = torch.randn(259, N, device="cuda", dtype=torch.float16)
    k(a2, b2, c, backend="cuda", **BIG)
    check(c, a2.float() @ b2.float(), "row pitch 518 bytes")
    aligned = torch.randn(M, K, device="cuda", dtype=torch.float16)
    k(aligned, b, c, backend="cuda", **BIG)  # the TMA kernel again, after the fallback
    check(c, aligned.float() @ b.float(), "aligned after misaligned")
