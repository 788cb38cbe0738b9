"""Triton backend, without running kernels: generated source, errors, module loading, launch
bookkeeping, and compilation of every kernel in kernels/ to PTX/cubin for sm_90 (no GPU needed)."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import tilelang
from tilelang import TileError
from tilelang.backends import get_backend
from tilelang.backends.triton import compile_binary, generate, load_source, lower
from tilelang.backends.triton.launcher import interpreting
from tilelang.backends.triton.lower import num_warps
from tilelang.backends.triton.names import check_ident

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from refusals import refused  # noqa: E402

KERNEL_FILES = sorted((ROOT / "kernels").glob("*.tile"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TILELANG_CACHE_DIR", str(tmp_path / "cache"))


def gemm(**consts):
    return tilelang.load(ROOT / "kernels/gemm.tile")["gemm"].lower(**consts)


def one(src: str, **consts):
    (k,) = tilelang.loads(src, "t.tile").values()
    return k.lower(**consts)


def test_gemm_source_is_one_readable_jit_function():
    src = generate(gemm())
    tree = ast.parse(src)
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert fn.name == "gemm_kernel" and [a.arg for a in fn.args.args] == ["p_A", "p_B", "p_C", "d_M", "d_K", "d_N"]
    assert ast.unparse(fn.decorator_list[0]) == "triton.jit"
    assert "for s_k in tl.range(0, tl.cdiv(d_K, 32), num_stages=3):" in src
    assert "t_acc = tl.dot(t_a, t_b, t_acc)" in src
    assert "t_acc = tl.zeros((64, 64), tl.float32)" in src
    assert "t_a = tl.zeros" not in src  # a shared tile written before it is read needs no initial value
    assert re.search(r"tl\.load\(p_A \+ \(_o\d+\[:, None\] \* d_K \+ _o\d+\[None, :\]\), mask=_m\d+, other=0\)", src)
    assert re.search(r"tl\.store\(p_C \+ .*, t_acc\.to\(tl\.float16\), mask=_m\d+\)", src)
    lines = (ROOT / "kernels/gemm.tile").read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if "copy(A[pid_m, k], a);" in t)
    assert f"# gemm.tile:{line}  copy(A[pid_m, k], a);" in src


def test_consts_dtypes_and_warps_are_baked_in():
    src = generate(gemm(BM=128, BK=64, T="bf16", TC="f32", STAGES=1))
    assert "tl.zeros((128, 64), tl.float32)" in src and "tl.arange(0, 128)" in src
    assert "for s_k in range(0, tl.cdiv(d_K, 64)):" in src  # one stage: a plain loop
    assert "t_acc, mask=" in src  # f32 accumulator stored as is into an f32 tensor
    assert lower(gemm()).num_warps == 4
    assert [num_warps(t) for t in (32, 64, 96, 128, 256, 384, 1024)] == [1, 2, 2, 4, 8, 8, 32]


SMALL = """kernel small(A: f32[M, K], B: f32[K, N], C: f16[M, N], BM: const = 16, BN: const = 16, BK: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(128)
{
    a = register(f32[BM, BK]);
    b = register(f32[BK, BN]);
    acc = register(f16[BM, BN]);
    for k in range(cdiv(K, BK)) {
        copy(A[block_id(0), k], a);
        copy(B[k, block_id(1)], b);
        gemm(a, b, acc);
    }
    copy(acc, C[block_id(0), block_id(1)]);
}
"""


def test_gemm_uses_tl_dot_from_16_and_a_product_sum_below():
    big = generate(one(SMALL))
    assert 'tl.dot(t_a, t_b, t_acc.to(tl.float32), input_precision="ieee").to(tl.float16)' in big
    small = generate(one(SMALL, BM=8))
    assert "tl.dot" not in small
    assert "t_acc = (t_acc.to(tl.float32) + tl.sum(t_a[:, :, None] * t_b[None, :, :], axis=1)).to(tl.float16)" in small


DQ = """kernel dq(W: TW[N, K], S: f16[N, KG], Y: f16[N, K], TW: dtype = u4, G: const = 32, BN: const = 32,
           BK: const = 128)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{
    w = register(f16[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, group=G);
    copy(w, Y[block_id(0), block_id(1)]);
}"""


@pytest.mark.parametrize("bits", range(1, 9))
def test_dequant_reads_whole_bytes_where_fields_do_not_straddle(bits):
    for tw in (f"u{bits}", f"i{bits}"):
        code = generate(one(DQ, TW=tw))
        ast.parse(code)
        if bits == 8:
            assert "_byte" not in code and "tl.join" not in code  # whole bytes: a plain load
        else:
            # packed rows start on byte boundaries; cdiv(K, 8 // bits) as halvings keeps K's alignment visible
            assert (f"(d_K * {bits} + 7) // 8" in code) == (8 % bits != 0)
            assert bool(re.search(r"_rb\d+ = \(*d_K - d_K // 2", code)) == (8 % bits == 0)
            assert ("tl.join" in code) == (8 % bits == 0)  # one load of the bytes, fields interleaved
            assert (" + 1, mask=" in code) == (8 % bits != 0)  # else a second byte where fields straddle
            assert "0x4B000000).to(tl.float32, bitcast=True)" in code  # no int-to-float conversion
        assert (f" ^ {1 << (bits - 1)})" in code) == (tw[0] == "i" and bits < 8)  # sign by offset binary


def test_dequant_reads_bytes_per_element_on_tiles_below_a_vector_per_thread():
    assert "tl.join" in generate(one(DQ, BN=8))  # u4 [8, 128]: 512 bytes, 16 for each of 32 threads
    small = generate(one(DQ, BN=4))
    assert "tl.join" not in small and "_byte" in small


@pytest.mark.parametrize("group,read", [(256, r"_s\d+ = tl\.load\(p_S \+ \(_o\d+\[:, None\] \* d_KG \+ _g\d+\)"),
                                        (32, r"tl\.reshape\(tl\.broadcast_to\(tl\.load\(p_S .*\(32, 4, 32\)\), \(32, 128\)\)"),
                                        (24, r"_g\d+ = tl\.minimum\(_o\d+ // 24, d_KG - 1\)")])
def test_dequant_reads_each_scale_once_where_groups_align_with_the_tile(group, read):
    """G % BK == 0: one scale per row, broadcast; BK % G == 0: BK // G per row, repeated; else per element."""
    assert re.search(read, generate(one(DQ, G=group)))


def test_user_names_cannot_shadow_python_or_triton():
    src = generate(one("""kernel tl(A: f32[M], tl_kernel: f32[M])
        grid(cdiv(M, 16)) threads(32)
    {
        triton = register(f32[16]);
        copy(A[block_id(0)], triton);
        float = triton * 2.0;
        lambda = block_id(0);
        copy(float, tl_kernel[lambda]);
    }"""))
    tree = ast.parse(src)
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert {"t_triton", "t_float", "s_lambda"} <= assigned
    assert not assigned & {"tl", "triton", "float", "lambda"}
    assert "def tl_kernel(p_A, p_tl_kernel, d_M):" in src


def test_identifiers_are_checked_before_they_reach_source():
    assert check_ident("x_1") == "x_1"
    for bad in ("a-b", "1x", "x y", "x\n", ""):
        with pytest.raises(TileError, match="not a valid identifier"):
            check_ident(bad)


def test_non_power_of_two_tile_is_reported_at_its_definition():
    tk = one("""kernel bad(A: f16[M, N], BM: const = 4)
        grid(cdiv(M, BM)) threads(32)
    {
        x = register(f16[BM, 8]);
        copy(A[block_id(0), 0], x);
    }""", BM=24)
    with pytest.raises(TileError, match=r"t\.tile:4:.*tile 'x' has shape \[24, 8\].*power of two") as e:
        generate(tk)
    assert "hint" in str(e.value)
    with pytest.raises(TileError, match=r"t\.tile:3:.*iota\(\.\.\.\) has shape \[4, 6\].*power of two"):
        generate(one("""kernel io(A: i32[M, N]) grid(1) threads(32)
        {
            x = sum(iota((4, 6), axis=1), axis=1);
            copy(x, A[0, 0]);
        }"""))


def test_load_source_writes_the_cache_and_imports_once(tmp_path):
    src = generate(gemm())
    m1, m2 = load_source(src), load_source(src)
    assert m1 is m2 and Path(m1.__file__).read_text() == src
    assert Path(m1.__file__).parent == tmp_path / "cache" / "triton"
    assert hasattr(m1.gemm_kernel, "fn")


def test_backend_registry_and_empty_grid():
    be = get_backend("triton")
    assert be.NAME == "triton" and be.SOURCE_SUFFIX == ".py" and be.generate is generate
    g = tilelang.load(ROOT / "kernels/gemm.tile")["gemm"]
    a, b = np.ones((0, 5), np.float16), np.ones((5, 7), np.float16)
    c = np.full((0, 7), np.nan, np.float16)
    g(a, b, c, backend="triton")  # grid (0, 1): nothing to launch, on any device


def test_cpu_arrays_without_the_interpreter_are_explained():
    if interpreting():
        pytest.skip("this process imported triton with TRITON_INTERPRET=1")
    g = tilelang.load(ROOT / "kernels/gemm.tile")["gemm"]
    a, b, c = np.ones((5, 5), np.float16), np.ones((5, 7), np.float16), np.zeros((5, 7), np.float16)
    with pytest.raises(TileError, match="interpreter") as e:
        g(a, b, c, backend="triton")
    assert "TRITON_INTERPRET=1" in str(e.value)


def _binary_ok():
    if interpreting():
        pytest.skip("this process imported triton with TRITON_INTERPRET=1: it cannot compile")


@pytest.mark.parametrize("file", KERNEL_FILES, ids=lambda f: f.stem)
def test_every_library_kernel_compiles_for_sm90(file):
    _binary_ok()
    for name, k in tilelang.load(file).items():
        if refused(f"{file.stem}:{name}", "triton", lambda: lower(k.lower())):
            continue
        ck = compile_binary(k.lower(), "sm_90")
        assert ck.asm["cubin"] and f".entry {name}_kernel" in ck.asm["ptx"], name


def test_gemm_uses_tensor_cores_on_sm80_and_sm90_and_build_aot_writes_binaries(tmp_path):
    _binary_ok()
    be = get_backend("triton")
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in compile_binary(gemm(T="bf16"), "sm_80").asm["ptx"]
    assert "wgmma.mma_async" in compile_binary(gemm(), "sm_90").asm["ptx"]
    paths = be.build_aot(gemm(), tmp_path, "sm_90")
    assert [p.name for p in paths] == ["gemm.ptx", "gemm.cubin", "gemm.json"] and all(p.stat().st_size for p in paths)
    with pytest.raises(TileError, match="unknown Triton target"):
        be.build_aot(gemm(), tmp_path, "hopper")
