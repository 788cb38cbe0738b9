"""Call-time argument mistakes: each names the parameter, points at its declaration (file:line:col)
and says what to do.  Nothing here compiles or launches: `bind` rejects the call first."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kernel_refs import load
from tilelang import TileError, tile_kernel
from tilelang.ir.dtypes import DTYPES, listing
from tilelang.lang import *  # noqa: F403


def _error(fn) -> TileError:
    with pytest.raises(TileError) as e:
        fn()
    return e.value


def _declared_at(err: TileError, file: str, text: str) -> None:
    """The error points at the declaration `text` in `file`."""
    assert err.loc is not None and err.loc.file.endswith(file)
    assert err.loc.source_line[err.loc.col - 1:].startswith(text), (err.loc, text)


def _rmsnorm_args(dtype=torch.float16):
    x = torch.randn(2, 64).to(dtype)
    return x, torch.ones(64, dtype=torch.float16), torch.zeros(2, 64, dtype=torch.float16)


def _wNa16_args():
    x = np.zeros((2, 64), np.float16)
    return x, np.zeros((32, 32), np.uint8), np.ones((32, 1), np.float16), np.zeros((2, 32), np.float16)


def test_a_wrong_dtype_parameter_value_lists_the_dtypes_and_suggests_one():
    err = _error(lambda: load("gemm_wNa16")["gemm_wNa16"](*_wNa16_args(), TW="u9"))
    assert err.message == "TW='u9' given to 'gemm_wNa16' is not a dtype"
    assert "did you mean 'u8'" in err.hint
    assert all(name in err.hint for name in ("f16", "f32", "u32", "i64", "bf16", "u1..u7"))
    _declared_at(err, "gemm_wNa16.tile", "TW: dtype")


def test_the_dtype_list_is_the_dtype_table():
    text = listing()
    assert all(name in text for name, d in DTYPES.items() if not d.is_packed)


@pytest.mark.parametrize("value", ["f64", torch.float64, np.complex64, 3])
def test_every_kind_of_non_dtype_is_refused(value):
    err = _error(lambda: load("rmsnorm")["rmsnorm"](*_rmsnorm_args(), 1e-6, T=value))
    assert "is not a dtype" in err.message
    _declared_at(err, "rmsnorm.tile", "T: dtype")


@pytest.mark.parametrize("value", ["bf16", torch.bfloat16, "bfloat16"])
def test_dtype_parameters_take_tile_names_and_library_dtypes(value):
    err = _error(lambda: load("rmsnorm")["rmsnorm"](*_rmsnorm_args(), 1e-6, T=value))
    assert "argument 'X' of 'rmsnorm' is f16, but T is bf16 (passed as T=bf16)" in err.message


def test_a_tensor_for_a_scalar_says_which_scalar():
    err = _error(lambda: load("rmsnorm")["rmsnorm"](*_rmsnorm_args(), torch.tensor([1e-6, 1e-5])))
    assert err.message == ("argument 'eps' of 'rmsnorm' is a scalar of dtype f32, but got a torch tensor of "
                           "shape [2]")
    assert "Python number" in err.hint
    _declared_at(err, "rmsnorm.tile", "eps: f32")


def test_float64_inputs_list_the_supported_dtypes():
    err = _error(lambda: load("rmsnorm")["rmsnorm"](*_rmsnorm_args(torch.float64), 1e-6))
    assert err.message == "argument 'X' of 'rmsnorm' is float64, which kernels do not take"
    assert listing() in err.hint
    _declared_at(err, "rmsnorm.tile", "X: T[M, H]")


def test_a_fixed_dtype_parameter_says_how_to_convert():
    k = load("attention")["attention_decode_combine"]
    op = np.zeros((1, 1, 2, 1, 8), np.float64)
    err = _error(lambda: k(op, np.zeros((1, 1, 2, 1), np.float32), np.zeros((1, 1, 2, 1), np.float32),
                           np.zeros((1, 1, 1, 8), np.float16)))
    assert err.message == "argument 'Op' of 'attention_decode_combine' must be f32, got float64"
    assert "Op.astype('float32')" in err.hint


def test_tensors_sharing_a_dim_name_point_at_each_other():
    x, w, y = _rmsnorm_args()
    err = _error(lambda: load("rmsnorm")["rmsnorm"](x, torch.ones(63, dtype=torch.float16), y, 1e-6))
    assert err.message == "argument 'W' of 'rmsnorm' has 63 along dim 0 ('H'), expected 64 (from X.shape[1])"
    _declared_at(err, "rmsnorm.tile", "W: TW[H]")
    (note, loc), = err.related
    assert "H was bound here" in note and loc.source_line[loc.col - 1:].startswith("X: T[M, H]")


def test_a_dim_passed_by_keyword_is_named_as_the_source():
    x, w, y = _rmsnorm_args()
    err = _error(lambda: load("rmsnorm")["rmsnorm"](x, w, y, 1e-6, H=32))
    assert "expected 32 (passed as H=32)" in err.message


def test_a_wrong_rank_shows_the_declaration():
    x, w, y = _rmsnorm_args()
    err = _error(lambda: load("rmsnorm")["rmsnorm"](x[0], w, y, 1e-6))
    assert err.message == "argument 'X' of 'rmsnorm' must have 2 dims [M, H], got shape [64]"
    assert "X: T[M, H]" in err.hint


def test_non_contiguous_tensors_say_how_to_fix_them():
    x, w, y = _rmsnorm_args()
    err = _error(lambda: load("rmsnorm")["rmsnorm"](x, w, torch.zeros(64, 2, dtype=torch.float16).t(), 1e-6))
    assert "argument 'Y' of 'rmsnorm' is not contiguous" in err.message and "Y.contiguous()" in err.hint


@pytest.mark.parametrize("args, kwargs, message, hint, at", [
    (1, {}, "takes 4 tensor/scalar arguments (X, W, Y, eps), got 5", "passed by keyword", "rmsnorm("),
    (0, {}, "is missing argument 'eps' (eps: f32 scalar)", "as eps=", "eps: f32"),
    (0, {"epss": 1e-6}, "has no parameter 'epss'", "did you mean 'eps'?", "rmsnorm("),
    (-1, {"THREAD": 128}, "has no parameter 'THREAD'", "did you mean 'THREADS'?", "rmsnorm("),
    (-1, {"eps": 1e-6}, "argument 'eps' of 'rmsnorm' is given twice", "drop eps=", "eps: f32"),
    (-1, {"BH": 16.0}, None, None, None),
    (-1, {"H": -1}, "dim 'H' of 'rmsnorm' must be a non-negative int, got -1", "H=<int>", "X: T[M, H]"),
])
def test_wrong_argument_counts_and_keywords(args, kwargs, message, hint, at):
    x, w, y = _rmsnorm_args()
    positional = (x, w, y) + ((1e-6,) if args != 0 else ()) + ((7,) if args == 1 else ())
    err = _error(lambda: load("rmsnorm")["rmsnorm"](*positional, **kwargs))
    if message is None:  # an int const given a float: refused where the constants are resolved
        assert err.message == "const 'BH' of kernel 'rmsnorm' must be an int, got 16.0" and "BH=2048" in err.hint
        return
    assert message in err.message and hint in err.hint
    _declared_at(err, "rmsnorm.tile", at)


@pytest.mark.parametrize("value, message", [
    (2.5, "must be an int (a scalar of dtype i32), got float 2.5"),
    (True, "must be an int (a scalar of dtype i32), got bool True"),
    ("7", "must be an int (a scalar of dtype i32), got str '7'"),
    (np.zeros(1, np.int32), "is a scalar of dtype i32, but got a numpy array of shape [1]"),
])
def test_scalars_of_the_wrong_kind(value, message):
    k = load("rotary")["rotary"]
    x = np.zeros((2, 2, 8), np.float16)
    cos = np.zeros((4, 4), np.float32)
    err = _error(lambda: k(x, cos, cos, np.zeros_like(x), value))
    assert f"argument 'pos0' of 'rotary' {message}" == err.message
    _declared_at(err, "rotary.tile", "pos0: i32")


def test_numpy_scalars_are_numbers():
    x, w, y = (t.numpy() for t in _rmsnorm_args())
    load("rmsnorm")["rmsnorm"](x, w, y, np.float32(1e-6))
    assert np.isfinite(y).all()


def test_python_kernels_point_at_their_own_source_lines():
    @tile_kernel
    def double(X: T[N], Y: T[N], T: dtype = f16, B: const = 16):  # noqa: F405
        launch(grid=(cdiv(N, B),), threads=32)  # noqa: F405
        x = register(T[B])  # noqa: F405
        copy(X[block_id(0)], x)  # noqa: F405
        y = x + x
        copy(y, Y[block_id(0)])  # noqa: F405

    err = _error(lambda: double(np.zeros(4, np.float16), np.zeros(4, np.float64)))
    assert err.loc.file == __file__ and "Y: T[N]" in err.loc.source_line
    assert err.message == "argument 'Y' of 'double' is float64, which kernels do not take"


def test_arrays_on_different_devices_are_named():
    x, w, y = _rmsnorm_args()
    err = _error(lambda: load("rmsnorm")["rmsnorm"](x, w, y.to("meta"), 1e-6))
    assert "X on cpu, W on cpu, Y on meta" in err.message


def test_an_unknown_backend_suggests_one():
    err = _error(lambda: load("rmsnorm")["rmsnorm"](*_rmsnorm_args(), 1e-6, backend="trition"))
    assert err.message == "unknown backend 'trition'" and "did you mean 'triton'?" in err.hint
