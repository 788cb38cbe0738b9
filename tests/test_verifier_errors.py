"""Every user mistake the builder and the passes catch: a TileError at the right line, saying what to do."""
from __future__ import annotations

import pytest

from tilelang import InternalError, TileError, loads

HEAD = "kernel k(A: f16[M, N], B: f16[M, N], Q: u4[M, N], S: f16[M, G], s: f32, BM: const = 16, BN: const = 32)\n" \
       "    grid(cdiv(M, BM)) threads(64)\n{\n"


def _error(body: str) -> TileError:
    with pytest.raises(TileError) as e:
        ks = loads(HEAD + body + "\n}\n", "k.tile")
        ks["k"].lower()
    return e.value


CASES = [
    # (body line, message fragment, hint fragment)
    ("x = y + 1;", "unknown name 'y'", "define it before use"),
    ("x = register(f16[BM, BN]); x = register(f16[BM, BN]);", "'x' is already defined", "pick a new name"),
    ("x = register(f16[BM, BN]); copy(A, x);", "'A' is a global tensor; say which tile", "A[pid, 0]"),
    ("x = register(f16[BM, BN]); copy(A[0], x);", "'A' has 2 dims but 1 tile indices", "one tile index per dim"),
    ("x = register(f16[BM, BN]); copy(A[0, 0], B[0, 0]);", "copy between two global tensors", "through a register"),
    ("x = register(f16[BM, BN]); y = register(f32[BM, BN]); z = x + y;", "different dtypes: f16 and f32", "f32(x)"),
    ("x = register(f16[BM, BN]); y = register(f16[BN, BM]); z = x + y;", "do not broadcast", None),
    ("x = register(f16[BM, BN]); y = sum(x, axis=2);", "axis 2 is out of range", None),
    ("x = register(i32[BM, BN]); y = exp(x);", "exp(...) needs a float operand", "f32(x)"),
    ("a = register(f16[BM, 16]); b = register(f16[32, BN]); c = register(f32[BM, BN]); gemm(a, b, c);",
     "gemm shapes do not agree", "trans_b"),
    ("a = shared(f16[BM, BN]); y = a * 2;", "'a' is a shared tile", "copy(a, r)"),
    ("a = shared(f16[BM, BN]); a = a;", "'a' is a shared tile; it cannot be assigned", "copy(value, a)"),
    ("x = register(u9[BM, BN]);", "bit width 9 is out of range", "i1..i8, i32, i64, u1..u8, u32"),
    ("x = register(u4[BM, BN]);", "tiles cannot have packed dtype u4", "dequant"),
    ("x = register(f16[BM, BN]); dequant(A[0, 0], x, scale=S, group=32);", "dequant reads packed integers", None),
    ("x = register(f16[BM, BN]); dequant(Q[0, 0], x, scale=s, group=32);", "scale= must name a global tensor", None),
    ("x = register(f16[BM, BN]); dequant(Q[0, 0], x, group=32);", "dequant(...) needs scale=", None),
    ("x = register(f16[1024, 1024]);", "does not fit its launch", "more threads"),
    ("x = shared(f32[256, 256]);", "shared tiles need 262144 bytes", None),
    ("p = block_id(3);", "grid axis 3 is out of range", None),
    ("x = register(f16[BM, BN]); copy(x, A[0, 0], pad=0);", "pad= only applies", None),
    ("for i in range(4) { t = register(f16[BM, BN]); } u = t;", "unknown name 't'", None),
    ("i = 1; i = 2;", "'i' is already defined", None),
    ("x = register(f16[BM, BN]); y = x / iota((BM, BN), axis=0);", "different dtypes", None),
    ("y = iota((BM, BN), axis=0) / 2;", "'/' on integer tiles", "'//'"),
    ("copy(A[0, 0]);", "copy takes (source, destination)", None),
    ("foo(1);", "unknown function 'foo'", "statements are copy(...)"),
    ("exp(1);", "'exp(...)' does nothing as a statement", "statements are copy(...)"),
    ("x = bar(1);", "unknown function 'bar'", "LANGUAGE.md"),
    ("x = register(f16[BM, BN], color=1);", "register(...) has no argument 'color'", "init"),
    ("x = register(f16[BM, BN]); y = where(x, x, x);", "needs a bool condition", None),
]


def assert_located(body: str, message: str, hint: str | None) -> None:
    """The body's error says `message` (and `hint`) at its line, as the user's mistake."""
    err = _error(body)
    assert message in err.message, err.render()
    assert not isinstance(err, InternalError), err.render()  # the user's mistake, not a compiler bug
    assert err.loc is not None and err.loc.file == "k.tile" and err.loc.line == 4, err.render()
    if hint:
        assert hint in (err.hint or ""), err.render()
    assert err.render().startswith(f"k.tile:4:{err.loc.col}: error:")


@pytest.mark.parametrize("body, message, hint", CASES)
def test_error_is_located_and_helpful(body, message, hint):
    assert_located(body, message, hint)


def test_threads_must_be_warp_multiple():
    text = "kernel k(A: f16[M]) grid(1) threads(48) { x = register(f16[16]); }"
    with pytest.raises(TileError, match="48 threads per block"):
        loads(text, "t.tile")["k"].lower()


def test_missing_const_value_names_the_parameter():
    text = "kernel k(A: f16[M], BM: const) grid(1) threads(32) { x = register(f16[BM]); }"
    k = loads(text, "t.tile")["k"]
    with pytest.raises(TileError, match="needs a value for int parameter 'BM'"):
        k.lower()
    assert k.lower(BM=8).tiles["x"].shape == (8,)
    with pytest.raises(TileError, match="has no compile-time parameter 'BX'") as e:
        k.lower(BM=8, BX=3)
    assert "did you mean 'BM'?" in e.value.hint
