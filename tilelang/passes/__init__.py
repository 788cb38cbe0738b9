"""The pass pipeline from built IR to a typed, backend-ready kernel.

    resolve_consts -> specialize -> infer (shapes, dtypes) -> expand (derived forms: argmax)
    -> verify (fits the launch)

The layout pass (`tilelang.layout.infer`) runs on the result where a backend asks for it.
An exception other than a TileError escaping a pass is a compiler bug: it becomes an
`InternalError` naming the pass and the kernel.
"""
from __future__ import annotations

from typing import Mapping

from ..diagnostics import internal_errors
from ..ir.nodes import Kernel
from .expand import expand
from .infer import TypedKernel, infer
from .specialize import resolve_consts, specialize
from .verify import verify


def lower(kernel: Kernel, consts: Mapping[str, object] | None = None) -> TypedKernel:
    """Run the pipeline; `consts` override the kernel's compile-time defaults."""
    with internal_errors("pass 'resolve_consts'", kernel.name, kernel.loc):
        values = resolve_consts(kernel, consts)
    with internal_errors("pass 'specialize'", kernel.name, kernel.loc):
        specialized = specialize(kernel, values)
    with internal_errors("pass 'infer'", kernel.name, kernel.loc):
        typed = infer(specialized, values)
    with internal_errors("pass 'expand'", kernel.name, kernel.loc):
        typed = expand(typed)
    with internal_errors("pass 'verify'", kernel.name, kernel.loc):
        return verify(typed)


__all__ = ["lower", "TypedKernel", "resolve_consts", "specialize", "infer", "expand", "verify"]
