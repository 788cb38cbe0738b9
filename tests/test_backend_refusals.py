"""tests/refusals.py: the backend tests' strict list of expected refusals, and what `refused` enforces."""
from __future__ import annotations

from pathlib import Path

import pytest

import tilelang
from refusals import BACKENDS, EXPECTED, refused
from tilelang import TileError

KERNELS = Path(__file__).resolve().parents[1] / "kernels"


def test_every_entry_names_a_library_kernel_and_a_backend():
    for (kernel, backend), reason in EXPECTED.items():
        file, _, name = kernel.partition(":")
        assert backend in BACKENDS, (kernel, backend)
        assert (KERNELS / f"{file}.tile").exists() and name in tilelang.load(KERNELS / f"{file}.tile"), kernel
        assert reason.strip(), (kernel, backend)


def _refuse(message: str):
    def lower():
        raise TileError(message)
    return lower


TABLE = {("gemm:gemm", "cuda"): "cannot lower Foo statements"}


def test_a_kernel_that_lowers_goes_on():
    assert refused("gemm:gemm", "tvm", lambda: None, TABLE) is False


def test_an_expected_refusal_ends_the_test():
    assert refused("gemm:gemm", "cuda", _refuse("the CUDA backend cannot lower Foo statements"), TABLE) is True


def test_an_unexpected_refusal_fails():
    with pytest.raises(pytest.fail.Exception, match="refused gemm:gemm, which tests/refusals.py does not expect"):
        refused("gemm:gemm", "tvm", _refuse("the TVM backend cannot lower Foo statements"), TABLE)


def test_a_refusal_for_another_reason_fails():
    with pytest.raises(pytest.fail.Exception, match="expects a refusal saying 'cannot lower Foo statements'"):
        refused("gemm:gemm", "cuda", _refuse("the CUDA backend does not know shared layout 'x'"), TABLE)


def test_a_refusal_that_stopped_happening_fails():
    with pytest.raises(pytest.fail.Exception, match="no longer refuses gemm:gemm"):
        refused("gemm:gemm", "cuda", lambda: None, TABLE)


def test_other_exceptions_are_not_refusals():
    with pytest.raises(ZeroDivisionError):
        refused("gemm:gemm", "cuda", lambda: 1 // 0, TABLE)
