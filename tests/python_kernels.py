"""The kernels of kernels/*.tile spelled with @tile_kernel, statement for statement.

tests/test_frontend_equivalence.py checks that each builds the same IR as its .tile twin, so
the two front ends cannot drift apart.  The functions are parsed, never run.
"""
from __future__ import annotations

from tilelang import tile_kernel
from tilelang.lang import *  # noqa: F403


# ---------------------------------------------------------------- kernels/attention.tile

@tile_kernel
def attention_prefill(Q: T[B, HQ, S, D], K: T[B, HKV, S, D], V: T[B, HKV, S, D], O: T[B, HQ, S, D],
                      sm_scale: f32, T: dtype = f16, BM: const = 64, BN: const = 64, BD: const = 128):
    launch(grid=(cdiv(S, BM), HQ, B), threads=128)
    pid_m = block_id(0)
    h = block_id(1)
    b = block_id(2)
    kvh = h // (HQ // HKV)
    qk_scale = sm_scale * 1.4426950408889634
    q = shared(T[BM, BD])
    k = shared(T[BN, BD])
    v = shared(T[BN, BD])
    acc = register(f32[BM, BD])
    m = register(f32[BM, 1], init=-inf)
    l = register(f32[BM, 1])
    copy(Q[b, h, pid_m, 0], q)
    rows = iota((BM, BN), axis=0) + pid_m * BM
    for j in range(min(cdiv((pid_m + 1) * BM, BN), cdiv(S, BN))):
        copy(K[b, kvh, j, 0], k)
        copy(V[b, kvh, j, 0], v)
        qk = register(f32[BM, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BM, BN), axis=1) + j * BN
        sc = where(cols <= rows, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        pt = T(p)
        gemm(pt, v, acc)
        m = m_new
    o = acc / l
    copy(o, O[b, h, pid_m, 0])


@tile_kernel
def attention_decode(Q: T[B, HKV, G, D], K: T[B, HKV, MAXS, D], V: T[B, HKV, MAXS, D], O: T[B, HKV, G, D],
                     seq_len: i32, sm_scale: f32, T: dtype = f16, BG: const = 16, BN: const = 64,
                     BD: const = 128):
    launch(grid=(HKV, B), threads=128)
    h = block_id(0)
    b = block_id(1)
    qk_scale = sm_scale * 1.4426950408889634
    q = shared(T[BG, BD])
    k = shared(T[BN, BD])
    v = register(T[BN, BD])
    acc = register(f32[BG, BD])
    m = register(f32[BG, 1], init=-inf)
    l = register(f32[BG, 1])
    copy(Q[b, h, 0, 0], q)
    for j in range(cdiv(seq_len, BN)):
        copy(K[b, h, j, 0], k)
        copy(V[b, h, j, 0], v)
        qk = register(f32[BG, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BG, BN), axis=1) + j * BN
        sc = where(cols < seq_len, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        vrows = iota((BN, BD), axis=0) + j * BN
        vm = where(vrows < seq_len, v, 0.0)
        pt = T(p)
        gemm(pt, vm, acc)
        m = m_new
    o = acc / l
    copy(o, O[b, h, 0, 0])


@tile_kernel
def attention_decode_split(Q: T[B, HKV, G, D], K: T[B, HKV, MAXS, D], V: T[B, HKV, MAXS, D],
                           Op: f32[B, HKV, NS, G, D], Mp: f32[B, HKV, NS, G], Lp: f32[B, HKV, NS, G],
                           seq_len: i32, sm_scale: f32, T: dtype = f16, BG: const = 16, BN: const = 64,
                           BD: const = 128):
    launch(grid=(NS, HKV, B), threads=128)
    sp = block_id(0)
    h = block_id(1)
    b = block_id(2)
    qk_scale = sm_scale * 1.4426950408889634
    blocks = cdiv(seq_len, BN)
    per_split = cdiv(blocks, NS)
    q = shared(T[BG, BD])
    k = shared(T[BN, BD])
    v = register(T[BN, BD])
    acc = register(f32[BG, BD])
    m = register(f32[BG, 1], init=-inf)
    l = register(f32[BG, 1])
    copy(Q[b, h, 0, 0], q)
    for j in range(sp * per_split, min((sp + 1) * per_split, blocks)):
        copy(K[b, h, j, 0], k)
        copy(V[b, h, j, 0], v)
        qk = register(f32[BG, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BG, BN), axis=1) + j * BN
        sc = where(cols < seq_len, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        vrows = iota((BN, BD), axis=0) + j * BN
        vm = where(vrows < seq_len, v, 0.0)
        pt = T(p)
        gemm(pt, vm, acc)
        m = m_new
    copy(acc, Op[b, h, sp, 0, 0])
    mt = trans(m)
    lt = trans(l)
    copy(mt, Mp[b, h, sp, 0])
    copy(lt, Lp[b, h, sp, 0])


@tile_kernel
def attention_decode_combine(Op: f32[B, HKV, NS, G, D], Mp: f32[B, HKV, NS, G], Lp: f32[B, HKV, NS, G],
                             O: T[B, HKV, G, D], T: dtype = f16, BG: const = 16, BD: const = 128):
    launch(grid=(HKV, B), threads=128)
    h = block_id(0)
    b = block_id(1)
    ms = register(f32[1, BG])
    m = register(f32[1, BG], init=-inf)
    for s in range(NS):
        copy(Mp[b, h, s, 0], ms)
        m = max(m, ms)
    ls = register(f32[1, BG])
    os = register(f32[BG, BD])
    l = register(f32[1, BG])
    acc = register(f32[BG, BD])
    for s2 in range(NS):
        copy(Mp[b, h, s2, 0], ms)
        copy(Lp[b, h, s2, 0], ls)
        copy(Op[b, h, s2, 0, 0], os)
        wgt = exp2(ms - m)
        l = l + ls * wgt
        acc = acc + os * trans(wgt)
    o = acc / trans(l)
    copy(o, O[b, h, 0, 0])


@tile_kernel
def attention_prefill_qkv(QKV: T[B, S, C], O: T[B, S, HQD], sm_scale: f32, T: dtype = f16, D: const = 64,
                          BM: const = 64, BN: const = 64):
    launch(grid=(cdiv(S, BM), HQD // D, B), threads=128)
    pid_m = block_id(0)
    h = block_id(1)
    b = block_id(2)
    hkv = (C - HQD) // (2 * D)
    g = HQD // D // hkv
    kvh = h // g
    qcol = kvh * (g + 2) + h % g
    kcol = kvh * (g + 2) + g
    qk_scale = sm_scale * 1.4426950408889634
    q = shared(T[BM, D])
    k = shared(T[BN, D])
    v = shared(T[BN, D])
    acc = register(f32[BM, D])
    m = register(f32[BM, 1], init=-inf)
    l = register(f32[BM, 1])
    copy(QKV[b, pid_m, qcol], q)
    rows = iota((BM, BN), axis=0) + pid_m * BM
    for j in range(min(cdiv((pid_m + 1) * BM, BN), cdiv(S, BN))):
        copy(QKV[b, j, kcol], k)
        copy(QKV[b, j, kcol + 1], v)
        qk = register(f32[BM, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BM, BN), axis=1) + j * BN
        sc = where(cols <= rows, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        pt = T(p)
        gemm(pt, v, acc)
        m = m_new
    o = acc / l
    copy(o, O[b, pid_m, h])


@tile_kernel
def attention_decode_lens(Q: T[B, HKV, GQ, D], K: T[B, HKV, MAXS, D], V: T[B, HKV, MAXS, D], O: T[B, HKV, G, D],
                          Lens: i32[B, 1], sm_scale: f32, T: dtype = f16, BG: const = 16, BN: const = 64,
                          BD: const = 128):
    launch(grid=(HKV, B), threads=128)
    h = block_id(0)
    b = block_id(1)
    qk_scale = sm_scale * 1.4426950408889634
    n = register(i32[1, 1])
    copy(Lens[b, 0], n)
    q = shared(T[BG, BD])
    k = shared(T[BN, BD])
    v = register(T[BN, BD])
    acc = register(f32[BG, BD])
    m = register(f32[BG, 1], init=-inf)
    l = register(f32[BG, 1])
    copy(Q[b, h, 0, 0], q)
    for j in range(cdiv(MAXS, BN)):
        copy(K[b, h, j, 0], k)
        copy(V[b, h, j, 0], v)
        qk = register(f32[BG, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BG, BN), axis=1) + j * BN
        sc = where(cols < n, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        vrows = iota((BN, BD), axis=0) + j * BN
        vm = where(vrows < n, v, 0.0)
        pt = T(p)
        gemm(pt, vm, acc)
        m = m_new
    o = acc / l
    copy(o, O[b, h, 0, 0])


@tile_kernel
def attention_decode_paged(Q: T[B, HKV, GQ, D], Kc: T[NB, HKV, PB, D], Vc: T[NB, HKV, PB, D], O: T[B, HKV, G, D],
                           Table: i32[B, MAXB], Lens: i32[B, 1], sm_scale: f32, T: dtype = f16, PB: const = 64,
                           BG: const = 16, BD: const = 128):
    launch(grid=(HKV, B), threads=128)
    h = block_id(0)
    b = block_id(1)
    qk_scale = sm_scale * 1.4426950408889634
    n = Lens[b, 0]
    q = shared(T[BG, BD])
    k = shared(T[PB, BD])
    v = register(T[PB, BD])
    acc = register(f32[BG, BD])
    m = register(f32[BG, 1], init=-1e30)
    l = register(f32[BG, 1])
    copy(Q[b, h, 0, 0], q)
    for j in range(min(cdiv(n, PB), MAXB)):
        blk = Table[b, j]
        inside = (blk >= 0) & (blk < NB)
        copy(Kc[blk, h, 0, 0], k)
        copy(Vc[blk, h, 0, 0], v)
        qk = register(f32[BG, PB])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BG, PB), axis=1) + j * PB
        sc = where((cols < n) & inside, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        vrows = iota((PB, BD), axis=0) + j * PB
        vm = where((vrows < n) & inside, v, 0.0)
        pt = T(p)
        gemm(pt, vm, acc)
        m = m_new
    o = where(l > 0.0, acc / l, 0.0)
    copy(o, O[b, h, 0, 0])


@tile_kernel
def attention_decode_split_paged(Q: T[B, HKV, GQ, D], Kc: T[NB, HKV, PB, D], Vc: T[NB, HKV, PB, D],
                                 Op: f32[B, HKV, NS, G, D], Mp: f32[B, HKV, NS, G], Lp: f32[B, HKV, NS, G],
                                 Table: i32[B, MAXB], Lens: i32[B, 1], sm_scale: f32, T: dtype = f16,
                                 PB: const = 64, BG: const = 16, BD: const = 128):
    launch(grid=(NS, HKV, B), threads=128)
    sp = block_id(0)
    h = block_id(1)
    b = block_id(2)
    qk_scale = sm_scale * 1.4426950408889634
    per_split = cdiv(MAXB, NS)
    n = Lens[b, 0]
    q = shared(T[BG, BD])
    k = shared(T[PB, BD])
    v = register(T[PB, BD])
    acc = register(f32[BG, BD])
    m = register(f32[BG, 1], init=-1e30)
    l = register(f32[BG, 1])
    copy(Q[b, h, 0, 0], q)
    for j in range(sp * per_split, min((sp + 1) * per_split, min(cdiv(n, PB), MAXB))):
        blk = Table[b, j]
        inside = (blk >= 0) & (blk < NB)
        copy(Kc[blk, h, 0, 0], k)
        copy(Vc[blk, h, 0, 0], v)
        qk = register(f32[BG, PB])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BG, PB), axis=1) + j * PB
        sc = where((cols < n) & inside, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        vrows = iota((PB, BD), axis=0) + j * PB
        vm = where((vrows < n) & inside, v, 0.0)
        pt = T(p)
        gemm(pt, vm, acc)
        m = m_new
    copy(acc, Op[b, h, sp, 0, 0])
    mt = trans(m)
    lt = trans(l)
    copy(mt, Mp[b, h, sp, 0])
    copy(lt, Lp[b, h, sp, 0])


@tile_kernel
def attention_decode_split_lens(Q: T[B, HKV, GQ, D], K: T[B, HKV, MAXS, D], V: T[B, HKV, MAXS, D],
                                Op: f32[B, HKV, NS, G, D], Mp: f32[B, HKV, NS, G], Lp: f32[B, HKV, NS, G],
                                Lens: i32[B, 1], sm_scale: f32, T: dtype = f16, BG: const = 16, BN: const = 64,
                                BD: const = 128):
    launch(grid=(NS, HKV, B), threads=128)
    sp = block_id(0)
    h = block_id(1)
    b = block_id(2)
    qk_scale = sm_scale * 1.4426950408889634
    per_split = cdiv(cdiv(MAXS, BN), NS)
    n = register(i32[1, 1])
    copy(Lens[b, 0], n)
    q = shared(T[BG, BD])
    k = shared(T[BN, BD])
    v = register(T[BN, BD])
    acc = register(f32[BG, BD])
    m = register(f32[BG, 1], init=-1e30)
    l = register(f32[BG, 1])
    copy(Q[b, h, 0, 0], q)
    for j in range(sp * per_split, min((sp + 1) * per_split, cdiv(MAXS, BN))):
        copy(K[b, h, j, 0], k)
        copy(V[b, h, j, 0], v)
        qk = register(f32[BG, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BG, BN), axis=1) + j * BN
        sc = where(cols < n, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        vrows = iota((BN, BD), axis=0) + j * BN
        vm = where(vrows < n, v, 0.0)
        pt = T(p)
        gemm(pt, vm, acc)
        m = m_new
    copy(acc, Op[b, h, sp, 0, 0])
    mt = trans(m)
    lt = trans(l)
    copy(mt, Mp[b, h, sp, 0])
    copy(lt, Lp[b, h, sp, 0])


# ---------------------------------------------------------------- kernels/elementwise.tile

@tile_kernel
def add(X: T[M, N], Y: T[M, N], Z: T[M, N], T: dtype = f16, BM: const = 4, BN: const = 512):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=128)
    x = register(f32[BM, BN])
    y = register(f32[BM, BN])
    copy(X[block_id(0), block_id(1)], x)
    copy(Y[block_id(0), block_id(1)], y)
    z = x + y
    copy(z, Z[block_id(0), block_id(1)])


@tile_kernel
def add_bias(X: T[M, N], Bias: TB[N], Y: T[M, N], T: dtype = f16, TB: dtype = f16, BM: const = 4, BN: const = 512):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=128)
    x = register(f32[BM, BN])
    b = register(f32[BN])
    copy(X[block_id(0), block_id(1)], x)
    copy(Bias[block_id(1)], b)
    y = x + b
    copy(y, Y[block_id(0), block_id(1)])


@tile_kernel
def add_bias_gelu(X: T[M, N], Bias: TB[N], Y: T[M, N], T: dtype = f16, TB: dtype = f16, BM: const = 4,
                  BN: const = 512):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=128)
    x = register(f32[BM, BN])
    b = register(f32[BN])
    copy(X[block_id(0), block_id(1)], x)
    copy(Bias[block_id(1)], b)
    y = gelu_tanh(x + b)
    copy(y, Y[block_id(0), block_id(1)])


@tile_kernel
def add_bias_residual(X: T[M, N], Bias: TB[N], R: T[M, N], Y: T[M, N], T: dtype = f16, TB: dtype = f16,
                      BM: const = 4, BN: const = 512):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=128)
    x = register(f32[BM, BN])
    b = register(f32[BN])
    r = register(f32[BM, BN])
    copy(X[block_id(0), block_id(1)], x)
    copy(Bias[block_id(1)], b)
    copy(R[block_id(0), block_id(1)], r)
    y = r + x + b
    copy(y, Y[block_id(0), block_id(1)])


# ---------------------------------------------------------------- kernels/fused_mlp.tile

@tile_kernel
def fused_mlp_gate_up(X: T[M, H], Wn: TN[H], Wg: T[I, H], Wu: T[I, H], Hid: T[M, I], eps: f32, T: dtype = f16,
                      TN: dtype = f16, BM: const[16, 64] = 64, BN: const[32, 64] = 64, BK: const[64, 128] = 64,
                      STAGES: const[2, 3, 4] = 2, THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(I, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    xf = register(f32[BM, BK])
    sq = register(f32[BM, BK])
    for k in range(cdiv(H, BK)):
        copy(X[pid_m, k], xf)
        sq = sq + xf * xf
    rstd = rsqrt(sum(sq, axis=1) / H + eps)
    wn = register(f32[BK])
    wg = shared(T[BN, BK])
    wu = shared(T[BN, BK])
    acc_g = register(f32[BM, BN])
    acc_u = register(f32[BM, BN])
    for k2 in pipelined(cdiv(H, BK), stages=STAGES):
        copy(X[pid_m, k2], xf)
        copy(Wn[k2], wn)
        xn = T(xf * rstd * wn)
        copy(Wg[pid_n, k2], wg)
        copy(Wu[pid_n, k2], wu)
        gemm(xn, wg, acc_g, trans_b=True)
        gemm(xn, wu, acc_u, trans_b=True)
    hid = silu(acc_g) * acc_u
    copy(hid, Hid[pid_m, pid_n])


@tile_kernel
def mlp_gate_up(X: T[M, H], Wg: T[I, H], Wu: T[I, H], Hid: T[M, I], T: dtype = f16, BM: const[64, 128] = 64,
                BN: const[64, 128] = 64, BK: const[32, 64] = 64, STAGES: const[3, 4] = 3,
                THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(I, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    wg = shared(T[BN, BK])
    wu = shared(T[BN, BK])
    acc_g = register(f32[BM, BN])
    acc_u = register(f32[BM, BN])
    for k in pipelined(cdiv(H, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(Wg[pid_n, k], wg)
        copy(Wu[pid_n, k], wu)
        gemm(x, wg, acc_g, trans_b=True)
        gemm(x, wu, acc_u, trans_b=True)
    hid = silu(acc_g) * acc_u
    copy(hid, Hid[pid_m, pid_n])


@tile_kernel
def silu_mul(Gate: T[M, N], Up: T[M, N], Hid: TH[M, N], T: dtype = f16, TH: dtype = f16, BM: const = 4,
             BN: const = 512):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=128)
    g = register(f32[BM, BN])
    u = register(f32[BM, BN])
    copy(Gate[block_id(0), block_id(1)], g)
    copy(Up[block_id(0), block_id(1)], u)
    hid = silu(g) * u
    copy(hid, Hid[block_id(0), block_id(1)])


@tile_kernel
def fused_mlp_gate_up_wNa16(X: T[M, H], Wn: TN[H], Wg: TW[I, H], Sg: TS[I, KG], Wu: TW[I, H], Su: TS[I, KG],
                            Hid: T[M, I], eps: f32, TW: dtype = u4, T: dtype = f16, TN: dtype = f16, TS: dtype = f16,
                            G: const = 128, BN: const[8, 16, 32] = 16, BK: const[128, 256, 512] = 256,
                            STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(I, BN), M), threads=128)
    pid_n = block_id(0)
    m = block_id(1)
    x = register(f32[1, BK])
    sq = register(f32[1, BK])
    for k in range(cdiv(H, BK)):
        copy(X[m, k], x)
        sq = sq + x * x
    rstd = rsqrt(sum(sq, axis=1) / H + eps)
    wn = register(f32[BK])
    wg = register(f32[BN, BK])
    wu = register(f32[BN, BK])
    acc_g = register(f32[BN, BK])
    acc_u = register(f32[BN, BK])
    for k2 in pipelined(cdiv(H, BK), stages=STAGES):
        copy(X[m, k2], x)
        copy(Wn[k2], wn)
        xn = f32(T(x * rstd * wn))
        dequant(Wg[pid_n, k2], wg, scale=Sg, group=G)
        dequant(Wu[pid_n, k2], wu, scale=Su, group=G)
        acc_g = acc_g + wg * xn
        acc_u = acc_u + wu * xn
    hid = silu(trans(sum(acc_g, axis=1))) * trans(sum(acc_u, axis=1))
    copy(hid, Hid[m, pid_n])


# ---------------------------------------------------------------- kernels/gemm.tile

@tile_kernel
def gemm(A: T[M, K], B: T[K, N], C: TC[M, N], T: dtype = f16, TC: dtype = f16, BM: const[64, 128] = 64,
         BN: const[64, 128, 256] = 64, BK: const[32, 64] = 32, STAGES: const[3, 4] = 3, THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    a = shared(T[BM, BK])
    b = shared(T[BK, BN])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(A[pid_m, k], a)
        copy(B[k, pid_n], b)
        gemm(a, b, acc)
    copy(acc, C[pid_m, pid_n])


# ---------------------------------------------------------------- kernels/gemm_wNa16.tile

@tile_kernel
def gemm_wNa16(X: T[M, K], W: TW[N, K], S: TS[N, KG], Y: TY[M, N], TW: dtype = u4, T: dtype = f16,
               TS: dtype = f16, TY: dtype = f16, G: const = 128, BM: const[16, 64] = 64,
               BN: const[16, 32, 64] = 32, BK: const[64, 128, 256] = 128, STAGES: const[3, 4] = 3,
               THREADS: const[64, 128] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G)
        gemm(x, w, acc, trans_b=True)
    copy(acc, Y[pid_m, pid_n])


@tile_kernel
def gemm_wNa16_zp(X: T[M, K], W: TW[N, K], S: TS[N, KG], Z: TZ[N, KG], Y: TY[M, N], TW: dtype = u4,
                  T: dtype = f16, TS: dtype = f16, TZ: dtype = f16, TY: dtype = f16, G: const = 128,
                  BM: const[16, 64] = 64, BN: const[16, 32, 64] = 32, BK: const[64, 128, 256] = 128,
                  STAGES: const[3, 4] = 3, THREADS: const[64, 128] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G, zero=Z)
        gemm(x, w, acc, trans_b=True)
    copy(acc, Y[pid_m, pid_n])


@tile_kernel
def gemv_wNa16(X: T[M, K], W: TW[N, K], S: TS[N, KG], Y: TY[M, N], TW: dtype = u4, T: dtype = f16,
               TS: dtype = f16, TY: dtype = f16, G: const = 128, BN: const[8, 16, 32] = 16,
               BK: const[128, 256, 512, 1024] = 1024, STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(N, BN), M), threads=128)
    pid_n = block_id(0)
    m = block_id(1)
    x = register(f32[1, BK])
    w = register(f32[BN, BK])
    acc = register(f32[BN, BK])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G)
        acc = acc + w * x
    y = trans(sum(acc, axis=1))
    copy(y, Y[m, pid_n])


@tile_kernel
def gemv_wNa16_zp(X: T[M, K], W: TW[N, K], S: TS[N, KG], Z: TZ[N, KG], Y: TY[M, N], TW: dtype = u4,
                  T: dtype = f16, TS: dtype = f16, TZ: dtype = f16, TY: dtype = f16, G: const = 128,
                  BN: const[8, 16, 32] = 16, BK: const[128, 256, 512, 1024] = 1024, STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(N, BN), M), threads=128)
    pid_n = block_id(0)
    m = block_id(1)
    x = register(f32[1, BK])
    w = register(f32[BN, BK])
    acc = register(f32[BN, BK])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G, zero=Z)
        acc = acc + w * x
    y = trans(sum(acc, axis=1))
    copy(y, Y[m, pid_n])


@tile_kernel
def gemv_wNa16_residual(X: T[M, K], W: TW[N, K], S: TS[N, KG], R: TY[M, N], Y: TY[M, N], TW: dtype = u4,
                        T: dtype = f16, TS: dtype = f16, TY: dtype = f16, G: const = 128, BN: const[8, 16, 32] = 16,
                        BK: const[128, 256, 512, 1024] = 1024, STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(N, BN), M), threads=128)
    pid_n = block_id(0)
    m = block_id(1)
    x = register(f32[1, BK])
    w = register(f32[BN, BK])
    acc = register(f32[BN, BK])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G)
        acc = acc + w * x
    r = register(f32[1, BN])
    copy(R[m, pid_n], r)
    y = trans(sum(acc, axis=1)) + r
    copy(y, Y[m, pid_n])


# ---------------------------------------------------------------- kernels/gemv.tile

@tile_kernel
def wNa16_packed(X: T[M, K], W: TW[N, K] @ packed, S: TS[N, KG], Y: TY[M, N], TW: dtype = u4,
                 T: dtype = f16, TS: dtype = f16, TY: dtype = f16, G: const = 128,
                 BM: const[8, 16] = 8, BN: const[16, 32, 64] = 16, BK: const[128, 256, 512, 1024] = 512,
                 STAGES: const[2, 3, 4, 6] = 4, WK: const[1, 2, 4] = 4):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=BN * 2 * WK)
    pid_n = block_id(0)
    pid_m = block_id(1)
    x = shared(T[BM, BK])
    w = register(T[BN, BK])
    acc = register(f32[BN, BM])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G)
        gemm(w, x, acc, trans_b=True)
    y = trans(acc)
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def wNa16_packed_zp(X: T[M, K], W: TW[N, K] @ packed, S: TS[N, KG], Z: TZ[N, KG], Y: TY[M, N],
                    TW: dtype = u4, T: dtype = f16, TS: dtype = f16, TZ: dtype = f16, TY: dtype = f16,
                    G: const = 128, BM: const[8, 16] = 8, BN: const[16, 32, 64] = 16,
                    BK: const[128, 256, 512, 1024] = 512, STAGES: const[2, 3, 4, 6] = 4, WK: const[1, 2, 4] = 4):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=BN * 2 * WK)
    pid_n = block_id(0)
    pid_m = block_id(1)
    x = shared(T[BM, BK])
    w = register(T[BN, BK])
    acc = register(f32[BN, BM])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G, zero=Z)
        gemm(w, x, acc, trans_b=True)
    y = trans(acc)
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def gemv(X: T[M, K], W: T[N, K], Y: TY[M, N], T: dtype = f16, TY: dtype = f16, BM: const = 16,
         BN: const[32, 64] = 32, BK: const[128, 256, 512] = 256, STAGES: const[3, 4, 6] = 4):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    copy(acc, Y[pid_m, pid_n])


