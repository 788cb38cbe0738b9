"""The .tile grammar: what parses and what it builds (how syntax errors read: test_diagnostics_syntax.py)."""
from __future__ import annotations

import pytest

from tilelang import TileError
from tilelang.frontend.tile_parser import parse_module
from tilelang.ir import nodes as N
from tilelang.ir.printer import kernel_str

SCALE = """
# scale rows
kernel scale(X: T[M, N], Y: T[M, N], s: f32, T: dtype = f16, BM: const = 16, BN: const = 32)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(64)
{
    x = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x, pad=-inf);
    y = where(x > 0, x * s, -x ** 2.0 / 1e-1);
    copy(y, Y[block_id(0), block_id(1)]);
}
"""


def test_parses_and_builds_ir():
    (k,) = parse_module(SCALE, "scale.tile").kernels
    assert k.name == "scale"
    assert [p.name for p in k.params] == ["X", "Y", "s", "T", "BM", "BN"]
    assert k.param("T") == N.ConstParam("T", "f16", "dtype")
    assert k.tensors[0].dims == ("M", "N")
    copy = k.body[1]
    assert isinstance(copy, N.Copy) and isinstance(copy.src, N.GlobalRef)
    assert copy.pad == N.Unary("neg", N.Const(float("inf")))


def test_precedence_follows_python():
    (k,) = parse_module(SCALE).kernels
    y = k.body[2].value
    assert isinstance(y, N.Where)
    # -x ** 2.0 / 1e-1  ==  (-(x ** 2.0)) / 0.1
    assert y.b == N.BinOp("div", N.Unary("neg", N.BinOp("pow", N.TileRef("x"), N.Const(2.0))), N.Const(0.1))


def test_locations_point_at_source():
    (k,) = parse_module(SCALE, "scale.tile").kernels
    copy = k.body[1]
    assert (copy.loc.file, copy.loc.line, copy.loc.col) == ("scale.tile", 7, 5)
    assert "copy(X" in copy.loc.source_line


def test_printed_kernel_parses_back_to_same_ir():
    (k,) = parse_module(SCALE).kernels
    (again,) = parse_module(kernel_str(k)).kernels
    assert again == k


def test_several_kernels_errors_reported_together():
    text = ("kernel a(A: f16[M]) grid(1) threads(32) { x = y; }\n"
            "kernel b(A: f16[M]) grid(1) threads(32) { z = w; }\n")
    with pytest.raises(TileError) as e:
        parse_module(text, "two.tile")
    msg = str(e.value)
    assert "two.tile:1:" in msg and "unknown name 'y'" in msg
    assert "two.tile:2:" in msg and "unknown name 'w'" in msg


TUNABLE = """
kernel copyrows(X: f32[M, N], Y: f32[M, N], BM: const[1, 2 * 2, 1 << 4] = 4, BN: const[32] = 32)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(x, Y[block_id(0), block_id(1)]);
}
"""


def test_const_candidates_fold_print_and_parse_back():
    (k,) = parse_module(TUNABLE).kernels
    assert k.param("BM") == N.ConstParam("BM", 4, "int", (1, 4, 16))
    assert k.param("BN").candidates == (32,)
    assert "BM: const[1, 4, 16] = 4, BN: const[32] = 32" in kernel_str(k)
    assert parse_module(kernel_str(k)).kernels == (k,)


@pytest.mark.parametrize("param, at, expect", [
    ("BM: const[1, 2 * 2, 1 << 4] = 8", "8,", "the default 8 of const 'BM' is not one of its candidates"),
    ("BM: const[1, 2 * 2, 1 << 4]", "BM", "const 'BM' has candidates but no default"),
    ("BM: const[1, 4, 1] = 4", "1] = 4", "candidate 1 of const 'BM' is listed twice"),
    ("BM: const[1, N, 16] = 1", "N, 16", "a candidate of const 'BM' must be an integer literal"),
    ("BM: dtype[f16] = f16", "dtype[", "dtype parameter 'BM' takes no candidate list"),
])
def test_bad_candidate_lists_are_located(param, at, expect):
    text = TUNABLE.replace("BM: const[1, 2 * 2, 1 << 4] = 4", param)
    with pytest.raises(TileError) as e:
        parse_module(text, "t.tile")
    line = text.splitlines()[1]
    assert expect in e.value.message and (e.value.loc.line, e.value.loc.col) == (2, line.index(at) + 1)
