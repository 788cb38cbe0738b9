"""Split-K linear layers for decode rows (kernels/splitk.tile), behind one entry point.

A decode projection `Y[M, N] = X[M, K] @ W^T` with M <= 16 streams W once; with few outputs
(N / BN blocks, e.g. 64 for Llama-1B's down projection, K = 8192, N = 2048) most SMs sit idle
however fast each block reads. Splitting K over NS blocks per output tile fills the GPU; the NS
f32 partial sums are then added in a fixed order by a second kernel that applies the epilogue, so
the result depends on NS alone and repeats bit for bit (greedy decoding compares tokens exactly).

* `plan(m, n, k, device=..., quantized=...)` decides NS: 1 (do not split) when the output blocks
  already give every SM `SPLIT_BELOW` blocks or K is too short, else enough splits for
  `TARGET_BLOCKS_PER_SM` blocks per SM, each split keeping at least `MIN_TILES` K tiles.
* `linear(x, w, y, ...)` runs the two kernels for a given (or planned) NS, dense or quantized W,
  with a bias and/or residual epilogue; `launch` is how a kernel is run (the models pass their
  counting `Library`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np

from . import kernels as library

SPLIT_BELOW = 2
"""Split only when the output blocks number fewer than this many per SM (one wave of 128-thread
blocks, one per SM, keeps too few loads in flight to reach the memory bandwidth)."""
TARGET_BLOCKS_PER_SM = 4
"""How many blocks per SM a split aims for."""
MIN_TILES = 2
"""The fewest K tiles a split keeps: fewer, and the pipeline's prologue and the partial's store dominate."""
MAX_ROWS = 16
"""Decode rows: the split kernels hold at most one 16-row tile of X per block in the models' use."""

Launch = Callable[..., Any]


def _kernel_for(m: int, quantized: bool, zero_point: bool = False) -> str:
    """The partial-sum kernel for m rows: gemv_wNa16[_zp]_splitk (one row of X per block) for one row
    of quantized W, gemm_wNa16[_zp]_splitk (16 rows, tensor cores) for more, gemv_splitk for dense W."""
    if not quantized:
        return "gemv_splitk"
    return ("gemv_wNa16" if m == 1 else "gemm_wNa16") + ("_zp" if zero_point else "") + "_splitk"


def _default(name: str, const: str) -> int:
    """A const's default in the library's kernel: the tile the plan counts blocks with."""
    return next(c.default for c in library.load(name).ir.consts if c.name == const)


@lru_cache(maxsize=None)
def sm_count(device) -> int | None:
    """The SMs of a CUDA device (None for anything else: there is no GPU to fill)."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch
    return torch.cuda.get_device_properties(device).multi_processor_count


@lru_cache(maxsize=None)
def plan(m: int, n: int, k: int, *, sms: int | None, quantized: bool = False) -> int:
    """NS, the number of K splits for an [m, k] x [n, k]^T product on `sms` SMs (None: 1); decided once
    per shape (the models ask at every decode step)."""
    if sms is None or m > MAX_ROWS:
        return 1
    name = _kernel_for(m, quantized)
    bm = 1 if name == "gemv_wNa16_splitk" else _default(name, "BM")
    blocks = -(-n // _default(name, "BN")) * -(-m // bm)
    if blocks >= SPLIT_BELOW * sms:
        return 1
    tiles = -(-k // _default(name, "BK"))
    return max(1, min(-(-TARGET_BLOCKS_PER_SM * sms // blocks), tiles // MIN_TILES))


def _run_library(name: str, *args, **consts) -> None:
    library.load(name)(*args, **consts)


def _workspace(like, shape: tuple[int, ...]):
    """An uninitialized f32 array of `shape` where `like` lives (every element is written)."""
    if isinstance(like, np.ndarray):
        return np.empty(shape, np.float32)
    import torch
    return torch.empty(shape, dtype=torch.float32, device=like.device)


def linear(x, w, y, *, scales=None, zeros=None, TW: str = "u4", G: int | None = None, bias=None, residual=None,
           splits: int | None = None, launch: Launch = _run_library) -> int:
    """y = [residual +] x @ W^T [+ bias] with K split `splits` ways (None: `plan` decides), W dense
    [N, K] or, with `scales` [N, cdiv(K, G)] (and `zeros`, the same shape), TW-bit codes packed along K
    (gemm_wNa16.tile's format). `residual` may be `y`. Returns the number of splits run."""
    (m, k), n = x.shape, y.shape[1]
    quantized = scales is not None
    if splits is None:
        splits = plan(m, n, k, sms=sm_count(getattr(x, "device", None)), quantized=quantized)
    part = _workspace(x, (splits, m, n))
    name = _kernel_for(m, quantized, zeros is not None)
    if quantized:
        launch(name, x, w, scales, *([zeros] if zeros is not None else []), part, TW=TW, G=G if G is not None else k)
    else:
        launch(name, x, w, part)
    epilogue = [bias] if bias is not None else []
    epilogue += [residual] if residual is not None else []
    suffix = ("_bias" if bias is not None else "") + ("_residual" if residual is not None else "")
    launch("splitk_sum" + suffix, part, *epilogue, y)
    return splits
