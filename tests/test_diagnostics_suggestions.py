""""Did you mean": a misspelt name, function, dtype, keyword, layout, const, kernel or backend is
answered with the close matches, and dtype hints list every dtype of the table."""
from __future__ import annotations

from pathlib import Path

import pytest

import tilelang
from tilelang import TileError, loads
from tilelang.backends import get_backend
from tilelang.diagnostics import did_you_mean
from tilelang.frontend.python_frontend import parse_python_module
from tilelang.ir.dtypes import DTYPES, dtype_list
from tilelang.layout import infer_layouts

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
HEAD = "kernel k(A: f16[M, N], B: f16[M, N], s: f32, BM: const = 16, BN: const = 32)\n" \
       "    grid(cdiv(M, BM)) threads(64)\n{\n"


def _error(body: str) -> TileError:
    with pytest.raises(TileError) as e:
        loads(HEAD + body + "\n}\n", "k.tile")["k"].lower()
    return e.value


@pytest.mark.parametrize("body, message, suggestion", [
    ("tile = register(f16[BM, BN]); copy(A[0, 0], tiel);", "unknown name 'tiel'", "did you mean 'tile'?"),
    ("x = register(f16[BM, BN]); y = x * scale;", "unknown name 'scale'", None),
    ("x = register(f16[BM, BN]); y = exq(x);", "unknown function 'exq'", "did you mean 'exp'?"),
    ("x = register(f16[BM, BN]); y = rsqr(x);", "unknown function 'rsqr'", "did you mean 'rsqrt'?"),
    ("x = register(f16[BM, BN]); cpy(x, B[0, 0]);", "unknown function 'cpy'", "did you mean 'copy'?"),
    ("x = register(f61[BM, BN]);", "unknown dtype 'f61'", "did you mean 'f16'?"),
    ("x = register(fp32[BM, BN]);", "unknown dtype 'fp32'", "did you mean 'f32'?"),
    ("x = register(bfloat16[BM, BN]);", "unknown dtype 'bfloat16'", "did you mean 'bf16'? (numpy's bfloat16)"),
    ("x = register(f16[BM, BN], layot=row_major);", "has no argument 'layot'", "did you mean 'layout'?"),
    ("for i in pipelined(4, stage=2) { }", "has no argument 'stage'", "did you mean 'stages'?"),
])
def test_misspelt_names_get_a_suggestion(body, message, suggestion):
    e = _error(body)
    assert message in e.message and e.loc.line == 4, e.render()
    if suggestion:
        assert e.hint.startswith(suggestion), e.render()
    else:
        assert "did you mean" not in (e.hint or ""), e.render()


def test_dtype_hints_list_every_dtype_of_the_table():
    e = _error("x = register(half[BM, BN]);")
    listed = set()
    for part in e.hint.split("dtypes: ")[1].split(", "):
        if ".." in part:
            lo, hi = part.split("..")
            listed |= {f"{lo[0]}{b}" for b in range(int(lo[1:]), int(hi[1:]) + 1)}
        else:
            listed.add(part)
    assert listed == set(DTYPES), e.hint
    assert {"f16", "f32", "bf16", "f8e4m3", "f8e5m2", "u32", "i64", "i1", "u7"} <= listed
    assert dtype_list() in _error("x = register(u9[BM, BN]);").hint


def test_const_names_get_a_suggestion():
    k = loads(HEAD + "}\n", "k.tile")["k"]
    with pytest.raises(TileError, match="has no compile-time parameter 'bm'") as e:
        k.lower(bm=8)
    assert e.value.hint.startswith("did you mean 'BM'?") and "BM, BN" in e.value.hint
    with pytest.raises(TileError, match="no int const 'BNN' to tune") as e:
        k.with_candidates(BNN=[16, 32])
    assert e.value.hint.startswith("did you mean 'BN'?")


def test_kernel_names_get_a_suggestion():
    kernels = tilelang.load(KERNELS / "rmsnorm.tile")
    with pytest.raises(KeyError) as e:  # still a KeyError for code that catches that
        kernels["rmsnrom"]
    assert isinstance(e.value, TileError)
    assert "has no kernel 'rmsnrom'" in str(e.value) and "did you mean 'rmsnorm'?" in str(e.value)
    assert kernels.get("rmsnrom") is None and "rmsnorm" in kernels


def test_layout_and_backend_names_get_a_suggestion():
    text = HEAD.replace("threads(64)", "threads(32)") + "x = shared(f16[BM, BN], layout=row_majr);\n}\n"
    with pytest.raises(TileError, match="unknown layout") as e:
        infer_layouts(loads(text, "k.tile")["k"].lower())
    assert e.value.hint.startswith("did you mean 'row_major'?")
    with pytest.raises(TileError, match="unknown backend 'trition'") as e:
        get_backend("trition")
    assert e.value.hint.startswith("did you mean 'triton'?")


def test_python_kernels_get_the_same_suggestions():
    src = ("from tilelang import tile_kernel\n\n@tile_kernel\n"
           "def k(X: f32[M], BM: const = 32):\n"
           "    launch(grid=(cdiv(M, BM),), threads=32)\n"
           "    acc = register(f32[BM])\n"
           "    copy(X[block_id(0)], ac)\n")
    with pytest.raises(TileError) as e:
        parse_python_module(src, "k.py")
    assert (e.value.loc.file, e.value.loc.line) == ("k.py", 7) and e.value.hint.startswith("did you mean 'acc'?")


def test_did_you_mean_is_quiet_without_a_close_match():
    assert did_you_mean("zzz", ["copy", "gemm"], "see the docs") == "see the docs"
    assert did_you_mean("gem", ["copy", "gemm", "gemv"]) == "did you mean 'gemm' or 'gemv'?"
    assert did_you_mean("Bm", ["BM", "BN"]).startswith("did you mean 'BM'")
