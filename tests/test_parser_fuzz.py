"""Random and mutated .tile text: the front end either builds IR or raises TileError, nothing else
(an InternalError, the compiler's own bug, fails the test too)."""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tilelang import InternalError, TileError
from tilelang.frontend.tile_parser import parse_module
from tilelang.passes import lower
from test_lang_scalars import LANG

KERNELS = sorted(Path(__file__).resolve().parents[1].joinpath("kernels").glob("*.tile"))
SEEDS = [p.read_text() for p in KERNELS]
TOKENS = ["kernel", "grid", "threads", "for", "in", "range", "pipelined", "copy", "gemm", "dequant", "shared",
          "register", "const", "dtype", "f16", "u4", "(", ")", "{", "}", "[", "]", ",", ";", "=", "+", "*",
          "**", "//", "<", "&", "-", "~", "0", "1", "64", "1e-6", "x", "A", "M", "axis", "sum", "max", "argmax",
          "atomic_add", "#", "\n"]
# scalars read from tensors, windows at element offsets, if/else (tests/test_lang_scalars.py)
TOKENS += ["if", "else", ":", "A[x:", "A[x:M", "n = A[x];", "else if"]
SEEDS.append(LANG)


def _front_end(text: str) -> None:
    try:
        module = parse_module(text, "fuzz.tile")
        for k in module.kernels:
            lower(k)
    except TileError as e:
        assert not isinstance(e, InternalError), e.render()
        assert e.render()  # renders without raising


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_token_soup(text):
    _front_end(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_library_kernels(seed, data):
    text = seed
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        n = data.draw(st.integers(1, 8))
        piece = data.draw(st.sampled_from(TOKENS))
        if op == "delete":
            text = text[:pos] + text[pos + n:]
        elif op == "insert":
            text = text[:pos] + piece + text[pos:]
        else:
            text = text[:pos] + piece + text[pos + n:]
    _front_end(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    _front_end(text)
