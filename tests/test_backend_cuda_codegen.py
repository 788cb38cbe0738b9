"""The CUDA backend's IR -> C++ step, without a GPU.

* what the generated code contains for small kernels (masked loads, shuffle reductions, mma,
  ldmatrix, cp.async pipelines, the magic-number dequant) and the mapping / layout expressions
  it is built from, checked against tilelang.layout;
* the generated code *run* on the CPU emulator (tilelang/backends/cuda/emulate.py: one std::thread
  per CUDA thread, emulated shuffles, ldmatrix, mma and cp.async) against the reference
  interpreter, for constructs the library does not exercise (integer C semantics, transposes,
  axis-0 reductions, every shared/register/global direction, 1..8-bit dequant, SIMT gemm,
  annotated task mappings) and for a subset of library kernels (all of them with -m slow);
* ThreadSanitizer over the emulated gemm pipeline: no shared-memory races.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import tilelang
from tilelang import TileError
from tilelang.backends import cuda
from tilelang.backends.cuda import cexpr
from tilelang.backends.cuda import mapping as M
from tilelang.backends.cuda.codegen import generate_source
from tilelang.backends.cuda.smem import Smem
from tilelang.layout import column_spatial, local, smem_swizzled, spatial
from tilelang.layout.tiling import default_vector
from tilelang.quant import pack
from tilelang.runtime.args import bind

from test_backend_cuda import KERNELS, cases, compare, kernel, reference

needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")


def _eval(text: str, **env) -> int:
    """Evaluate a generated integer expression (non-negative operands: C's / is Python's //)."""
    return eval(text.replace(" / ", " // "), {}, env)


# ----------------------------------------------------------------------------- building blocks

@pytest.mark.parametrize("task", [
    spatial(2, 2) * local(2, 4) * local(2, 1) * spatial(8, 4) * local(1, 2),  # mma accumulator over 2x2 warps
    column_spatial(4, 8) * local(2, 1) * local(1, 3),
    local(2, 2) * spatial(4, 8),
])
def test_task_mapping_coordinates_match_tilelang_layout(task):
    m = M.Tasked(task, task.num_threads)
    coords, guard = m.coords("tid", "v")
    assert guard is None
    for t in range(task.num_threads):
        for v in range(task.values_per_thread):
            assert tuple(_eval(c, tid=t, v=v) for c in coords) == task(t, v)


@pytest.mark.parametrize("shape,threads", [((5, 7), 32), ((64, 64), 128), ((3, 16), 32), ((1, 1), 64), ((2, 3, 40), 64)])
def test_flat_mapping_covers_every_element_once(shape, threads):
    m = M.Flat(tuple(shape), threads, default_vector(tuple(shape), threads))
    coords, guard = m.coords("tid", "v")
    seen = []
    for t in range(threads):
        for v in range(m.values):
            if guard is None or _eval(guard, tid=t, v=v):
                seen.append(tuple(_eval(c, tid=t, v=v) for c in coords))
    assert sorted(seen) == sorted(np.ndindex(*shape))
    for t in range(threads):  # runs: `vec` consecutive values are consecutive columns
        for v in range(0, m.values, m.run):
            first = [_eval(c, tid=t, v=v) for c in coords]
            assert first[-1] % m.run == 0


@pytest.mark.parametrize("cols", [32, 64, 128])
def test_swizzled_offsets_match_tilelang_layout(cols):
    ref = smem_swizzled(16, cols, 2)
    lay = Smem(ref, (16, cols))
    text = lay.offset(["r", "c"])
    for r in range(16):
        for c in range(cols):
            assert _eval(text, r=r, c=c) == ref(r, c)
    assert lay.contiguous_run(8) and not lay.contiguous_run(16)


def test_integer_expression_text_folds_constants():
    assert cexpr.add("x", "3", "(y) + 4") == "x + (y) + 7"
    assert cexpr.mul("v / 2", 8) == "(v / 2) * 8" and cexpr.mod("7", 4) == "3" and cexpr.div("tid", 1) == "tid"
    assert cexpr.unravel("e", (1, 4, 5)) == ["0", "e / 5", "e % 5"]


# ----------------------------------------------------------------------------- generated text

TINY = """
kernel rowsum(X: T[M, N], Y: f32[M, 1], T: dtype = f16, BM: const = 4, BN: const = 64)
    grid(cdiv(M, BM)) threads(64)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), 0], x, pad=1.5);
    s = sum(x * x, axis=1);
    copy(s, Y[block_id(0), 0]);
}
"""


def test_tiny_kernel_source_shows_masking_reduction_and_origins():
    tk = tilelang.loads(TINY, "tiny.tile")["rowsum"].lower()
    src = generate_source(tk)
    code = src.code
    assert 'extern "C" __global__ void __launch_bounds__(64) rowsum(const __half* X_, float* Y_, int M_, int N_)' in code
    assert src.params == (("tensor", "X"), ("tensor", "Y"), ("dim", "M"), ("dim", "N"))
    assert "// tiny.tile:6  copy(X[block_id(0), 0], x, pad=1.5);" in code
    assert "tl::in_range(w1_0 + i0, M_)" in code and ": 1.5f;" in code  # masked, padded load
    assert "tl::Vec<__half, 4>" in code  # vector loads: 4 x 64 elements on 64 threads gives runs of 4
    assert "tl::group_allreduce<16>" in code  # 16 lanes share a row of runs of 8: butterfly shuffles
    assert "#define TL_F16 1" in code and "#define TL_BF16 0" in code
    assert src.smem_bytes < 1024 and src.threads == 64


def test_gemm_source_uses_tensor_cores_and_a_cp_async_pipeline():
    code = cuda.generate(kernel("gemm", "gemm").lower(T="bf16", TC="f32", STAGES=4))
    for piece in ("tl::mma_16816<__nv_bfloat16>", "tl::ldmatrix_x4(af[i]", "tl::ldmatrix_x4_trans(r",
                  "tl::cp_async_16(", "tl::cp_async_wait<2>()", "4 pipeline stages", "swizzled Sw<3,3,3>",
                  "#define TL_BF16 1", "#define TL_F16 0", "tl::Vec<float, 2>"):
        assert piece in code, piece


def test_library_kernels_choose_the_fast_paths():
    wna16 = cuda.generate(kernel("gemm_wNa16", "gemm_wNa16").lower())
    assert "tl::dequant_pairs<__half, 4, false, 4>(h, q.v" in wna16 and "tl::mma_16816<__half>" in wna16
    assert "= make_uint4(h[12], h[13], h[14], h[15]);" in wna16  # 16-byte stores into the swizzled tile
    assert "tl::cp_async_16((tl_ring0_stages" in wna16  # W's packed bytes prefetched by the pipeline
    attn = cuda.generate(kernel("attention", "attention_prefill").lower())
    assert "// max along axis 1: in-thread, then lanes [1] by shuffles, then warps [1]" in attn
    assert "// 'rows' is recomputed where it is read" in attn
    assert "computed into shared memory" in attn  # pt = T(p) feeds the second gemm from shared memory
    softmax = cuda.generate(kernel("softmax", "softmax").lower())
    assert "tl::group_allreduce<32>" in softmax and "pad" not in softmax.split("extern")[0]


def test_windows_inside_the_tensor_skip_the_per_chunk_masks():
    """A producer whose whole window is in bounds issues unmasked cp.async (the common interior case)."""
    code = cuda.generate(kernel("gemm", "gemm").lower(BM=128, BN=128, BK=32))
    assert "const bool inside = vec && w1_0 >= 0 && w1_0 + 128 <= M_ && w1_1 >= 0 && w1_1 + 32 <= K_;" in code
    assert "const __half* const origin = A_ + w1_0 * A_st0 + w1_1 * A_st1;" in code  # 64-bit math once per copy
    assert "origin + ((i0) * A_st0 + (i1 * 8) * A_st1), 16);" in code  # per chunk: an offset of tid alone


def test_packed_weights_dequantized_to_registers_load_16_bytes_per_run():
    """gemv_wNa16's f32 W tile takes runs of 32 4-bit fields (one 16-byte load) and one scale per run."""
    code = cuda.generate(kernel("gemm_wNa16", "gemv_wNa16").lower(TW="u4", BN=32, BK=128))
    assert "register w: f32[32, 128], 32 values/thread, flat, runs of 32 per thread" in code
    assert "tl::Vec<unsigned int, 4> q" in code and "tl::field_to_f32<4, false>(q.v[3], 28)" in code
    assert code.count("const float sc = ") == 1
    i8 = cuda.generate(kernel("gemm_wNa16", "gemv_wNa16").lower(TW="u8", BN=32, BK=128))
    assert "runs of 16 per thread" in i8  # 8-bit fields: runs of 16 (16-byte loads)


def test_f16_and_bf16_tiles_dequantize_in_pairs():
    """Into an f16/bf16 tile, 4-bit fields (and 8-bit into f16) become pairs; bf16 cannot hold a byte
    (f32 magic), and a scale or zero point a pair cannot apply exactly is checked per run."""
    from test_backend_cuda_dequant import SRC
    k = tilelang.loads(SRC, "pairs.tile")["pairs"]
    u4 = cuda.generate(k.lower(TW="u4"))
    assert "tl::Vec<unsigned int, 2> q" in u4 and "tl::dequant_pairs<__half, 4, false, 2>(h, q.v" in u4
    assert "tl::dequant_pairs<__half, 8, true, 4>(h, q.v" in cuda.generate(k.lower(TW="i8"))
    bf8 = cuda.generate(k.lower(TW="u8", T="bf16", TS="bf16"))
    assert "tl::dequant_pairs<" not in bf8 and "tl::field_to_f32<8, false>" in bf8
    bz = cuda.generate(k.lower(TW="u4", T="bf16", TS="f32"))
    assert "if (tl::pair_zero_ok<__nv_bfloat16>(zp) && tl::pair_scale_ok<__nv_bfloat16>(sc))" in bz


def test_unknown_layouts_are_reported_at_their_source_line():
    k = tilelang.loads("""
kernel bad(X: f32[M, N]) grid(1) threads(32)
{
    s = shared(f32[8, 8], layout=mma_q(3));
    copy(X[0, 0], s);
}
""", "bad.tile")["bad"]
    with pytest.raises(TileError, match="unknown layout `mma_q\\(3\\)`") as e:
        cuda.generate(k.lower())
    assert "bad.tile:4" in str(e.value)


# ----------------------------------------------------------------------------- run on the CPU emulator

SYNTH = """
kernel ints(A: i32[M, N], B: i32[M, N], C: i32[M, N], D: i8[M, N], BM: const = 4, BN: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(32)
{
    a = register(i32[BM, BN]);
    b = register(i32[BM, BN]);
    copy(A[block_id(0), block_id(1)], a);
    copy(B[block_id(0), block_id(1)], b, pad=1);
    q = a // b + a % b * 3 - (a << 2) + (b >> 1) + (a & b) - (a ^ 7) + (a | 1);
    i = iota((BM, BN), axis=1) + block_id(1) * BN;
    c = where((i % 3 == 0) | (a > b), q, -q) + min(a, b) - max(a, -b) + abs(b) - ~a;
    copy(c, C[block_id(0), block_id(1)]);
    f = f32(a) * 0.37;
    copy(f, D[block_id(0), block_id(1)]);
}

kernel reds(X: T[M, N], Y: T[N, M], S: f32[1, N], I: i32[1, M], T: dtype = f16, BM: const = 32, BN: const = 16)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(64)
{
    x = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    s = min(x, axis=0) + sum(x, axis=0) * 0.5;
    copy(s, S[0, block_id(1)]);
    xt = trans(x) * 2.0 + broadcast(trans(s), (BN, BM));
    copy(xt, Y[block_id(1), block_id(0)]);
    xi = i32(x * 10.0);
    si = trans(sum(xi, axis=1));
    copy(si, I[0, block_id(0)]);
}

kernel moves(X: T[B, M, N], Y: T[B, M, N], Z: f32[M, N], T: dtype = f16, BM: const = 8, BN: const = 24)
    grid(B, cdiv(M, BM), cdiv(N, BN)) threads(64)
{
    s1 = shared(T[1, BM, BN], layout=padded(3));
    s2 = shared(f32[1, BM, BN], layout=col_major);
    r = register(f32[1, BM, BN], layout=spatial(1, 4, 8) * local(1, 2, 3));
    copy(X[block_id(0), block_id(1), block_id(2)], s1, pad=2.5);
    copy(s1, s2);
    copy(s2, r);
    r = r * r - 1.0;
    copy(r, s1);
    copy(s1, Y[block_id(0), block_id(1), block_id(2)]);
    t = register(f32[BM, BN]);
    copy(Y[block_id(0), block_id(1), block_id(2)], t);
    odd = register(f32[3, 5]);
    copy(X[block_id(0), 0, 0], odd);
    u = t + sum(sum(odd, axis=1), axis=0) + 1.0;
    copy(u, Z[block_id(1), block_id(2)]);
}

kernel dq(W: TW[N, K], S: f32[N, KG], Zp: i8[N, KG], O: f32[N, K], P: i32[N, K], Q: f16[N, K],
          TW: dtype = u3, G: const = 8, BN: const = 4, BK: const = 32)
    grid(cdiv(N, BN), cdiv(K, BK)) threads(32)
{
    w = register(f32[BN, BK]);
    dequant(W[block_id(0), block_id(1)], w, scale=S, group=G, zero=Zp);
    copy(w, O[block_id(0), block_id(1)]);
    p = register(i32[BN, BK]);
    copy(W[block_id(0), block_id(1)], p);
    copy(p, P[block_id(0), block_id(1)]);
    ws = shared(f16[BN, BK]);
    dequant(W[block_id(0), block_id(1)], ws, scale=S, group=G);
    copy(ws, Q[block_id(0), block_id(1)]);
}

kernel gemms(A: f32[M, K], B: f32[K, N], C: f32[M, N], D: T[K2, M2], E: T[N2, K2], F: f32[M2, N2], T: dtype = f16)
    grid(1) threads(64)
{
    a = shared(f32[24, 8]);
    b = register(f32[8, 12]);
    c = register(f32[24, 12]);
    copy(A[0, 0], a);
    copy(B[0, 0], b);
    gemm(a, b, c);
    copy(c, C[0, 0]);
    d = register(T[32, 32]);
    e = shared(T[16, 32]);
    f = register(f32[32, 16]);
    copy(D[0, 0], d);
    copy(E[0, 0], e);
    gemm(d, e, f, trans_a=true, trans_b=true);
    copy(f, F[0, 0]);
}

kernel pipe(A: T[M, K], R: f32[M, 1], T: dtype = f16, BM: const = 16, BK: const = 32)
    grid(cdiv(M, BM)) threads(64)
{
    a = shared(T[BM, BK]);
    acc = register(f32[BM, 1]);
    for k in pipelined(1, cdiv(K, BK) + 1, stages=4) {
        kk = k - 1;
        copy(A[block_id(0), kk], a);
        x = register(f32[BM, BK]);
        copy(a, x);
        acc = acc + sum(x * x, axis=1);
    }
    copy(acc, R[block_id(0), 0]);
}

kernel ring(X: T[M, K], W: T[N, K], Q: TW[N, K], S: f32[N, KG], Y: f32[M, N], Z: f32[M, N], T: dtype = f16,
           TW: dtype = u4, G: const = 32, BN: const = 8, BK: const = 64)
    grid(cdiv(N, BN), M) threads(64)
{
    x = register(f32[1, BK]);
    w = register(f32[BN, BK]);
    q = register(f32[BN, BK]);
    acc = register(f32[BN, BK]);
    acq = register(f32[BN, BK]);
    for k in pipelined(cdiv(K, BK), stages=3) {
        copy(X[block_id(1), k], x);
        copy(W[block_id(0), k], w);
        dequant(Q[block_id(0), k], q, scale=S, group=G);
        acc = acc + w * x;
        x = x * 2.0;
        acq = acq + q * x;
    }
    y = trans(sum(acc, axis=1));
    copy(y, Y[block_id(1), block_id(0)]);
    z = trans(sum(acq, axis=1));
    copy(z, Z[block_id(1), block_id(0)]);
}

kernel treds(X: f32[M, N], A: f32[M, 1], B: f32[1, N], C: f32[M, 1], D: i32[1, N])
    grid(1) threads(64)
{
    x = register(f32[16, 32], layout=column_spatial(4, 16) * local(2, 2));
    copy(X[0, 0], x);
    a = sum(x, axis=1);
    copy(a, A[0, 0]);
    b = max(x, axis=0);
    copy(b, B[0, 0]);
    y = register(f32[16, 32], layout=spatial(2, 32));
    copy(X[0, 0], y);
    c = min(y, axis=1) + sum(y * 2.0, axis=1);
    copy(c, C[0, 0]);
    z = register(i32[16, 32], layout=local(2, 1) * spatial(8, 8) * local(1, 4));
    copy(X[0, 0], z, pad=7);
    d = sum(z, axis=0) - min(z, axis=0);
    copy(d, D[0, 0]);
}
"""


def _synth_cases():
    rng = np.random.default_rng(5)
    f16 = lambda *s: rng.standard_normal(s).astype(np.float16)  # noqa: E731
    nan = lambda dt, *s: np.full(s, np.nan, dt)  # noqa: E731
    a, b = rng.integers(-50, 50, (9, 37)).astype(np.int32), rng.integers(-9, 9, (9, 37)).astype(np.int32)
    b[b == 0] = 3
    yield "ints", [a, b, np.zeros((9, 37), np.int32), np.zeros((9, 37), np.int8)], {}
    yield "reds", [f16(45, 21), nan(np.float16, 21, 45), nan(np.float32, 1, 21), np.zeros((1, 45), np.int32)], {}
    yield "moves", [f16(2, 11, 30), nan(np.float16, 2, 11, 30), nan(np.float32, 11, 30)], {}
    for tw, (n, k) in [("u1", (6, 128)), ("i2", (7, 75)), ("u3", (6, 128)), ("i4", (6, 128)), ("i4", (7, 75)),
                       ("u5", (7, 75)), ("i7", (6, 128)), ("u8", (6, 128)), ("i8", (7, 75))]:
        bits, signed = int(tw[1:]), tw[0] == "i"
        q = rng.integers(-(1 << (bits - 1)) if signed else 0, (1 << (bits - 1)) if signed else 1 << bits, (n, k))
        w = pack(q, bits) if bits < 8 else q.astype(np.int8 if signed else np.uint8)
        kg = -(-k // 8)
        yield "dq", [w, rng.standard_normal((n, kg)).astype(np.float32), rng.integers(-3, 3, (n, kg)).astype(np.int8),
                     nan(np.float32, n, k), np.zeros((n, k), np.int32), nan(np.float16, n, k)], {"TW": tw}
    yield "gemms", [rng.standard_normal((20, 7)).astype(np.float32), rng.standard_normal((7, 11)).astype(np.float32),
                    nan(np.float32, 20, 11), f16(30, 29), f16(15, 30), nan(np.float32, 29, 15)], {}
    for m, k in [(20, 100), (16, 32), (5, 200)]:
        yield "pipe", [f16(m, k), nan(np.float32, m, 1)], {}
    for k in (288, 100):  # 16-byte rows with a partial last block (cp.async into the rings); odd rows (element path)
        q = pack(rng.integers(0, 16, (21, k)), 4)
        yield "ring", [f16(3, k), f16(21, k), q, rng.standard_normal((21, -(-k // 32))).astype(np.float32),
                       nan(np.float32, 3, 21), nan(np.float32, 3, 21)], {}
    x = (rng.standard_normal((13, 29)) * 5).astype(np.float32)
    yield "treds", [x, nan(np.float32, 13, 1), nan(np.float32, 1, 29), nan(np.float32, 13, 1),
                    np.zeros((1, 29), np.int32)], {}


SYNTH_CASES = list(_synth_cases())
DEFAULT_LIBRARY = ["gemm", "linear_residual", "softmax", "rmsnorm", "attention_decode", "gemv_wNa16"]


def _emulate_and_compare(k, args, consts, dt="f16"):
    from tilelang.backends.cuda.emulate import Emulated
    tk = k.lower(**bind(k.ir, tuple(args), consts).consts)
    ref = reference(k, args, consts)
    out = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    Emulated(tk)(*out, **consts)
    tol = 2e-2 if dt == "f16" else 6e-2
    for i, (o, r) in enumerate(zip(out, ref)):
        if isinstance(o, np.ndarray):
            assert compare(o, r, dt) < tol, f"{k.name} {consts}: argument {i} differs"


@pytest.fixture(scope="module")
def synth():
    return tilelang.loads(SYNTH, "synth.tile")


@pytest.fixture(scope="module")
def prebuilt(synth):
    """Build the emulated kernels of this file in parallel (g++ runs take most of the time)."""
    if shutil.which("g++") is None:
        pytest.skip("the CPU emulator needs g++")
    from tilelang.backends.cuda.emulate import Emulated
    jobs = [synth[n].lower(**bind(synth[n].ir, tuple(a), c).consts) for n, a, c in SYNTH_CASES]
    for name in DEFAULT_LIBRARY:
        k = kernel(*next(x for x in KERNELS if x[1] == name))
        args, consts = next(cases(name, "f16", np.random.default_rng(0)))
        jobs.append(k.lower(**bind(k.ir, tuple(args), consts).consts))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(Emulated, jobs))


@needs_gpp
@pytest.mark.parametrize("case", range(len(SYNTH_CASES)), ids=[f"{n}-{c.get('TW', i)}" for i, (n, _, c)
                                                              in enumerate(SYNTH_CASES)])
def test_constructs_match_the_interpreter_on_the_emulator(prebuilt, synth, case):
    name, args, consts = SYNTH_CASES[case]
    _emulate_and_compare(synth[name], args, consts)


@needs_gpp
@pytest.mark.parametrize("name", DEFAULT_LIBRARY)
def test_library_kernels_match_the_interpreter_on_the_emulator(prebuilt, name):
    k = kernel(*next(x for x in KERNELS if x[1] == name))
    args, consts = next(cases(name, "f16", np.random.default_rng(0)))
    _emulate_and_compare(k, args, consts)


@needs_gpp
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TILELANG_CUDA_EMULATE_ALL"),
                    reason="every library case on the emulator takes minutes: set TILELANG_CUDA_EMULATE_ALL=1")
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("file,name", KERNELS)
def test_every_library_case_matches_the_interpreter_on_the_emulator(file, name, dt):
    for args, consts in cases(name, dt, np.random.default_rng(1)):
        _emulate_and_compare(kernel(file, name), args, consts, dt)


@needs_gpp
def test_misaligned_tensors_take_the_element_path(prebuilt):
    """Views that start 2 bytes into an allocation cannot use 16-byte loads: the runtime check
    routes them to element accesses (a misaligned vector access would stop the emulator)."""
    k = kernel("elementwise", "add")
    rng = np.random.default_rng(6)

    def view(m, n):
        a = np.zeros(m * n + 1, np.float16)[1:].reshape(m, n)
        a[...] = rng.standard_normal((m, n))
        return a

    x, y, z = view(5, 1030), view(5, 1030), view(5, 1030)
    _emulate_and_compare(k, [x, y, z], {})


def test_register_producers_of_a_pipeline_prefetch_into_shared_rings(synth):
    """GEMV-like loops: the global windows of register copies and dequants go through cp.async rings;
    x, broadcast over W's rows, is read from its ring (no staging, one barrier per iteration)
    until `x = x * 2` makes the register tile differ from the ring."""
    code = cuda.generate(synth["ring"].lower(T="f16", TW="u4"))
    loop = code[code.index("for (int k_ = lo; k_ < hi; ++k_)"):code.index("tl::cp_async_wait<0>();")]
    assert "tl_ring0_stages = reinterpret_cast<__half*>(tl_smem + 0);  // raw global window of line" in code
    assert ", 3 stages of 64 elements" in code and ", 3 stages of 512 elements" in code  # x, w: halves
    assert ", 3 stages of 256 elements" in code  # q: 8 rows of 32 bytes
    assert loop.count("__syncthreads();") == 3  # the pipeline's, then staging of x * 2 (before and after)
    assert "(w_[v] * tl::to_f32(tl_ring0[i1]))" in loop  # acc = acc + w * x reads x from the ring
    assert "*reinterpret_cast<const tl::Vec<unsigned int, 1>*>(tl_ring2 + (i0) * 32 + (i1) * 4 / 8);" in loop
    assert "tl::Vec<__half, 8> r0 = *reinterpret_cast<const tl::Vec<__half, 8>*>(tl_ring1 + i0 * 64 + i1);" in loop
    assert "? (((K_ * 4 + 7) / 8) - col) * 1 : 0;" in code  # q's chunks: bytes left in the packed row


@needs_gpp
def test_register_rings_have_no_data_races(synth):
    from tilelang.backends.cuda.emulate import Emulated
    name, args, consts = next(c for c in SYNTH_CASES if c[0] == "ring")
    k = synth[name]
    args = [a.copy() for a in args]
    Emulated(k.lower(**bind(k.ir, tuple(args), consts).consts), sanitize=True)(*args)  # raises on a race
    assert np.isfinite(args[4]).all() and np.isfinite(args[5]).all()


@needs_gpp
def test_gemm_pipeline_has_no_data_races():
    from tilelang.backends.cuda.emulate import Emulated
    k = kernel("gemm", "gemm")
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((40, 96)).astype(np.float16), rng.standard_normal((96, 33)).astype(np.float16), \
        np.full((40, 33), np.nan, np.float16)
    Emulated(k.lower(BM=32, BN=32, BK=32), sanitize=True)(a, b, c, BM=32, BN=32, BK=32)  # raises on a race
    assert compare(c, (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16), "f16") < 2e-2


@needs_gpp
def test_a_missing_barrier_is_caught_by_the_sanitizer(monkeypatch):
    """The race check itself works: drop the pipeline's barrier and ThreadSanitizer objects."""
    import tilelang.backends.cuda.emulate as emulate
    real = emulate.generate_source

    def broken(tk):
        src = real(tk)
        code = src.code.replace("__syncthreads();  // ... everyone", "// (barrier removed)", 1)
        return type(src)(code, *list(src.__dict__.values())[1:])

    monkeypatch.setattr(emulate, "generate_source", broken)
    k = kernel("gemm", "gemm")
    rng = np.random.default_rng(4)
    args = [rng.standard_normal((40, 96)).astype(np.float16), rng.standard_normal((96, 33)).astype(np.float16),
            np.zeros((40, 33), np.float16)]
    with pytest.raises(TileError, match="data race"):
        emulate.Emulated(k.lower(BM=32, BN=32, BK=32), sanitize=True)(*args, BM=32, BN=32, BK=32)
