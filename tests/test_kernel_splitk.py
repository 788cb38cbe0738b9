"""Deterministic split-K (kernels/splitk.tile, tilelang/splitk.py): partial sums over K splits into an
f32 workspace, added in a fixed order with the epilogue; the split count planned from the block count."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from kernel_refs import NP_DTYPES, TOL, f64, linear, load, poisoned, quantized, rand, rel_err
from library_cases import SPLITK
from tilelang import splitk

SMALL = dict(BN=16, BK=32)  # tiles for the interpreter: several K tiles at K ~ 100


def _launch(name, *args, **consts):
    """The library's kernels with small tiles (the sums keep their defaults)."""
    load("splitk")[name](*args, **consts, **({} if name.startswith("splitk_sum") else SMALL))


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n,splits", [(1, 333, 45, 3), (3, 100, 17, 7), (16, 65, 33, 1), (5, 257, 70, 2)])
@pytest.mark.parametrize("epilogue", ["", "bias", "residual", "bias_residual"])
def test_dense_matches_numpy(dt, m, k, n, splits, epilogue):
    rng = np.random.default_rng(m * k + n)
    x, w = rand(rng, (m, k), dt), rand(rng, (n, k), dt, 0.3)
    bias = rand(rng, (n,), dt) if "bias" in epilogue else None
    res = rand(rng, (m, n), dt) if "residual" in epilogue else None
    y = poisoned((m, n), dt)
    assert splitk.linear(x, w, y, bias=bias, residual=res, splits=splits, launch=_launch) == splits
    assert rel_err(y, linear(x, w, bias, res)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,k,n,tw,g,zp,splits", [(1, 333, 45, "i4", 32, False, 3), (1, 100, 17, "u8", None, False, 5),
                                                  (7, 257, 33, "i4", 64, False, 2), (16, 96, 20, "i3", 32, False, 4),
                                                  (1, 300, 21, "u4", 64, True, 3), (5, 200, 33, "u3", 32, True, 2)])
def test_quantized_matches_numpy(dt, m, k, n, tw, g, zp, splits):
    rng = np.random.default_rng(m * k + n)
    w, s, z, wf = quantized(rng, n, k, tw, g or k, zp, dt)
    zeros = z.astype(NP_DTYPES[dt]) if zp else None
    x, res, y = rand(rng, (m, k), dt), rand(rng, (m, n), dt), poisoned((m, n), dt)
    splitk.linear(x, w, y, scales=s, zeros=zeros, TW=tw, G=g or k, residual=res, splits=splits, launch=_launch)
    assert rel_err(y, linear(x, wf, residual=res)) < TOL


def test_the_sum_runs_in_split_order_and_repeats_bit_for_bit():
    """The workspace's partials are what the K ranges give, and Y is their sum in order 0, 1, ..., NS-1."""
    rng = np.random.default_rng(0)
    m, k, n, ns = 2, 200, 33, 3
    x, w = rand(rng, (m, k), "f16"), rand(rng, (n, k), "f16")
    part = poisoned((ns, m, n), "f32")
    _launch("gemv_splitk", x, w, part)
    per = -(-(-(-k // SMALL["BK"])) // ns) * SMALL["BK"]  # K elements per split
    for s in range(ns):
        cols = slice(s * per, min((s + 1) * per, k))
        assert rel_err(part[s], f64(x[:, cols]) @ f64(w[:, cols]).T) < 1e-5
    y1, y2 = poisoned((m, n), "f16"), poisoned((m, n), "f16")
    splitk.linear(x, w, y1, splits=ns, launch=_launch)
    splitk.linear(x, w, y2, splits=ns, launch=_launch)
    assert np.array_equal(y1.view(np.uint16), y2.view(np.uint16))
    ordered = part[0] + part[1] + part[2]  # f32, left to right
    assert np.array_equal(y1, ordered.astype(np.float16))


def test_empty_splits_write_zeros():
    rng = np.random.default_rng(1)
    x, w = rand(rng, (1, 40), "f16"), rand(rng, (17, 40), "f16")
    part = poisoned((5, 1, 17), "f32")  # 2 K tiles of 32 over 5 splits: splits 2..4 have none
    _launch("gemv_splitk", x, w, part)
    assert (part[2:] == 0).all() and np.isfinite(part[:2]).all()


def test_plan_fills_the_gpu_only_where_the_outputs_do_not():
    # Llama-1B's down projection at M = 1: 2048 / 32 = 64 blocks on 132 SMs
    # (BK = 256: 32 K tiles), split min(cdiv(TARGET_BLOCKS_PER_SM * 132, 64), 32 // MIN_TILES) ways
    assert splitk.plan(1, 2048, 8192, sms=132) == min(-(-splitk.TARGET_BLOCKS_PER_SM * 132 // 64),
                                                      32 // splitk.MIN_TILES) > 1
    # enough output blocks already: no split
    assert splitk.plan(1, 16384, 4096, sms=132) == 1
    # a short K keeps MIN_TILES tiles per split (BK = 256: one tile at K = 200)
    assert splitk.plan(1, 64, 200, sms=132) == 1
    # no GPU, or prefill rows: no split
    assert splitk.plan(1, 2048, 8192, sms=None) == 1 and splitk.plan(64, 2048, 8192, sms=132) == 1
    # W4A16 at M = 16 on 11008 x 4096 (N = 4096): 128 blocks of gemm_wNa16_splitk, split; at M = 1 and
    # N = 11008, gemv_wNa16_splitk's BN = 16 gives 688 blocks, which fill the GPU
    assert splitk.plan(16, 4096, 11008, sms=132, quantized=True) > 1
    assert splitk.plan(1, 11008, 4096, sms=132, quantized=True) == 1


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("name", ["gemv_splitk", "gemv_wNa16_splitk", "gemm_wNa16_splitk", "gemv_wNa16_zp_splitk",
                                  "gemm_wNa16_zp_splitk", "splitk_sum", "splitk_sum_bias", "splitk_sum_residual",
                                  "splitk_sum_bias_residual"])
def test_cuda_backend_on_the_emulator(name, dt):
    from test_backend_cuda import kernel
    from test_backend_cuda_codegen import _emulate_and_compare
    make = next(mk for _, nm, mk in SPLITK if nm == name)
    args, consts = make(np.random.default_rng(7), dt)
    _emulate_and_compare(kernel("splitk", name), args, consts, dt)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_split_k_repeats_bit_for_bit_and_matches_gemv(backend):
    """Llama-1B's down projection at M = 1, split as the plan says on this GPU: the same bits on every
    run, and within the f16 tolerance of the unsplit gemv."""
    import torch
    torch.manual_seed(0)
    x = torch.randn(1, 8192, dtype=torch.float16, device="cuda")
    w = torch.randn(2048, 8192, dtype=torch.float16, device="cuda") * 0.02
    r = torch.randn(1, 2048, dtype=torch.float16, device="cuda")

    def launch(name, *args, **consts):
        load("splitk")[name](*args, backend=backend, **consts)
    ys = []
    for _ in range(3):
        y = torch.empty(1, 2048, dtype=torch.float16, device="cuda")
        assert splitk.linear(x, w, y, residual=r, launch=launch) > 1
        ys.append(y)
    assert all(torch.equal(ys[0], y) for y in ys[1:])
    want = r.double() + x.double() @ w.double().t()
    assert rel_err(ys[0].cpu().float().numpy(), want.cpu().numpy()) < TOL
