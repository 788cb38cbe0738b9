"""One error per root cause: a statement that fails leaves its names "failed", and their later uses are
not reported again; independent mistakes are still all reported."""
from __future__ import annotations

import pytest

from tilelang import TileError
from tilelang.cli import main
from tilelang.diagnostics import TileErrors
from tilelang.frontend.python_frontend import parse_python_module
from tilelang.frontend.tile_parser import parse_module

HEAD = "kernel k(A: f16[M, N], B: f16[M, N], BM: const = 16, BN: const = 32) grid(cdiv(M, BM)) threads(64) {\n"


def _errors(body: str) -> list[TileError]:
    with pytest.raises(TileError) as e:
        parse_module(HEAD + body + "}\n", "k.tile")
    return list(e.value.errors) if isinstance(e.value, TileErrors) else [e.value]


@pytest.mark.parametrize("body, root, line", [
    # a tile whose definition fails, then used by four statements
    ("    x = register(f61[BM, BN]);\n    copy(A[0, 0], x);\n    y = x * 2;\n    z = exp(y) + x;\n"
     "    copy(z, B[0, 0]);\n", "unknown dtype 'f61'", 2),
    # a let whose value names something undefined, used in a loop and in a tile index
    ("    n = undefined + 1;\n    for i in range(n) {\n        t = register(f16[BM, BN]);\n"
     "        copy(A[i, n], t);\n    }\n", "unknown name 'undefined'", 2),
    # a reduction misused, its result flowing on
    ("    x = register(f16[BM, BN]);\n    s = sum(x);\n    y = x / s;\n    copy(y, B[0, 0]);\n",
     "sum(x, axis=...)", 3),
])
def test_a_mistake_is_reported_once_not_at_every_use(body, root, line):
    errors = _errors(body)
    assert len(errors) == 1, "\n".join(e.render() for e in errors)
    assert root in errors[0].message and errors[0].loc.line == line


def test_independent_mistakes_are_all_reported():
    errors = _errors("    x = register(f61[BM, BN]);\n    y = x * 2;\n    w = register(f16[BM, BN]);\n"
                     "    copy(w, C[0, 0]);\n    v = exq(w);\n")
    assert [(e.loc.line, e.message) for e in errors] == [
        (2, "unknown dtype 'f61'"), (5, "unknown name 'C'"), (6, "unknown function 'exq'")]


def test_python_kernels_report_one_error_per_root_cause():
    src = ("@tile_kernel\ndef k(X: f32[M], Y: f32[M], BM: const = 32):\n"
           "    launch(grid=(cdiv(M, BM),), threads=32)\n"
           "    x = register(f23[BM])\n"
           "    copy(X[block_id(0)], x)\n"
           "    y = x * 2\n"
           "    copy(y, Y[block_id(0)])\n")
    with pytest.raises(TileError) as e:
        parse_python_module(src, "k.py")
    assert not isinstance(e.value, TileErrors) and e.value.loc.line == 4 and "f23" in e.value.message


def test_check_counts_root_causes(tmp_path, capsys):
    (tmp_path / "k.tile").write_text(HEAD + "    x = register(f61[BM, BN]);\n    copy(A[0, 0], x);\n"
                                             "    copy(x, B[0, 0]);\n}\n")
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "1 error in 1 file" in err and err.count(": error:") == 1
