"""The TVM cuda lowering's tensor-core gemm, checked without a GPU: its ldmatrix addresses
(tilelang/backends/tvm/mma.py) and the slots of the plan's accumulator fragment mapping as it
prints them (tilelang/backends/tvm/mapping.py) are run through a model of ldmatrix and
mma.m16n8k16 written from the PTX ISA's fragment tables, and must compute a @ b."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
from kernel_refs import load  # noqa: E402
from tilelang.backends.tvm import generate  # noqa: E402
from tilelang.backends.tvm import mapping, mma  # noqa: E402
from tilelang.layout.tiling import mma_fragments, mma_tiling  # noqa: E402


def _ev(expr: str, **env) -> int:
    return eval(expr, {}, env)  # TIR's // and % agree with Python's on the non-negative values here


def _ldmatrix(tile: np.ndarray, at: tuple[str, str], num: int, trans: bool, w: int, **env) -> np.ndarray:
    """[32, 2 * num]: what each lane of warp w receives (PTX: lane 8 i + r addresses row r of matrix
    i, 8 elements from there in the row-major tile; lane l gets row l // 4, columns 2 (l % 4) and
    + 1 of each matrix; .trans the transposed matrix)."""
    flat = tile.ravel()
    addr = [_ev(at[0], tx=32 * w + lane, **env) * tile.shape[1] + _ev(at[1], tx=32 * w + lane, **env)
            for lane in range(32)]
    assert all(x % 8 == 0 for x in addr[:8 * num]), "ldmatrix rows must be 16-byte aligned"
    mats = [np.stack([flat[addr[8 * i + r]: addr[8 * i + r] + 8] for r in range(8)]) for i in range(num)]
    out = np.zeros((32, 2 * num))
    for lane in range(32):
        for i, m in enumerate(mats):
            m = m.T if trans else m
            out[lane, 2 * i: 2 * i + 2] = m[lane // 4, 2 * (lane % 4): 2 * (lane % 4) + 2]
    return out


def _mma(fa: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """[32, 4] fragments of A (16x16, from [32, 8]) @ B (16x8, from [32, 4]), by the PTX tables."""
    a, b = np.zeros((16, 16)), np.zeros((16, 8))
    for lane in range(32):
        g, q = lane // 4, lane % 4
        for i in range(8):
            a[g + 8 * (i // 2 % 2), 2 * q + i % 2 + 8 * (i // 4)] = fa[lane, i]
        for i in range(4):
            b[2 * q + i % 2 + 8 * (i // 2), g] = fb[lane, i]
    c = a @ b
    return np.array([[c[lane // 4 + 8 * (i // 2), 2 * (lane % 4) + i % 2] for i in range(4)] for lane in range(32)])


def _simulate(m: int, n: int, k: int, threads: int, trans_a: bool, trans_b: bool):
    t = mma_tiling(m, n, threads)
    assert t is not None
    rng = np.random.default_rng(0)
    a, b = rng.integers(-4, 5, (m, k)).astype(float), rng.integers(-4, 5, (k, n)).astype(float)
    sa, sb = (a.T if trans_a else a), (b.T if trans_b else b)  # the shared tiles as stored
    acc = np.zeros((threads, 4 * t.mi * t.ni))
    for w in range(threads // 32):
        for gk in range(k // 16):
            fa = [_ldmatrix(sa, mma.a_at(t, trans_a), 4, trans_a, w, fi=fi, gk=gk)
                  for fi in range(t.mi)]
            fb = np.zeros((32, 4 * t.ni))
            for fp in range(t.ni // 2):
                fb[:, 8 * fp: 8 * fp + 8] = _ldmatrix(sb, mma.b_at(t, trans_b), 4, not trans_b,
                                                      w, fp=fp, gk=gk)
            if t.ni % 2:
                fb[:, -4:] = _ldmatrix(sb, mma.b_last_at(t, trans_b), 2, not trans_b, w, gk=gk)
            for fi in range(t.mi):
                for fj in range(t.ni):
                    s = (fi * t.ni + fj) * 4
                    acc[32 * w: 32 * w + 32, s: s + 4] += _mma(fa[fi], fb[:, 4 * fj: 4 * fj + 4])
    got = np.full((m, n), np.nan)
    row, col = mapping.held(mma_fragments(t, k, trans_a, trans_b).c, threads).coords  # the accumulator's slots
    for tx in range(threads):
        for v in range(acc.shape[1]):
            i, j = _ev(row, tx=tx, v=v), _ev(col, tx=tx, v=v)
            assert np.isnan(got[i, j]), "two slots hold one element"
            got[i, j] = acc[tx, v]
    np.testing.assert_array_equal(got, a @ b)


@pytest.mark.parametrize("m,n,k,threads,trans_a,trans_b", [
    (64, 64, 32, 128, False, False),  # gemm.tile's default
    (16, 32, 64, 128, False, True),  # gemv: one m16 row of fragments, B stored [n, k]
    (32, 24, 16, 32, True, False),  # odd n8 fragments per warp (ldmatrix.x2), A stored [k, m]
    (128, 64, 32, 256, True, True),
])
def test_mma_fragments_compute_the_product(m, n, k, threads, trans_a, trans_b):
    _simulate(m, n, k, threads, trans_a, trans_b)




def _cuda(name: str, kernel: str, **consts) -> str:
    return generate(load(name)[kernel].lower(**consts), "cuda")


@pytest.mark.parametrize("name,kernel,consts,gemms", [
    ("gemm", "gemm", {}, 1),
    ("gemm", "gemm", {"T": "bf16", "BM": 128, "BN": 256, "THREADS": 256}, 1),
    ("gemv", "gemv", {}, 1),
    ("fused_mlp", "fused_mlp_gate_up", {}, 2),  # register operand xn, read from its shared mirror
    ("fused_mlp", "mlp_gate_up", {}, 2),
])
def test_cuda_gemm_uses_tensor_cores(name, kernel, consts, gemms):
    text = _cuda(name, kernel, **consts)
    ab = "bf16" if consts.get("T") == "bf16" else "fp16"
    assert text.count(f'T.ptx_legacy.mma("m16n8k16", "row", "col", "{ab}", "{ab}", "fp32"') == gemms
    assert text.count("T.ptx_legacy.ldmatrix(") >= 2 * gemms
    assert re.search(r"for gk in T\.(serial|unroll)\(", text) and not re.search(r"\+ T.Cast\(\"float32\", \w+\[.*gk", text)  # no FMA loop


def test_cuda_gemm_falls_back_to_fma_where_mma_does_not_fit():
    src = """
kernel k(A: f32[M, K], B: f32[K, N], C: f32[M, N], BM: const = 16, BN: const = 16, BK: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    a = shared(f32[BM, BK]);
    b = shared(f32[BK, BN]);
    acc = register(f32[BM, BN]);
    copy(A[block_id(0), 0], a);
    copy(B[0, block_id(1)], b);
    gemm(a, b, acc);
    copy(acc, C[block_id(0), block_id(1)]);
}
"""
    text = generate(tilelang.loads(src, "k.tile")["k"].lower(), "cuda")
    assert "ptx_legacy" not in text and "for gk in T.serial(16):" in text
