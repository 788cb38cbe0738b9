"""argmax: the expression `argmax(x, axis=a)` (passes/expand.py) and the library kernel `argmax`
(kernels/sampling.tile) that greedy decoding runs: indices as numpy's argmax gives them (first of
equal maxima; NaN above every number, the first NaN wins), across tiles of a long vocabulary."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tilelang
from kernel_refs import load, poisoned, rand
from test_verifier_errors import assert_located

AXIS0 = """
kernel colmax(X: T[M, N], I: i32[1, N], T: dtype = f16, BM: const = 16, BN: const = 8)
    grid(cdiv(N, BN)) threads(32)
{
    x = register(T[BM, BN]);
    copy(X[0, block_id(0)], x, pad=-inf);
    i = argmax(x, axis=0);
    copy(i, I[0, block_id(0)]);
}
"""


def _rows(rng, b, v, dt):
    x = rand(rng, (b, v), dt)
    if b >= 4:
        x[0, [v // 3, v - 1]] = 7.0  # a tie across tiles
        x[1, [v - 2, v // 2]] = np.nan
        x[2, [v - 1, 0]] = np.inf
        x[3, :] = -np.inf
    return x


@pytest.mark.parametrize("dt", ["f16", "bf16", "f32"])
@pytest.mark.parametrize("b,v,bv", [(5, 1000, 128), (4, 333, 1024), (1, 1, 1024), (6, 4099, 1024)])
def test_kernel_matches_numpy(dt, b, v, bv):
    rng = np.random.default_rng(b * v)
    x = _rows(rng, b, v, dt)
    idx, val = np.full((b, 1), -7, np.int64), poisoned((b, 1), "f32")
    load("sampling")["argmax"](x, idx, val, BV=bv)
    want = np.argmax(x.astype(np.float32), axis=1)
    assert np.array_equal(idx[:, 0], want)
    assert np.array_equal(val[:, 0], x.astype(np.float32)[np.arange(b), want], equal_nan=True)


def test_kernel_i32_ids_over_a_vocabulary_of_128k():
    rng = np.random.default_rng(0)
    x = rand(rng, (2, 128256), "f32")
    x[1, 128255] = 50.0  # the last tile's last column
    idx, val = np.full((2, 1), -7, np.int32), poisoned((2, 1), "f32")
    load("sampling")["argmax"](x, idx, val, BV=4096)
    assert idx[:, 0].tolist() == np.argmax(x, axis=1).tolist() and idx[1, 0] == 128255


def _columns(dt: str):
    """A column argmax kernel and its input: integer ties (the first row wins), or floats with a NaN;
    rows past M are padded (-inf, or -1000 for integers) and never chosen."""
    rng = np.random.default_rng(1)
    text = AXIS0.replace("pad=-inf", "pad=-1000") if dt == "i32" else AXIS0
    x = rng.integers(-3, 4, (13, 21)).astype(np.int32) if dt == "i32" else rand(rng, (13, 21), dt)
    if dt != "i32":
        x[[4, 9], 3] = np.nan
    return tilelang.loads(text, "colmax.tile")["colmax"], x


@pytest.mark.parametrize("dt", ["f16", "i32"])
def test_expression_along_axis_0(dt):
    k, x = _columns(dt)
    got = np.full((1, 21), -7, np.int32)
    k(x, got)
    assert np.array_equal(got[0], np.argmax(x, axis=0))


@pytest.mark.parametrize("dt", ["f16", "i32"])
def test_expression_on_tvm_llvm(dt):
    pytest.importorskip("tvm")
    k, x = _columns(dt)
    got = np.full((1, 21), -7, np.int32)
    k(x, got, backend="tvm", target="llvm")
    assert np.array_equal(got[0], np.argmax(x, axis=0))


def test_expression_types_as_i32():
    tk = tilelang.loads(AXIS0, "colmax.tile")["colmax"].lower()
    assert tk.tiles["i"].dtype.name == "i32" and tk.tiles["i"].shape == (1, 8)


@pytest.mark.parametrize("body, message, hint", [
    ("x = register(f16[BM, BN]); i = argmax(x);", "argmax(x, axis=...)", "argmax(x, axis=1)"),
    ("x = register(f16[BM, BN]); i = argmax(x, axis=2);", "axis 2 is out of range", None),
    ("x = register(f16[BM, BN]); i = argmax(x > 0, axis=1);", "cannot argmax a bool tile", None),
    ("i = argmax(s, axis=0);", "argmax(...) takes a tile, got a scalar", None),
    ("x = register(f16[BM, BN]); i = argmax(x, axis=1); y = x + i;", "different dtypes: f16 and i32", None),
])
def test_misuse_is_a_located_error(body, message, hint):
    assert_located(body, message, hint)


@pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")
@pytest.mark.parametrize("dt", ["f16", "i32"])
def test_expression_on_the_cuda_emulator(dt):
    from test_backend_cuda_codegen import _emulate_and_compare
    k, x = _columns(dt)
    _emulate_and_compare(k, [x, np.full((1, 21), -7, np.int32)], {}, "f16")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_matches_torch_argmax_on_a_128k_vocabulary(backend):
    import torch
    torch.manual_seed(0)
    x = torch.randn(4, 128256, device="cuda")
    x[1, 70000] = x[1, 3] = 100.0  # a tie: the first
    x[2, 99999] = float("nan")
    ids = torch.full((4, 1), -7, dtype=torch.int64, device="cuda")
    val = torch.empty(4, 1, device="cuda")
    load("sampling")["argmax"](x, ids, val, backend=backend)
    assert ids[:, 0].tolist() == x.argmax(dim=-1).tolist() and ids[1, 0] == 3 and ids[2, 0] == 99999
