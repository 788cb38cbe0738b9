"""atomic_add(tile, T[i, j]): a register tile added into a global window, each element atomically, by
blocks in any order (an unordered sum); edges masked as a copy's. The interpreter runs blocks one at a
time (one order of that sum); Triton and CUDA add atomically; the TVM lowerings refuse it, located."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tilelang
from kernel_refs import f64, rand
from tilelang.diagnostics import Unsupported
from test_verifier_errors import assert_located

# column sums of X: every row block adds its partial sums into the same window of Y
COLSUM = """
kernel colsum(X: T[M, N], Y: TY[1, N], T: dtype = f16, TY: dtype = f32, BM: const = 16, BN: const = 32)
    grid(cdiv(N, BN), cdiv(M, BM)) threads(64)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(1), block_id(0)], x);
    s = sum(x, axis=0);
    atomic_add(s, Y[0, block_id(0)]);
}
"""
TOL = {"f32": 1e-5, "f16": 2e-2, "bf16": 1e-1}  # the sum of 70 rounded adds into Y's dtype, |y| ~ 10


def kernel():
    return tilelang.loads(COLSUM, "colsum.tile")["colsum"]


def case(ty: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rand(rng, (70, 45), "f16"), rand(rng, (1, 45), ty)


def check(x, y0, y, ty):
    want = f64(y0) + f64(x).sum(axis=0)
    assert np.abs(f64(y) - want).max() < TOL[ty] * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("ty", ["f32", "f16", "bf16"])
def test_interpreter_adds_every_block(ty):
    x, y0 = case(ty)
    y = y0.copy()
    kernel()(x, y, TY=ty)
    check(x, y0, y, ty)


def test_interpreter_result_is_one_order_of_the_sum():
    """In f32 the interpreter's result is the blocks' partial sums added to Y in grid order."""
    x, y0 = case("f32")
    y = y0.copy()
    kernel()(x, y)
    want = y0.copy()
    for b in range(0, 70, 16):
        want = want + x[b:b + 16].astype(np.float32).sum(axis=0, dtype=np.float32)
    assert np.allclose(y, want, rtol=1e-6, atol=1e-6)


TRITON_CHILD = r"""
import json, os, sys
os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, sys.argv[1])
import numpy as np
import test_atomic_add as t
out = {}
for ty in ("f32", "f16"):
    x, y0 = t.case(ty)
    y = y0.copy()
    t.kernel()(x, y, TY=ty, backend="triton")
    out[ty] = [y0.astype(np.float64).tolist(), y.astype(np.float64).tolist()]
print(json.dumps(out))
"""


def test_triton_interpreter_adds_atomically():
    """f32 and f16 targets (Triton's interpreter has no bf16 atomics; the GPU does, from sm_80)."""
    pytest.importorskip("triton")
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", TRITON_CHILD, str(here)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for ty, (y0, y) in got.items():
        x, _ = case(ty)
        check(x, np.array(y0), np.array(y), ty)


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")
@pytest.mark.parametrize("ty", ["f32", "f16", "bf16"])
def test_cuda_backend_on_the_emulator(ty):
    from test_backend_cuda_codegen import _emulate_and_compare
    x, y0 = case(ty)
    _emulate_and_compare(kernel(), [x, y0], {"TY": ty}, "bf16" if ty == "bf16" else "f16")


def test_cuda_source_adds_each_element_once():
    from tilelang.backends import cuda
    code = cuda.generate(kernel().lower(TY="bf16"), "sm_90a")
    code = code.code if hasattr(code, "code") else str(code)
    assert "atomicAdd(ptr + 0, tl::from_f32<__nv_bfloat16>(" in code


@pytest.mark.parametrize("target", ["llvm", "cuda"])
def test_tvm_refuses_with_a_located_error(target):
    tvm_backend = pytest.importorskip("tilelang.backends.tvm")
    tk = kernel().lower()
    with pytest.raises(Unsupported) as e:
        tvm_backend.generate(tk, target)
    assert "cannot emit atomic_add" in e.value.message and e.value.loc.line == 8
    assert "backend='triton' or 'cuda'" in e.value.hint


@pytest.mark.parametrize("body, message, hint", [
    ("x = register(f16[BM, BN]); atomic_add(x);", "atomic_add takes (tile, T[i, j])", "atomic_add(acc, Y"),
    ("x = shared(f16[BM, BN]); atomic_add(x, A[0, 0]);", "atomic_add adds a register tile", "register(...)"),
    ("x = register(f16[BM, BN]); atomic_add(A[0, 0], x);", "atomic_add adds a register tile", None),
    ("x = register(f16[BM, BN]); y = register(f16[BM, BN]); atomic_add(x, y);", "into a window of a global", None),
    ("x = register(f16[BM, BN]); atomic_add(x, Q[0, 0]);", "atomics add into f32, f16, bf16", "f32 tensor"),
    ("x = register(i32[BM, BN]); atomic_add(x, A[0, 0]);", "it adds float tiles", "f32(x)"),
    ("x = register(f16[BM, BN]); atomic_add(x, A[0, 0], pad=0);", "atomic_add(...) has no argument 'pad'", None),
])
def test_misuse_is_a_located_error(body, message, hint):
    assert_located(body, message, hint)


def test_python_front_end_builds_the_same_ir():
    from python_atomic import colsum
    assert colsum.ir == kernel().ir


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("ty", ["f32", "f16", "bf16"])
def test_gpu_adds_atomically(backend, ty):
    import torch
    x, y0 = case(ty, seed=5)
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[ty]
    xt = torch.from_numpy(x).cuda()
    yt = torch.from_numpy(f64(y0)).to(dt).cuda()
    kernel()(xt, yt, TY=ty, backend=backend)
    check(x, y0, yt.float().cpu().numpy(), ty)