# ---------------------------------------------------------------- kernels/kv_cache.tile

@tile_kernel
def decode_positions(Pos: i32[B, 1], Cur: i32[B, 1], Tok: i64[2, B], Slots: i64[B, HKV2], maxs: i32, BB: const = 16,
                     BC: const = 32):
    launch(grid=(cdiv(B, BB),), threads=32)
    pid = block_id(0)
    p = register(i32[BB, 1])
    copy(Pos[pid, 0], p)
    copy(p, Cur[pid, 0])
    p64 = i64(p)
    seq = iota((2, BB), axis=1) + pid * BB
    tok = i64(seq) * maxs + trans(p64) + i64(iota((2, BB), axis=0))
    copy(tok, Tok[0, pid])
    for cb in range(cdiv(HKV2, BC)):
        b = iota((BB, BC), axis=0) + pid * BB
        c = iota((BB, BC), axis=1) + cb * BC
        rows = i64((c % 2 * B + b) * (HKV2 // 2) + c // 2) * maxs + p64
        copy(rows, Slots[pid, cb])
    p1 = p + 1
    copy(p1, Pos[pid, 0])


@tile_kernel
def kv_append(K: T[B, HKV, S, D], V: T[B, HKV, S, D], Kc: T[B, HKV, MAXS, D], Vc: T[B, HKV, MAXS, D],
              Pos: TP[B], T: dtype = f16, TP: dtype = i32, BS: const = 16, BD: const = 64):
    launch(grid=(B * HKV, cdiv(S, BS)), threads=64)
    b = block_id(0) // HKV
    h = block_id(0) % HKV
    j = block_id(1)
    pos = Pos[b]
    first = pos + j * BS
    end = pos + S
    for dj in range(cdiv(D, BD)):
        k = register(T[BS, BD])
        copy(K[b, h, j, dj], k)
        copy(k, Kc[b, h, first:end, dj])
        v = register(T[BS, BD])
        copy(V[b, h, j, dj], v)
        copy(v, Vc[b, h, first:end, dj])


@tile_kernel
def kv_append_slots(QKV: T[M, HKV, G2, D], Cache: T[R, D], Slots: i64[M, HKV, 2], T: dtype = f16,
                    BD: const = 128):
    launch(grid=(M, HKV), threads=32)
    m = block_id(0)
    h = block_id(1)
    for kv in range(2):
        row = Slots[m, h, kv]
        for dj in range(cdiv(D, BD)):
            x = register(T[1, BD])
            copy(QKV[m, h, G2 - 2 + kv, dj], x)
            copy(x, Cache[row:, dj])


# ---------------------------------------------------------------- kernels/embedding.tile

@tile_kernel
def embedding(Ids: TI[NT], Table: T[V, D], Out: T[NT, D], TI: dtype = i32, T: dtype = f16, BD: const = 1024):
    launch(grid=(NT, cdiv(D, BD)), threads=128)
    t = block_id(0)
    d = block_id(1)
    id = Ids[t]
    row = register(T[1, BD])
    copy(Table[id:, d], row)
    copy(row, Out[t, d])


@tile_kernel
def scatter_rows(Src: T[NT, D], Dst: T[R, D], Rows: TI[NT], TI: dtype = i64, T: dtype = f16, BD: const = 1024):
    launch(grid=(NT, cdiv(D, BD)), threads=128)
    t = block_id(0)
    d = block_id(1)
    r = Rows[t]
    row = register(T[1, BD])
    copy(Src[t, d], row)
    copy(row, Dst[r:, d])


# ---------------------------------------------------------------- kernels/layernorm.tile

@tile_kernel
def layernorm(X: T[M, H], W: TW[H], Bias: TW[H], Y: TY[M, H], eps: f32, T: dtype = f16, TW: dtype = f16,
              TY: dtype = f16, BM: const = 1, BH: const = 1024):
    launch(grid=(cdiv(M, BM),), threads=128)
    pid = block_id(0)
    x = register(f32[BM, BH])
    acc = register(f32[BM, BH])
    for h in range(cdiv(H, BH)):
        copy(X[pid, h], x)
        acc = acc + x
    mean = sum(acc, axis=1) / H
    sq = register(f32[BM, BH])
    for h2 in range(cdiv(H, BH)):
        copy(X[pid, h2], x)
        cols = iota((BM, BH), axis=1) + h2 * BH
        d = where(cols < H, x - mean, 0.0)
        sq = sq + d * d
    rstd = rsqrt(sum(sq, axis=1) / H + eps)
    w = register(f32[BH])
    b = register(f32[BH])
    for h3 in range(cdiv(H, BH)):
        copy(X[pid, h3], x)
        copy(W[h3], w)
        copy(Bias[h3], b)
        y = (x - mean) * rstd * w + b
        copy(y, Y[pid, h3])


@tile_kernel
def add_layernorm(X: T[M, H], R: T[M, H], W: TW[H], Bias: TW[H], Y: TY[M, H], eps: f32, T: dtype = f16,
                  TW: dtype = f16, TY: dtype = f16, BM: const = 1, BH: const = 1024):
    launch(grid=(cdiv(M, BM),), threads=128)
    pid = block_id(0)
    x = register(f32[BM, BH])
    r = register(f32[BM, BH])
    acc = register(f32[BM, BH])
    for h in range(cdiv(H, BH)):
        copy(X[pid, h], x)
        copy(R[pid, h], r)
        s = T(x + r)
        copy(s, R[pid, h])
        acc = acc + f32(s)
    mean = sum(acc, axis=1) / H
    sq = register(f32[BM, BH])
    for h2 in range(cdiv(H, BH)):
        copy(R[pid, h2], r)
        cols = iota((BM, BH), axis=1) + h2 * BH
        d = where(cols < H, r - mean, 0.0)
        sq = sq + d * d
    rstd = rsqrt(sum(sq, axis=1) / H + eps)
    w = register(f32[BH])
    b = register(f32[BH])
    for h3 in range(cdiv(H, BH)):
        copy(R[pid, h3], r)
        copy(W[h3], w)
        copy(Bias[h3], b)
        y = (r - mean) * rstd * w + b
        copy(y, Y[pid, h3])


# ---------------------------------------------------------------- kernels/linear.tile

@tile_kernel
def linear(X: T[M, K], W: T[N, K], Y: TY[M, N], T: dtype = f16, TY: dtype = f16, BM: const[64, 128] = 64,
           BN: const[64, 128, 256] = 64,
           BK: const[32, 64] = 32, STAGES: const[3, 4] = 3, THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    copy(acc, Y[pid_m, pid_n])


@tile_kernel
def linear_residual(X: T[M, K], W: T[N, K], R: TY[M, N], Y: TY[M, N], T: dtype = f16, TY: dtype = f16,
                    BM: const[64, 128] = 64, BN: const[64, 128, 256] = 64,
                    BK: const[32, 64] = 32, STAGES: const[3, 4] = 3, THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    r = register(f32[BM, BN])
    copy(R[pid_m, pid_n], r)
    y = acc + r
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def linear_bias(X: T[M, K], W: T[N, K], Bias: TB[N], Y: TY[M, N], T: dtype = f16, TB: dtype = f16,
                TY: dtype = f16, BM: const[64, 128] = 64, BN: const[64, 128, 256] = 64,
                BK: const[32, 64] = 32, STAGES: const[3, 4] = 3,
                THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    b = register(f32[BN])
    copy(Bias[pid_n], b)
    y = acc + b
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def linear_bias_gelu(X: T[M, K], W: T[N, K], Bias: TB[N], Y: TY[M, N], T: dtype = f16, TB: dtype = f16,
                     TY: dtype = f16, BM: const[64, 128] = 64, BN: const[64, 128, 256] = 64,
                     BK: const[32, 64] = 32, STAGES: const[3, 4] = 3,
                THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    b = register(f32[BN])
    copy(Bias[pid_n], b)
    y = gelu_tanh(acc + b)
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def linear_bias_residual(X: T[M, K], W: T[N, K], Bias: TB[N], R: TY[M, N], Y: TY[M, N], T: dtype = f16,
                         TB: dtype = f16, TY: dtype = f16, BM: const[64, 128] = 64, BN: const[64, 128, 256] = 64,
                         BK: const[32, 64] = 32, STAGES: const[3, 4] = 3, THREADS: const[128, 256] = 128):
    launch(grid=(cdiv(M, BM), cdiv(N, BN)), threads=THREADS)
    pid_m = block_id(0)
    pid_n = block_id(1)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    b = register(f32[BN])
    r = register(f32[BM, BN])
    copy(Bias[pid_n], b)
    copy(R[pid_m, pid_n], r)
    y = acc + b + r
    copy(y, Y[pid_m, pid_n])


# ---------------------------------------------------------------- kernels/norm_linear.tile

@tile_kernel
def rmsnorm_linear(X: T[M, K], Wn: TN[K], W: T[N, K], Y: TY[M, N], eps: f32, T: dtype = f16, TN: dtype = f16,
                   TY: dtype = f16, BM: const = 16, BN: const[32, 64] = 32, BK: const[64, 128, 256] = 128,
                   STAGES: const[2, 3, 4] = 3):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    xf = register(f32[BM, BK])
    sq = register(f32[BM, BK])
    for k in range(cdiv(K, BK)):
        copy(X[pid_m, k], xf)
        sq = sq + xf * xf
    rstd = rsqrt(sum(sq, axis=1) / K + eps)
    wn = register(f32[BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k2 in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k2], xf)
        copy(Wn[k2], wn)
        xn = T(xf * rstd * wn)
        copy(W[pid_n, k2], w)
        gemm(xn, w, acc, trans_b=True)
    copy(acc, Y[pid_m, pid_n])


@tile_kernel
def layernorm_linear_bias(X: T[M, K], Wn: TN[K], Bn: TN[K], W: T[N, K], Bias: TB[N], Y: TY[M, N], eps: f32,
                          T: dtype = f16, TN: dtype = f16, TB: dtype = f16, TY: dtype = f16, BM: const = 16,
                          BN: const[32, 64] = 32, BK: const[64, 128, 256] = 128, STAGES: const[2, 3, 4] = 3):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    xf = register(f32[BM, BK])
    total = register(f32[BM, BK])
    for k in range(cdiv(K, BK)):
        copy(X[pid_m, k], xf)
        total = total + xf
    mean = sum(total, axis=1) / K
    sq = register(f32[BM, BK])
    for k2 in range(cdiv(K, BK)):
        copy(X[pid_m, k2], xf)
        cols = iota((BM, BK), axis=1) + k2 * BK
        d = where(cols < K, xf - mean, 0.0)
        sq = sq + d * d
    rstd = rsqrt(sum(sq, axis=1) / K + eps)
    wn = register(f32[BK])
    bn = register(f32[BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k3 in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k3], xf)
        copy(Wn[k3], wn)
        copy(Bn[k3], bn)
        xn = T((xf - mean) * rstd * wn + bn)
        copy(W[pid_n, k3], w)
        gemm(xn, w, acc, trans_b=True)
    b = register(f32[BN])
    copy(Bias[pid_n], b)
    y = acc + b
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def layernorm_linear_bias_gelu(X: T[M, K], Wn: TN[K], Bn: TN[K], W: T[N, K], Bias: TB[N], Y: TY[M, N], eps: f32,
                               T: dtype = f16, TN: dtype = f16, TB: dtype = f16, TY: dtype = f16, BM: const = 16,
                               BN: const[32, 64] = 32, BK: const[64, 128, 256] = 128, STAGES: const[2, 3, 4] = 3):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    xf = register(f32[BM, BK])
    total = register(f32[BM, BK])
    for k in range(cdiv(K, BK)):
        copy(X[pid_m, k], xf)
        total = total + xf
    mean = sum(total, axis=1) / K
    sq = register(f32[BM, BK])
    for k2 in range(cdiv(K, BK)):
        copy(X[pid_m, k2], xf)
        cols = iota((BM, BK), axis=1) + k2 * BK
        d = where(cols < K, xf - mean, 0.0)
        sq = sq + d * d
    rstd = rsqrt(sum(sq, axis=1) / K + eps)
    wn = register(f32[BK])
    bn = register(f32[BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k3 in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[pid_m, k3], xf)
        copy(Wn[k3], wn)
        copy(Bn[k3], bn)
        xn = T((xf - mean) * rstd * wn + bn)
        copy(W[pid_n, k3], w)
        gemm(xn, w, acc, trans_b=True)
    b = register(f32[BN])
    copy(Bias[pid_n], b)
    y = gelu_tanh(acc + b)
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def rmsnorm_gemv_wNa16(X: T[M, K], Wn: TN[K], W: TW[N, K], S: TS[N, KG], Y: TY[M, N], eps: f32, TW: dtype = u4,
                       T: dtype = f16, TN: dtype = f16, TS: dtype = f16, TY: dtype = f16, G: const = 128,
                       BN: const[8, 16, 32] = 16, BK: const[128, 256, 512, 1024] = 1024, STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(N, BN), M), threads=128)
    pid_n = block_id(0)
    m = block_id(1)
    x = register(f32[1, BK])
    sq = register(f32[1, BK])
    for k in range(cdiv(K, BK)):
        copy(X[m, k], x)
        sq = sq + x * x
    rstd = rsqrt(sum(sq, axis=1) / K + eps)
    wn = register(f32[BK])
    w = register(f32[BN, BK])
    acc = register(f32[BN, BK])
    for k2 in pipelined(cdiv(K, BK), stages=STAGES):
        copy(X[m, k2], x)
        copy(Wn[k2], wn)
        xn = f32(T(x * rstd * wn))
        dequant(W[pid_n, k2], w, scale=S, group=G)
        acc = acc + w * xn
    y = trans(sum(acc, axis=1))
    copy(y, Y[m, pid_n])


# ---------------------------------------------------------------- kernels/rmsnorm.tile

@tile_kernel
def rmsnorm(X: T[M, H], W: TW[H], Y: TY[M, H], eps: f32, T: dtype = f16, TW: dtype = f16, TY: dtype = f16,
            BM: const = 1, BH: const[1024, 2048, 4096] = 2048, THREADS: const[128, 256] = 256):
    launch(grid=(cdiv(M, BM),), threads=THREADS)
    pid = block_id(0)
    x = register(f32[BM, BH])
    sq = register(f32[BM, BH])
    for h in range(cdiv(H, BH)):
        copy(X[pid, h], x)
        sq = sq + x * x
    rstd = rsqrt(sum(sq, axis=1) / H + eps)
    w = register(f32[BH])
    for h2 in range(cdiv(H, BH)):
        copy(X[pid, h2], x)
        copy(W[h2], w)
        y = x * rstd * w
        copy(y, Y[pid, h2])


@tile_kernel
def add_rmsnorm(X: T[M, H], R: T[M, H], W: TW[H], Y: TY[M, H], eps: f32, T: dtype = f16, TW: dtype = f16,
                TY: dtype = f16, BM: const = 1, BH: const = 1024):
    launch(grid=(cdiv(M, BM),), threads=128)
    pid = block_id(0)
    x = register(f32[BM, BH])
    r = register(f32[BM, BH])
    sq = register(f32[BM, BH])
    for h in range(cdiv(H, BH)):
        copy(X[pid, h], x)
        copy(R[pid, h], r)
        s = T(x + r)
        copy(s, R[pid, h])
        sf = f32(s)
        sq = sq + sf * sf
    rstd = rsqrt(sum(sq, axis=1) / H + eps)
    w = register(f32[BH])
    for h2 in range(cdiv(H, BH)):
        copy(R[pid, h2], r)
        copy(W[h2], w)
        y = r * rstd * w
        copy(y, Y[pid, h2])


# ---------------------------------------------------------------- kernels/rotary.tile

@tile_kernel
def rotary(X: T[NT, NH, D], Cos: TC[P, DC], Sin: TC[P, DC], O: T[NT, NH, D], pos0: i32, T: dtype = f16,
           TC: dtype = f32, D: const = 128, BH: const = 8):
    launch(grid=(NT, cdiv(NH, BH)), threads=128)
    t = block_id(0)
    hb = block_id(1)
    x1 = register(f32[BH, D // 2])
    x2 = register(f32[BH, D // 2])
    c = register(f32[1, D // 2])
    s = register(f32[1, D // 2])
    copy(X[t, hb, 0], x1)
    copy(X[t, hb, 1], x2)
    copy(Cos[pos0 + t, 0], c)
    copy(Sin[pos0 + t, 0], s)
    o1 = x1 * c - x2 * s
    o2 = x2 * c + x1 * s
    copy(o1, O[t, hb, 0])
    copy(o2, O[t, hb, 1])


@tile_kernel
def rotary_qk(X: T[NT, HKV, GH, D], Cos: TC[NT, DC], Sin: TC[NT, DC], T: dtype = f16, TC: dtype = f32,
              D: const = 128, BH: const = 8):
    launch(grid=(NT, HKV), threads=128)
    t = block_id(0)
    g = block_id(1)
    x1 = register(f32[BH, D // 2])
    x2 = register(f32[BH, D // 2])
    c = register(f32[1, D // 2])
    s = register(f32[1, D // 2])
    copy(X[t, g, 0, 0], x1)
    copy(X[t, g, 0, 1], x2)
    copy(Cos[t, 0], c)
    copy(Sin[t, 0], s)
    head = iota((BH, D // 2), axis=0)
    o1 = where(head < GH - 1, x1 * c - x2 * s, x1)
    o2 = where(head < GH - 1, x2 * c + x1 * s, x2)
    copy(o1, X[t, g, 0, 0])
    copy(o2, X[t, g, 0, 1])


# ---------------------------------------------------------------- kernels/softmax.tile

@tile_kernel
def softmax(X: T[M, N], Y: TY[M, N], T: dtype = f16, TY: dtype = f16, BM: const = 1, BN: const = 1024):
    launch(grid=(cdiv(M, BM),), threads=128)
    pid = block_id(0)
    x = register(f32[BM, BN])
    m = register(f32[BM, 1], init=-inf)
    l = register(f32[BM, 1])
    for j in range(cdiv(N, BN)):
        copy(X[pid, j], x, pad=-inf)
        m_new = max(m, max(x, axis=1))
        l = l * exp(m - m_new) + sum(exp(x - m_new), axis=1)
        m = m_new
    for j2 in range(cdiv(N, BN)):
        copy(X[pid, j2], x, pad=-inf)
        y = exp(x - m) / l
        copy(y, Y[pid, j2])


# ---------------------------------------------------------------- kernels/splitk.tile

@tile_kernel
def gemv_splitk(X: T[M, K], W: T[N, K], P: f32[NS, M, N], T: dtype = f16, BM: const = 16,
                BN: const[32, 64] = 32, BK: const[128, 256, 512] = 256, STAGES: const[3, 4] = 4):
    launch(grid=(cdiv(N, BN), NS, cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    s = block_id(1)
    pid_m = block_id(2)
    tiles = cdiv(K, BK)
    per_split = cdiv(tiles, NS)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(s * per_split, min((s + 1) * per_split, tiles), stages=STAGES):
        copy(X[pid_m, k], x)
        copy(W[pid_n, k], w)
        gemm(x, w, acc, trans_b=True)
    copy(acc, P[s, pid_m, pid_n])


@tile_kernel
def gemv_wNa16_splitk(X: T[M, K], W: TW[N, K], S: TS[N, KG], P: f32[NS, M, N], TW: dtype = u4, T: dtype = f16,
                      TS: dtype = f16, G: const = 128, BN: const[8, 16, 32] = 16,
                      BK: const[128, 256, 512, 1024] = 512, STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(N, BN), NS, M), threads=128)
    pid_n = block_id(0)
    s = block_id(1)
    m = block_id(2)
    tiles = cdiv(K, BK)
    per_split = cdiv(tiles, NS)
    x = register(f32[1, BK])
    w = register(f32[BN, BK])
    acc = register(f32[BN, BK])
    for k in pipelined(s * per_split, min((s + 1) * per_split, tiles), stages=STAGES):
        copy(X[m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G)
        acc = acc + w * x
    y = trans(sum(acc, axis=1))
    copy(y, P[s, m, pid_n])


@tile_kernel
def gemv_wNa16_zp_splitk(X: T[M, K], W: TW[N, K], S: TS[N, KG], Z: TZ[N, KG], P: f32[NS, M, N], TW: dtype = u4,
                         T: dtype = f16, TS: dtype = f16, TZ: dtype = f16, G: const = 128,
                         BN: const[8, 16, 32] = 16, BK: const[128, 256, 512, 1024] = 512,
                         STAGES: const[1, 3, 4] = 1):
    launch(grid=(cdiv(N, BN), NS, M), threads=128)
    pid_n = block_id(0)
    s = block_id(1)
    m = block_id(2)
    tiles = cdiv(K, BK)
    per_split = cdiv(tiles, NS)
    x = register(f32[1, BK])
    w = register(f32[BN, BK])
    acc = register(f32[BN, BK])
    for k in pipelined(s * per_split, min((s + 1) * per_split, tiles), stages=STAGES):
        copy(X[m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G, zero=Z)
        acc = acc + w * x
    y = trans(sum(acc, axis=1))
    copy(y, P[s, m, pid_n])


@tile_kernel
def gemm_wNa16_splitk(X: T[M, K], W: TW[N, K], S: TS[N, KG], P: f32[NS, M, N], TW: dtype = u4, T: dtype = f16,
                      TS: dtype = f16, G: const = 128, BM: const = 16, BN: const[16, 32, 64] = 32,
                      BK: const[64, 128, 256] = 128, STAGES: const[3, 4] = 3, THREADS: const[64, 128] = 128):
    launch(grid=(cdiv(N, BN), NS, cdiv(M, BM)), threads=THREADS)
    pid_n = block_id(0)
    s = block_id(1)
    pid_m = block_id(2)
    tiles = cdiv(K, BK)
    per_split = cdiv(tiles, NS)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(s * per_split, min((s + 1) * per_split, tiles), stages=STAGES):
        copy(X[pid_m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G)
        gemm(x, w, acc, trans_b=True)
    copy(acc, P[s, pid_m, pid_n])


@tile_kernel
def gemm_wNa16_zp_splitk(X: T[M, K], W: TW[N, K], S: TS[N, KG], Z: TZ[N, KG], P: f32[NS, M, N], TW: dtype = u4,
                         T: dtype = f16, TS: dtype = f16, TZ: dtype = f16, G: const = 128, BM: const = 16,
                         BN: const[16, 32, 64] = 32, BK: const[64, 128, 256] = 128, STAGES: const[3, 4] = 3,
                         THREADS: const[64, 128] = 128):
    launch(grid=(cdiv(N, BN), NS, cdiv(M, BM)), threads=THREADS)
    pid_n = block_id(0)
    s = block_id(1)
    pid_m = block_id(2)
    tiles = cdiv(K, BK)
    per_split = cdiv(tiles, NS)
    x = shared(T[BM, BK])
    w = shared(T[BN, BK])
    acc = register(f32[BM, BN])
    for k in pipelined(s * per_split, min((s + 1) * per_split, tiles), stages=STAGES):
        copy(X[pid_m, k], x)
        dequant(W[pid_n, k], w, scale=S, group=G, zero=Z)
        gemm(x, w, acc, trans_b=True)
    copy(acc, P[s, pid_m, pid_n])


@tile_kernel
def splitk_sum(P: f32[NS, M, N], Y: TY[M, N], TY: dtype = f16, BM: const = 1, BN: const = 512):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    acc = register(f32[BM, BN])
    for s in range(NS):
        p = register(f32[BM, BN])
        copy(P[s, pid_m, pid_n], p)
        acc = acc + p
    copy(acc, Y[pid_m, pid_n])


@tile_kernel
def splitk_sum_residual(P: f32[NS, M, N], R: TY[M, N], Y: TY[M, N], TY: dtype = f16, BM: const = 1,
                        BN: const = 512):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    acc = register(f32[BM, BN])
    for s in range(NS):
        p = register(f32[BM, BN])
        copy(P[s, pid_m, pid_n], p)
        acc = acc + p
    r = register(f32[BM, BN])
    copy(R[pid_m, pid_n], r)
    y = r + acc
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def splitk_sum_bias(P: f32[NS, M, N], Bias: TB[N], Y: TY[M, N], TB: dtype = f16, TY: dtype = f16, BM: const = 1,
                    BN: const = 512):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    acc = register(f32[BM, BN])
    for s in range(NS):
        p = register(f32[BM, BN])
        copy(P[s, pid_m, pid_n], p)
        acc = acc + p
    b = register(f32[BN])
    copy(Bias[pid_n], b)
    y = acc + b
    copy(y, Y[pid_m, pid_n])


@tile_kernel
def splitk_sum_bias_residual(P: f32[NS, M, N], Bias: TB[N], R: TY[M, N], Y: TY[M, N], TB: dtype = f16,
                             TY: dtype = f16, BM: const = 1, BN: const = 512):
    launch(grid=(cdiv(N, BN), cdiv(M, BM)), threads=128)
    pid_n = block_id(0)
    pid_m = block_id(1)
    acc = register(f32[BM, BN])
    for s in range(NS):
        p = register(f32[BM, BN])
        copy(P[s, pid_m, pid_n], p)
        acc = acc + p
    b = register(f32[BN])
    copy(Bias[pid_n], b)
    r = register(f32[BM, BN])
    copy(R[pid_m, pid_n], r)
    y = r + acc + b
    copy(y, Y[pid_m, pid_n])


# ---------------------------------------------------------------- kernels/sampling.tile

@tile_kernel
def argmax(X: T[B, V], Idx: TI[B, 1], Val: TV[B, 1], T: dtype = f32, TI: dtype = i64, TV: dtype = f32,
           BB: const = 1, BV: const[1024, 2048, 4096] = 2048):
    launch(grid=(cdiv(B, BB),), threads=128)
    pid = block_id(0)
    best = register(f32[BB, 1], init=-inf)
    best_i = register(i32[BB, 1])
    for j in range(cdiv(V, BV)):
        x = register(f32[BB, BV])
        copy(X[pid, j], x, pad=-inf)
        i = argmax(x, axis=1)
        v = sum(where(iota((BB, BV), axis=1) == i, x, 0.0), axis=1)
        better = (v > best) | ((v != v) & (best == best))
        best_i = where(better, i + j * BV, best_i)
        best = where(better, v, best)
    copy(best_i, Idx[pid, 0])
    copy(best, Val[pid, 0])

# ---------------------------------------------------------------- kernels/attention_chunked.tile

@tile_kernel
def attention_prefill_cached(Q: T[B, HQ, S, D], K: T[B, HKV, MAXS, D], V: T[B, HKV, MAXS, D], O: T[B, HQ, S, D],
                             Past: i32[B, 1], sm_scale: f32, T: dtype = f16, BM: const = 64, BN: const = 64,
                             BD: const = 128):
    launch(grid=(cdiv(S, BM), HQ, B), threads=128)
    pid_m = block_id(0)
    h = block_id(1)
    b = block_id(2)
    kvh = h // (HQ // HKV)
    past = Past[b, 0]
    end = past + S
    qk_scale = sm_scale * 1.4426950408889634
    q = shared(T[BM, BD])
    k = shared(T[BN, BD])
    v = shared(T[BN, BD])
    acc = register(f32[BM, BD])
    m = register(f32[BM, 1], init=-inf)
    l = register(f32[BM, 1])
    copy(Q[b, h, pid_m, 0], q)
    rows = min(iota((BM, BN), axis=0) + (past + pid_m * BM), MAXS - 1)
    for j in range(min(cdiv(past + (pid_m + 1) * BM, BN), cdiv(end, BN))):
        copy(K[b, kvh, j, 0], k)
        copy(V[b, kvh, j * BN:end, 0], v)
        qk = register(f32[BM, BN])
        gemm(q, k, qk, trans_b=True)
        cols = iota((BM, BN), axis=1) + j * BN
        sc = where(cols <= rows, qk * qk_scale, -inf)
        m_new = max(m, max(sc, axis=1))
        p = exp2(sc - m_new)
        alpha = exp2(m - m_new)
        l = l * alpha + sum(p, axis=1)
        acc = acc * alpha
        pt = T(p)
        gemm(pt, v, acc)
        m = m_new
    o = acc / l
    copy(o, O[b, h, pid_m, 0])
