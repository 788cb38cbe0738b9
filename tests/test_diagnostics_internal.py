"""Compiler bugs surface as `InternalError`: a TileError users can catch, saying it is tilelang's bug and
naming the pass (or backend) and the kernel; the user's own mistakes never take that form."""
from __future__ import annotations

import pytest

import tilelang
import tilelang.passes
from tilelang import InternalError, TileError, loads
from tilelang.backends import reference
from tilelang.cli import main

TEXT = """
kernel add(X: f32[N], Y: f32[N], BN: const = 32) grid(cdiv(N, BN)) threads(32) {
    x = register(f32[BN]);
    copy(X[block_id(0)], x);
    copy(x, Y[block_id(0)]);
}
"""


def _crash(*args, **kwargs):
    raise AssertionError("a tile with no type")


def test_a_pass_that_crashes_is_reported_as_a_compiler_bug(monkeypatch):
    monkeypatch.setattr(tilelang.passes, "infer", _crash)
    k = loads(TEXT, "add.tile")["add"]
    with pytest.raises(InternalError) as e:
        k.lower()
    err = e.value
    assert isinstance(err, TileError)
    assert err.message == "internal compiler error in pass 'infer' (kernel 'add'): AssertionError: a tile with no type"
    assert "bug in tilelang, not in your kernel" in err.hint and "TILELANG_DEBUG=1" in err.hint
    assert (err.loc.file, err.loc.line) == ("add.tile", 2)
    assert isinstance(err.__cause__, AssertionError)


def test_a_backend_that_crashes_is_reported_as_a_compiler_bug(monkeypatch):
    monkeypatch.setattr(reference, "compile", lambda tk, target=None: {}["launcher"])
    with pytest.raises(InternalError, match=r"internal compiler error in the reference backend \(kernel 'add'\): "
                                            "KeyError"):
        loads(TEXT, "add.tile")["add"].compile("reference")


def test_the_user_s_mistakes_are_not_internal_errors():
    with pytest.raises(TileError) as e:
        loads(TEXT.replace("copy(X[block_id(0)], x);", "copy(X[block_id(0)], y);"), "add.tile")
    assert type(e.value) is TileError
    with pytest.raises(TileError) as e:
        loads(TEXT, "add.tile")["add"].lower(BN=0)
    assert not isinstance(e.value, InternalError), e.value.render()


def test_the_command_line_reports_a_crash_as_a_compiler_bug(monkeypatch, tmp_path, capsys):
    (tmp_path / "add.tile").write_text(TEXT)
    monkeypatch.setattr(tilelang.passes, "verify", _crash)
    monkeypatch.delenv("TILELANG_DEBUG", raising=False)
    assert main(["show", str(tmp_path / "add.tile")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'add.tile'}:2:8: error: internal compiler error in pass 'verify' "
                          "(kernel 'add'): AssertionError")
    assert "Traceback" not in err
    monkeypatch.setenv("TILELANG_DEBUG", "1")
    assert main(["show", str(tmp_path / "add.tile")]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_the_command_line_turns_any_other_crash_into_an_internal_error(monkeypatch, tmp_path, capsys):
    import tilelang.cli as cli
    (tmp_path / "add.tile").write_text(TEXT)
    monkeypatch.setattr(cli, "kernel_str", _crash)
    monkeypatch.delenv("TILELANG_DEBUG", raising=False)
    assert main(["show", str(tmp_path / "add.tile")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal compiler error in 'tilelang show': AssertionError: a tile with no type")
