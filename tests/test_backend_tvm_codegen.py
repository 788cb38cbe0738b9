"""TVM backend code generation, read as text (no TVM needed): the structure each target promises."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
from kernel_refs import load  # noqa: E402
from tilelang.backends.tvm import generate  # noqa: E402
from tilelang.backends.tvm.signature import signature  # noqa: E402

ADD = """
kernel add(X: T[M, N], Y: T[M, N], Z: T[M, N], T: dtype = f16, BM: const = 4, BN: const = 32)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    x = register(T[BM, BN]);
    y = register(T[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(Y[block_id(0), block_id(1)], y);
    z = x + y;
    copy(z, Z[block_id(0), block_id(1)]);
}
"""

UNPACK = """
kernel unpack(W: {q}[N, K], S: f16[N, KG], Y: f16[N, K], G: const = 8, BN: const = 2, BK: const = 16)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{{
    w = register(f16[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, group=G);
    copy(w, Y[block_id(0), block_id(1)]);
}}
"""

# two GEMV formulations (kernels/gemv.tile has used both): elementwise products reduced once at the
# end, and a gemm over BM rows of X (rows past M padded with zeros)
GEMV_EW = """
kernel gemv(X: T[M, K], W: T[N, K], Y: T[M, N], T: dtype = f16, BN: const = 32, BK: const = 128)
    grid(cdiv(N, BN), M) threads(128)
{
    x = register(f32[1, BK]);
    w = register(f32[BN, BK]);
    acc = register(f32[BN, BK]);
    for k in range(cdiv(K, BK)) {
        copy(X[block_id(1), k], x);
        copy(W[block_id(0), k], w);
        acc = acc + w * x;
    }
    y = trans(sum(acc, axis=1));
    copy(y, Y[block_id(1), block_id(0)]);
}
"""

GEMV_MMA = """
kernel gemv(X: T[M, K], W: T[N, K], Y: T[M, N], T: dtype = f16, BM: const = 16, BN: const = 32, BK: const = 256)
    grid(cdiv(N, BN), cdiv(M, BM)) threads(128)
{
    x = shared(T[BM, BK]);
    w = shared(T[BN, BK]);
    acc = register(f32[BM, BN]);
    for k in range(cdiv(K, BK)) {
        copy(X[block_id(1), k], x);
        copy(W[block_id(0), k], w);
        gemm(x, w, acc, trans_b=true);
    }
    copy(acc, Y[block_id(1), block_id(0)]);
}
"""


def _typed(src: str, name: str, **consts):
    return tilelang.loads(src, f"{name}.tile")[name].lower(**consts)


def test_llvm_windows_have_a_vectorized_path_and_a_masked_tail():
    text = generate(_typed(ADD, "add"), "llvm")
    assert text.count("T.parallel(") == 1
    assert "for blk in T.parallel(grid0 * grid1)" in text
    assert text.count("T.vectorized(32)") >= 4  # both loads, the add, the store: full windows
    assert len(re.findall(r"if 0 <= (w\d+_\d+) and \1 \+ \d+ <= d_", text)) == 3  # whole-window tests
    assert "T.float16(0.0)" in text  # masked elements of a load read as 0
    assert "add.tile:9: z = x + y;" in text  # every statement carries its source line


def test_llvm_integer_division_truncates_and_long_rows_reduce_in_vector_lanes():
    src = """
kernel k(X: i32[M, N], Y: f32[M, N], S: f32[M, N], BM: const = 2, BN: const = 64)
    grid(cdiv(M, BM)) threads(32)
{
    x = register(i32[BM, BN]);
    copy(X[block_id(0), 0], x);
    q = x // 3 + x % 5;
    y = f32(q);
    s = y - sum(y, axis=1);
    copy(s, S[block_id(0), 0]);
}
"""
    text = generate(_typed(src, "k"), "llvm")
    assert "T.truncdiv(" in text and "T.truncmod(" in text and "T.floordiv(t_" not in text
    assert re.search(r"lanes\d+ = T.alloc_buffer\(\(16,\)", text)
    assert "for co in T.serial(1, 4):" in text


def _in_bounds_path(text: str, copy: str) -> str:
    """The in-bounds branch of the load `copy` (and of what it forwards to)."""
    return re.search(r"if 0 <= w0_\d+ and .*\n(.*\n)+?\s+else:", text.split(copy)[1]).group(0)


def test_llvm_forwards_a_copied_tile_read_once_elementwise():
    """In bounds, the f16 weights go straight from W into the f32 accumulation (no widened copy of
    the tile); only the boundary path fills `w`.  x is broadcast over rows: not forwarded."""
    text = generate(_typed(GEMV_EW, "gemv"), "llvm")
    fast = _in_bounds_path(text, "copy(W[")
    assert re.search(r't_acc\[.*\] = \(t_acc\[.*\] \+ \(T.Cast\("float32", g_W\[.*\]\) \* t_x\[0, ', fast)
    assert "t_w[" not in fast and re.search(r"t_w\[i0, i1o \* 16 \+ i1i\] = T.Cast", text)  # boundary path fills w
    assert "g_X[" not in text.split("copy(W[")[1] and len(re.findall(r"gemv.tile:\d+: acc = acc ", text)) == 2
    # y is also stored after `z = x + y`: read twice, so both tiles stay materialized
    text = generate(_typed(ADD.replace("copy(z, Z", "copy(y, Z[block_id(1), block_id(0)]);\n    copy(z, Z"), "add"),
                    "llvm")
    assert len(re.findall(r"add.tile:\d+: z = x \+ y;", text)) == 1  # one rendering: no in-bounds variant
    assert re.search(r"t_z\[i0, i1\] = .*t_x\[i0, i1\].*t_y\[i0, i1\]", text)


def test_llvm_gemm_in_a_k_loop_accumulates_register_blocked_lanes_over_filled_rows():
    """gemm(x, w, acc, trans_b) in a loop where nothing else touches acc: the products go into 16 f32
    lanes per element of acc, in unrolled blocks of 4 rows of x (converted to f32 once) by 4 rows of W
    (forwarded from the tensor in bounds), over only the rows of x its load found inside X (M = 1: one
    row, not 16).  The lanes are summed as a tree once, after the loop, not per k-chunk."""
    text = generate(_typed(GEMV_MMA, "gemv"), "llvm")
    fast = _in_bounds_path(text, "copy(W[")
    assert re.search(r"rows\d+ = T.max\(T.min\(16, d_M - w0_\d+\), 0\)", fast)
    assert re.search(r'af\d+\[gi, ko \* 16 \+ l\] = T.Cast\("float32", t_x\[gi, ko \* 16 \+ l\]\)', fast)
    assert re.search(r"for gio in T.serial\(rows\d+ // 4\):\n\s+for gjo in T.serial\(8\):\n"
                     r"\s+for ko in T.serial\(16\):\n\s+for r in T.unroll\(4\):\n\s+for c in T.unroll\(4\):", fast)
    assert re.search(r"for gio in T.serial\(\(rows(\d+) - rows\1 // 4 \* 4\)\):", fast)  # the last M % 4 rows
    assert re.search(r'(lanes\d+)\[gi, gj, l\] = \1\[gi, gj, l\] \+ af\d+\[gi, ko \* 16 \+ l\] \* '
                     r'T.Cast\("float32", g_W\[w0_\d+ \+ gj, w1_\d+ \+ ko \* 16 \+ l\]\)', fast)
    assert "T.vectorized(8)" not in fast and "t_w[" not in fast and "t_acc[" not in fast
    before, loop = text.split("for v_k in T.serial(")
    loop, after = loop.split("copy(acc, Y[")
    assert re.search(r"live\d+\[0\] = 0\n\s+# gemv.tile:\d+: for k in range", before)
    assert re.search(r"\n        for gi in T.serial\(live\d+\[0\]\):\n            for gj in T.serial\(32\):\n(.*\n)+?"
                     r"                t_acc\[gi, gj\] = t_acc\[gi, gj\] \+ lanes\d+\[gi, gj, 0\]\n", loop)
    # the boundary load of x goes row by row: inside rows vectorized, rows past M padded in vectors
    assert re.search(r"if not \(0 <= w0_\d+ \+ i0 and w0_\d+ \+ i0 < d_M\):\n\s+for i1o in T.serial\(16\):\n"
                     r"\s+for i1i in T.vectorized\(16\):\n\s+t_x\[i0, i1o \* 16 \+ i1i\] = T.float16\(0.0\)", text)


def test_llvm_gemm_whose_accumulator_the_loop_also_reads_sums_its_lanes_every_call():
    """acc rescaled in the loop after the gemm: its products are summed per call (a dot product per
    element in 16 lanes, a tree), as the rescale must see them."""
    text = generate(_typed(GEMV_MMA.replace("trans_b=true);", "trans_b=true);\n        acc = acc * 0.5;"), "gemv"),
                    "llvm")
    fast = _in_bounds_path(text, "copy(W[")
    assert "lanes" not in text and "T.unroll(" not in fast
    assert re.search(r"for gi in T.serial\(T.max\(T.min\(16, d_M - w0_\d+\), 0\)\):", fast)
    assert re.search(r'dot\d+\[l\] \+ T.Cast\("float32", t_x\[gi, ko \* 16 \+ l\]\) \* '
                     r'T.Cast\("float32", g_W\[w0_\d+ \+ gj, w1_\d+ \+ ko \* 16 \+ l\]\)', fast)
    assert all(f"for l in T.vectorized({w}):" in fast for w in (8, 4, 2, 1))


@pytest.mark.parametrize("q,two_bytes", [("u4", False), ("u2", False), ("i3", True), ("u7", True), ("u1", False)])
def test_packed_fields_read_a_second_byte_only_when_they_can_straddle(q, two_bytes):
    text = generate(_typed(UNPACK.format(q=q), "unpack"), "llvm")
    assert ("T.shift_left(T.Cast(\"int32\", g_W[" in text) == two_bytes
    assert ("T.shift_right(T.shift_left(" in text) == q.startswith("i")  # sign extension
    assert "T.bitwise_and(T.shift_right(" in text and f", {(1 << int(q[1:])) - 1})" in text


def test_a_dim_seen_only_in_packed_rows_is_an_argument():
    """The bytes of a packed row do not tell its length: K is passed unless another tensor binds it."""
    src = """
kernel k(W: u3[N, K], Y: i32[N, 8])
    grid(N) threads(32)
{
    q = register(i32[1, 8]);
    copy(W[block_id(0), 0], q);
    copy(q, Y[block_id(0), 0]);
}
"""
    sig = signature(_typed(src, "k"))
    assert sig.dim_args == ("K",) and "n_W" in sig.dim_vars
    assert signature(_typed(UNPACK.format(q="u3"), "unpack")).dim_args == ()  # Y binds K


def test_cuda_binds_blocks_and_threads_and_reduces_with_warp_shuffles():
    text = generate(load("softmax")["softmax"].lower(T="f16"), "cuda")
    assert 'thread="blockIdx.x"' in text and 'T.thread_binding(128, thread="threadIdx.x")' in text
    assert "T.tvm_warp_shuffle_down(" in text and 'T.tvm_storage_sync("shared")' in text
    assert "T.parallel" not in text and "T.vectorized" not in text


def test_cuda_mirrors_only_tiles_read_across_threads():
    text = generate(_typed(ADD, "add"), "cuda")
    assert not re.search(r"\bm_\w+\[", text) and "tvm_storage_sync" not in text  # nothing leaves a thread
    text = generate(_typed(GEMV_EW, "gemv"), "cuda")
    mirrors = set(re.findall(r"\b(m_\w+) = T.alloc_buffer", text))
    assert mirrors == {"m_acc", "m_x"}  # read across threads: sum(acc, axis=1), x broadcast over rows; not w


def test_cuda_pipelined_copies_fill_a_ring_by_cp_async_with_one_barrier_per_iteration():
    """gemm (3 stages): each shared tile is a 3-stage ring in dynamic shared memory filled by 16-byte
    cp.async (an element path where the tensors are not 16-byte aligned); 2 stages are loaded before
    the loop, and each iteration waits for the oldest, syncs once and refills the stage 2 ahead."""
    text = generate(load("gemm")["gemm"].lower(T="f16"), "cuda")
    assert 't_a = T.alloc_buffer((3, 64, 32,), "float16", scope="shared.dyn")' in text
    assert 't_b = T.alloc_buffer((3, 32, 64,), "float16", scope="shared.dyn")' in text
    assert 'T.ptx["cp.async.cg.shared.global"](T.address_of(t_a[' in text and "if s_aligned16 == 1" in text
    head, loop = text.split("for v_k in T.serial(", 1)
    assert head.count('T.ptx["cp.async.commit_group"]()') == 2  # the prologue: stages 0 and 1
    body = loop.split('T.ptx["cp.async.wait_group"](0)')[0]
    assert body.count('T.ptx["cp.async.wait_group"](1)') == 1 and body.count("T.tvm_storage_sync") == 1
    assert "t_a[(v_k - T.int32(0) + 2) % 3, " in body and "t_a[(v_k - T.int32(0)) % 3, " in body


def test_cuda_ldmatrix_operands_are_xor_swizzled():
    """The gemm's shared operands are stored and read with their 16-byte chunks XOR-ed by row bits (the
    rows of one ldmatrix fall into distinct banks); a tile no ldmatrix reads keeps plain indices."""
    text = generate(load("gemm")["gemm"].lower(T="f16"), "cuda")
    ldm = [l for l in text.splitlines() if "ldmatrix" in l]
    assert len(ldm) == 2 and all("T.bitwise_xor(" in l for l in ldm)
    assert re.search(r"t_b\[0, [^\]]*T\.bitwise_xor\(", text)  # the prologue's stores use the same swizzle
    assert "T.bitwise_xor" not in generate(load("softmax")["softmax"].lower(T="f16"), "cuda")
