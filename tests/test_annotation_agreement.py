"""An author's layout annotation gets one verdict everywhere.

A matrix of annotations (accepted and rejected) × every place that plans layouts: `tilelang check`
and `show --layouts` for sm_80 and sm_90a, and the CUDA, Triton and TVM (cuda and llvm) backends.
Plans may differ per target (mma.sync on sm_80, wgmma on sm_90a); the verdict may not: all accept,
or all reject with the same located error. An accepted annotation is what the CUDA code does, and a
layout wgmma can read keeps wgmma on.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from pathlib import Path

import pytest

import tilelang
from tilelang.backends import cuda, triton, tvm
from tilelang.cli import check_file, main as cli
from tilelang.diagnostics import TileError
from tilelang.layout import infer_layouts
from tilelang.layout.plan import GemmPlan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan_check import SMALL_GEMM, assert_cuda_follows_plan  # noqa: E402

GEMM = SMALL_GEMM
STORE = "copy(acc, C[block_id(0), block_id(1)]);"

# name: (line replaced, replacement, gemm instruction on sm_80 and on sm_90a; None where rejected)
CASES = {
    "acc=mma_c": ("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=mma_c);", ("mma", "wgmma")),
    "a=gmma": ("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=gmma);", ("mma", "wgmma")),
    "a=swizzle(2,3,3)": ("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=swizzle(2, 3, 3));",
                         ("mma", "wgmma")),
    "a=padded(8)": ("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=padded(8));", ("mma", "mma")),
    "a=row_major": ("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=row_major);", ("mma", "mma")),
    "a=col_major": ("a = shared(f16[64, 32]);", "a = shared(f16[64, 32], layout=col_major);", ("fma", "fma")),
    "f32 16x16 swizzle(3,3,3)": ("a = shared(f16[64, 32]);",
                                 "a = shared(f16[64, 32]);\n    t = shared(f32[16, 16], layout=swizzle(3, 3, 3));",
                                 ("mma", "wgmma")),
    "y=spatial*local": (STORE, "y = register(f32[64, 64], layout=spatial(16, 8) * local(4, 8));\n"
                               "    y = acc * 2.0;\n    copy(y, C[block_id(0), block_id(1)]);", ("mma", "wgmma")),
    # rejected
    "shared b=mma_b": ("b = shared(f16[32, 64]);", "b = shared(f16[32, 64], layout=mma_b);", None),
    "acc=spatial(4,8)": ("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=spatial(4, 8));", None),
    "acc=mma_a": ("acc = register(f32[64, 64]);", "acc = register(f32[64, 64], layout=mma_a);", None),
    "y over 64x128": (STORE, "y = register(f32[64, 64], layout=local(2, 2) * spatial(4, 32) * local(8, 2));\n"
                             "    y = acc * 2.0;\n    copy(y, C[block_id(0), block_id(1)]);", None),
    "f32 10x10 swizzle(3,3,3)": ("a = shared(f16[64, 32]);",
                                 "a = shared(f16[64, 32]);\n    t = shared(f32[10, 10], layout=swizzle(3, 3, 3));",
                                 None),
    "256 threads on 128": ("acc = register(f32[64, 64]);",
                           "acc = register(f32[64, 64]);\n    u = register(f32[64, 64], layout=spatial(16, 16) * local(4, 4));",
                           None),
}
TARGETS = ("sm_80", "sm_90a")


def _rule(line_col: str, message: str) -> str:
    """The located rule an error names. A trailing layout in parentheses is what this target's plan
    needs (mma.sync's warp grid on sm_80 and in TVM, which has no wgmma; wgmma's on sm_90a), so it
    may differ per plan while the verdict may not."""
    return f"{line_col} {re.sub(r' [(][^()]*(?:spatial|local)[(].*[)]$', '', message)}"


def _verdict(fn) -> str:
    """"ok", or the first error as `line:col message` (a compiler bug fails the test instead)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TVM llvm says it ignores annotations; the verdict is what counts
            errors = fn()
    except TileError as e:
        errors = [e]
    if not errors:
        return "ok"
    e = errors[0]
    assert "internal compiler error" not in e.message, e.render()
    return _rule(f"{e.loc.line}:{e.loc.col}", e.message)


def _cli_verdict(argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli(argv)
    if rc == 0:
        return "ok"
    first = err.getvalue().splitlines()[0]  # "file:LINE:COL: error: message"
    _, line, col, rest = first.split(":", 3)
    return _rule(f"{line}:{col}", rest.split("error: ", 1)[1])


@pytest.fixture(params=list(CASES), scope="module")
def case(request, tmp_path_factory):
    old, new, kinds = CASES[request.param]
    assert old in GEMM
    path = tmp_path_factory.mktemp("agree") / "k.tile"
    path.write_text(GEMM.replace(old, new))
    return path, kinds


def test_one_verdict_everywhere(case):
    path, kinds = case

    def tk():
        return tilelang.load(path)["k"].lower()

    verdicts = {}
    for t in TARGETS:
        verdicts[f"check {t}"] = _verdict(lambda: check_file(path, t))
        verdicts[f"show {t}"] = _cli_verdict(["show", str(path), "--layouts", "--target", t])
        verdicts[f"plan {t}"] = _verdict(lambda: infer_layouts(tk(), t) and None)
        verdicts[f"cuda {t}"] = _verdict(lambda: cuda.generate(tk(), t) and None)
        verdicts[f"tvm cuda {t}"] = _verdict(lambda: tvm.generate(tk(), f"cuda:{t}") and None)
    verdicts["triton"] = _verdict(lambda: triton.generate(tk()) and None)
    verdicts["tvm llvm"] = _verdict(lambda: tvm.generate(tk(), "llvm") and None)
    assert len(set(verdicts.values())) == 1, "\n".join(f"{k:>14}: {v}" for k, v in verdicts.items())
    assert (verdicts["triton"] == "ok") == (kinds is not None), verdicts["triton"]
    if kinds is not None:
        for t, kind in zip(TARGETS, kinds):
            plan = infer_layouts(tk(), t)
            assert [p.kind for p in plan.stmts if isinstance(p, GemmPlan)] == [kind]
            assert_cuda_follows_plan(tk(), t)
