"""Syntax errors of .tile text: one located error at the fault, in the user's words.

A missing ';' is reported at the end of the statement that lacks it (not at the next line's first
token), the expected tokens are named as they are written (never lark's `__ANON_0` or `SEMICOLON`),
and a bracket left open is pointed at where it was opened.
"""
from __future__ import annotations

import re

import pytest

from tilelang import InternalError, TileError
from tilelang.frontend.tile_parser import _terminals, describe_terminals, parse_module

HEAD = "kernel k(A: f16[M], B: f16[M]) grid(1) threads(32) {\n"


def _error(text: str) -> TileError:
    with pytest.raises(TileError) as e:
        parse_module(text, "bad.tile")
    assert not isinstance(e.value, InternalError), e.value.render()
    return e.value


@pytest.mark.parametrize("text, line, col, expect", [
    ("kernel k(A: f16[M]) grid(1) threads(32) { x = ; }", 1, 47, "unexpected ';'"),
    ("kernel k(A: f16[M]) grid(1) threads(32) {\n  copy(A[0] x);\n}", 2, 13, "unexpected 'x'"),
    ("kernel k(A: f16[M]) grid(1) threads(32) {\n  x = 1 $ 2;\n}", 2, 9, "unexpected character '$'"),
    ("kernel k(A: f16[M]) grid(1) threads(32) {\n  x = 1;\n", 2, 9, "unexpected end of file"),
])
def test_syntax_errors_name_line_and_column(text, line, col, expect):
    e = _error(text)
    assert (e.loc.line, e.loc.col) == (line, col)
    assert expect in e.message
    assert str(e).startswith(f"bad.tile:{line}:{col}: error:")


@pytest.mark.parametrize("body, line, col", [
    ("    x = 1\n    y = 2;\n", 2, 10),                  # the next statement on the next line
    ("    x = 1   # the first\n\n    y = 2;\n", 2, 10),  # blank lines and a comment in between
    ("    x = exp(A)\n    for i in range(2) { }\n", 2, 15),
    ("    x = 1 }", 2, 10),                              # the block closes on the same line
    ("    x = 1\n}\n", 2, 10),
])
def test_missing_semicolon_is_reported_where_the_statement_ends(body, line, col):
    e = _error(HEAD + body + ("}\n" if not body.rstrip().endswith("}") else ""))
    assert e.message == "missing ';' at the end of the statement", e.render()
    assert (e.loc.line, e.loc.col) == (line, col), e.render()
    assert "statements end with ';'" in e.hint


@pytest.mark.parametrize("text, opened_at, message", [
    ("kernel k(A: f16[M] grid(1) threads(32) { }", (1, 9), "unexpected 'grid'"),
    (HEAD + "    copy(A[0], B[0];\n}", (2, 9), "unexpected ';'"),
    (HEAD + "    x = exp((A + 1);\n}", (2, 12), "unexpected ';'"),
    (HEAD + "    y = f(A];\n}", (2, 10), "unexpected ']'"),
    (HEAD + "    x = 1;\n", (1, 52), "unexpected end of file"),
])
def test_an_unclosed_bracket_is_pointed_at_where_it_was_opened(text, opened_at, message):
    e = _error(text)
    assert e.message == message, e.render()
    (note, loc), = e.related
    bracket = note.split("'")[1]
    assert note == f"this '{bracket}' is not closed" and (loc.line, loc.col) == opened_at, e.render()
    assert loc.source_line[loc.col - 1] == bracket
    assert f"bad.tile:{opened_at[0]}:{opened_at[1]}: note: this '{bracket}' is not closed" in e.render()


def test_a_missing_comma_does_not_blame_the_bracket():
    e = _error(HEAD + "    copy(A[0] B[0]);\n}")
    assert e.message == "unexpected 'B'" and not e.related
    assert e.hint == "expected ')', ',' or an operator"


@pytest.mark.parametrize("body, hint", [
    ("    x = a b;\n", "expected ';', '(', '[' or an operator"),   # exactly what may follow `a`, no ')' or ']'
    ("    x = 1 <= ;\n", "expected '(', '[', a name, a number or an operator"),
    ("    x = register(f16[4]) ;; \n", "expected '}', 'for', 'if' or a name"),
])
def test_expected_tokens_are_written_as_in_the_source(body, hint):
    e = _error(HEAD + body + "}\n")
    assert e.hint == hint, e.render()


def test_every_terminal_of_the_grammar_has_a_readable_name():
    """A terminal added to tile.lark without words would show lark's internal name: this fails first."""
    for name, text in {**_terminals(), "$END": None}.items():
        if name in ("WS", "COMMENT"):  # ignored, never expected
            continue
        word = describe_terminals([name])
        assert word in (f"'{text}'", "an operator", "a name", "a number", "end of file"), (name, word)
        assert not re.search(r"__ANON|[A-Z]{3,}|\$", word), (name, word)


def test_rendered_syntax_errors_never_show_lark_internals():
    broken = [HEAD + "    x = 1 <= 2 <= ;\n}", HEAD + "    x = (1 ** ;\n}", HEAD + "    y = A[1 // ];\n}",
              HEAD + "    x = 1 >> >> 2;\n}", HEAD + "    x = 1 != ;\n}", HEAD + "    x = 1\n    y = 2 << 3;\n}"]
    for text in broken:
        rendered = _error(text).render()
        assert not re.search(r"__ANON|SEMICOLON|LPAR|RPAR|LSQB|RSQB|LBRACE|RBRACE|\$END", rendered), rendered
