"""The pass pipeline from built IR to a typed, backend-ready kernel.

    resolve_consts -> specialize -> infer (shapes, dtypes) -> verify (fits the launch)

The layout pass (`tilelang.layout.infer`) runs on the result where a backend asks for it.
"""
from __future__ import annotations

from typing import Mapping

from ..ir.nodes import Kernel
from .infer import TypedKernel, infer
from .specialize import resolve_consts, specialize
from .verify import verify


def lower(kernel: Kernel, consts: Mapping[str, object] | None = None) -> TypedKernel:
    """Run the pipeline; `consts` override the kernel's compile-time defaults."""
    values = resolve_consts(kernel, consts)
    return verify(infer(specialize(kernel, values), values))


__all__ = ["lower", "TypedKernel", "resolve_consts", "specialize", "infer", "verify"]
