"""The refusals the backend tests expect: which library kernel each backend declines, and why.

A backend that cannot take a kernel says so with a TileError.  The backend tests lower every library
kernel through `refused(...)`: a pair listed in EXPECTED must be refused with a message containing its
reason (a refusal that stops happening fails, so the entry goes when the backend learns the construct),
and a TileError from any pair not listed fails the test as the regression it is.  Nothing is turned
into an xfail or a skip by matching an error message.

Keys are (library kernel as "file:name", backend), library kernels only: a kernel written to test one
construct is there to be taken.
"""
from __future__ import annotations

from typing import Callable

import pytest

from tilelang import TileError

BACKENDS = ("triton", "tvm", "cuda")

EXPECTED: dict[tuple[str, str], str] = {
    # weights stored in the plan's packed order: only the CUDA backend (and the interpreter) read them
    ("gemm_wNa16:wNa16_packed", "tvm"): "only in the plain [N, K] packing",
    ("gemm_wNa16:wNa16_packed_zp", "tvm"): "only in the plain [N, K] packing",
    ("gemm_wNa16:wNa16_packed", "triton"): "only in the plain [N, K] packing",
    ("gemm_wNa16:wNa16_packed_zp", "triton"): "only in the plain [N, K] packing",
}


def refused(kernel: str, backend: str, lower: Callable[[], object],
            expected: dict[tuple[str, str], str] = EXPECTED) -> bool:
    """Run `lower` (the backend taking `kernel`): False when it succeeds as it must, True when it refuses as
    `expected` says it must (the caller's test ends there); any other outcome fails the test."""
    reason = expected.get((kernel, backend))
    try:
        lower()
    except TileError as e:
        if reason is None:
            pytest.fail(f"the {backend} backend refused {kernel}, which tests/refusals.py does not expect:\n"
                        f"{e.render()}")
        if reason not in e.message:
            pytest.fail(f"the {backend} backend refused {kernel} with {e.message!r}; tests/refusals.py expects "
                        f"a refusal saying {reason!r}")
        return True
    if reason is not None:
        pytest.fail(f"the {backend} backend no longer refuses {kernel} ({reason!r}): remove the entry from "
                    "tests/refusals.py")
    return False
