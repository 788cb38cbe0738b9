"""Every statement kind of the IR is handled everywhere it must be: one layout rule, one case in the
reference interpreter, one emitter in every backend. A kind added to `nodes.Stmt` without them fails
here, not later as a silently skipped statement."""
from __future__ import annotations

import pytest

from tilelang.diagnostics import InternalError
from tilelang.ir import nodes as N
from tilelang.ir.interpreter import Interpreter
from tilelang.ir.visit import STMT_KINDS, StmtVisitor
from tilelang.layout import infer  # noqa: F401 - registers the layout rules
from tilelang.layout.rules import ORDER, RULES
from tilelang.backends.cuda.codegen import KernelGen as CudaKernelGen
from tilelang.backends.triton.lower import _Lowering as TritonLowering
from tilelang.backends.tvm.lower_cuda import CudaLowering as TvmCudaLowering
from tilelang.backends.tvm.lower_llvm import LlvmLowering as TvmLlvmLowering

VISITORS = [Interpreter, TritonLowering, CudaKernelGen, TvmCudaLowering, TvmLlvmLowering]


def test_statement_kinds_come_from_the_stmt_union():
    assert set(STMT_KINDS) == {N.Let, N.Alloc, N.Assign, N.Copy, N.Gemm, N.Dequant, N.AtomicAdd, N.For, N.ReadScalar,
                               N.If}


def test_every_kind_has_exactly_one_layout_rule_in_the_fixed_order():
    assert sorted(k.__name__ for k in ORDER) == sorted(k.__name__ for k in STMT_KINDS)
    assert set(RULES) == set(STMT_KINDS)


@pytest.mark.parametrize("visitor", VISITORS, ids=lambda v: v.__name__)
def test_every_kind_has_a_visit_method(visitor):
    assert issubclass(visitor, StmtVisitor)
    missing = [k.__name__ for k in STMT_KINDS if not callable(getattr(visitor, "visit_" + k.__name__, None))]
    assert not missing, f"{visitor.__name__} ({visitor.where}) has no visit method for {missing}"


def test_a_missing_visit_method_is_a_compiler_bug_not_a_skip():
    class Partial(StmtVisitor):
        where = "a test backend"

    with pytest.raises(InternalError, match="internal compiler error in a test backend.*no emitter for .*Let"):
        Partial().visit(N.Let("x", N.Const(1)))
