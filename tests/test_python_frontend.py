"""@tile_kernel: Python syntax builds the same IR as .tile text, and misuse is located in the .py file."""
from __future__ import annotations

import pytest

from tilelang import TileError, loads, tile_kernel
from tilelang.frontend.python_frontend import parse_python_source
from tilelang.frontend.builder import build_kernel
from tilelang.lang import *  # noqa: F403


@tile_kernel
def scale(X: T[M, N], Y: T[M, N], s: f32, T: dtype = f16, BM: const = 16, BN: const = 32):
    """Docstrings are allowed."""
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=64)
    x = register(T[BM, BN])
    copy(X[block_id(0), block_id(1)], x, pad=-inf)
    y = where(x > 0, x * s, -x ** 2.0 / 1e-1)
    y += x
    copy(y, Y[block_id(0), block_id(1)])


SCALE = """
kernel scale(X: T[M, N], Y: T[M, N], s: f32, T: dtype = f16, BM: const = 16, BN: const = 32)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(64)
{
    x = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x, pad=-inf);
    y = where(x > 0, x * s, -x ** 2.0 / 1e-1);
    y = y + x;
    copy(y, Y[block_id(0), block_id(1)]);
}
"""


def test_same_ir_as_tile_text():
    assert scale.ir == loads(SCALE)["scale"].ir


def test_locations_are_in_the_python_file():
    copy_stmt = scale.ir.body[1]
    assert copy_stmt.loc.file.endswith("test_python_frontend.py")
    assert "copy(X[block_id(0)" in copy_stmt.loc.source_line


@pytest.mark.parametrize("src, message", [
    ("def k(A: f16[M]):\n    x = 1\n", "must start with launch"),
    ("def k(A: f16[M]):\n    launch(grid=(1,), threads=32)\n    while True:\n        pass\n", "While statements"),
    ("def k(A: f16[M]):\n    launch(grid=(1,), threads=32)\n    x = 1 if True else 2\n", "IfExp expressions"),
    ("def k(A: f16[M]):\n    launch(grid=(1,), threads=32)\n    x = (1 < 2) and (2 < 3)\n", "'and'/'or' are not tile operators"),
    ("def k(A: f16[M]):\n    launch(grid=(1,), threads=32)\n    copy(A[0:4:2], y)\n", "a window slice is `start:` or `start:stop`"),
    ("def k(A: f16[M]):\n    launch(grid=(1,), threads=32)\n    copy(A[:4], y)\n", "a window slice is `start:` or `start:stop`"),
    ("def k(A):\n    launch(grid=(1,), threads=32)\n", "needs a type"),
])
def test_unsupported_python_is_a_located_error(src, message):
    with pytest.raises(TileError) as e:
        for sk in parse_python_source(src, "k.py"):
            build_kernel(sk)
    assert message in e.value.message
    assert e.value.loc.file == "k.py" and e.value.loc.line >= 1


def test_helpers_raise_outside_kernels():
    with pytest.raises(TileError, match="only means something inside a @tile_kernel"):
        copy(1, 2)


@tile_kernel
def copyrows(X: f32[M, N], Y: f32[M, N], BM: const[1, 2 * 2, 1 << 4] = 4, BN: const[32] = 32):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=32)
    x = register(f32[BM, BN])
    copy(X[block_id(0), block_id(1)], x)
    copy(x, Y[block_id(0), block_id(1)])


COPYROWS = """
kernel copyrows(X: f32[M, N], Y: f32[M, N], BM: const[1, 4, 16] = 4, BN: const[32] = 32)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(x, Y[block_id(0), block_id(1)]);
}
"""


def test_const_candidates_build_the_same_ir_as_tile_text():
    assert copyrows.ir == loads(COPYROWS)["copyrows"].ir
    assert copyrows.ir.param("BM").candidates == (1, 4, 16)


def test_candidate_default_outside_the_list_is_located_in_the_python_file():
    src = "def k(X: f32[M], B: const[16, 32] = 64):\n    launch(grid=(1,), threads=32)\n"
    (sk,) = parse_python_source(src, "k.py")
    with pytest.raises(TileError) as e:
        build_kernel(sk)
    assert "not one of its candidates" in e.value.message and str(e.value.loc) == "k.py:1:37"
