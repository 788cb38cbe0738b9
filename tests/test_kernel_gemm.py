"""gemm (kernels/gemm.tile): C = A @ B with f32 accumulation, on the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_refs import TOL, gemm, load, poisoned, rand, rel_err

TILES = dict(BM=16, BN=16, BK=16)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("out", ["same", "f32"])
@pytest.mark.parametrize("m,k,n", [(1, 33, 45), (7, 100, 45), (70, 100, 45), (32, 16, 16)])
def test_gemm_matches_numpy(dt, out, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    a, b = rand(rng, (m, k), dt), rand(rng, (k, n), dt)
    c = poisoned((m, n), dt if out == "same" else out)
    load("gemm")["gemm"](a, b, c, **TILES)
    assert rel_err(c, gemm(a, b)) < TOL


def test_gemm_default_tiles_with_mixed_output_dtype():
    rng = np.random.default_rng(1)
    a, b = rand(rng, (70, 100), "bf16"), rand(rng, (100, 45), "bf16")
    c = poisoned((70, 45), "f16")
    load("gemm")["gemm"](a, b, c)
    assert rel_err(c, gemm(a, b)) < TOL


def test_gemm_on_torch_cpu_tensors():
    torch.manual_seed(0)
    a, b = torch.randn(7, 33, dtype=torch.bfloat16), torch.randn(33, 45, dtype=torch.bfloat16)
    c = torch.full((7, 45), float("nan"), dtype=torch.float32)
    load("gemm")["gemm"](a, b, c, **TILES)
    ref = a.double() @ b.double()
    assert (torch.linalg.norm(c.double() - ref) / torch.linalg.norm(ref)).item() < TOL
