"""test_atomic_add.py's COLSUM kernel spelled with @tile_kernel (parsed, never run)."""
from __future__ import annotations

from tilelang import tile_kernel
from tilelang.lang import *  # noqa: F403


@tile_kernel
def colsum(X: T[M, N], Y: TY[1, N], T: dtype = f16, TY: dtype = f32, BM: const = 16, BN: const = 32):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=64)
    x = register(f32[BM, BN])
    copy(X[block_id(1), block_id(0)], x)
    s = sum(x, axis=0)
    atomic_add(s, Y[0, block_id(0)])
