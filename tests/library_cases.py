"""Random arguments for the library kernels, shared by the backend tests.

Each maker takes (rng, dtype name) and returns (arguments, compile-time constants): sizes are odd,
so never a multiple of a power-of-two tile, outputs are poisoned, tiles are small.
"""
from __future__ import annotations

import numpy as np

from kernel_refs import NP_DTYPES, grouped_qkv, load, poisoned, quantized, rand
from tilelang.quant import unpack


def odd(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A random odd size in [lo, hi]: never a multiple of a power-of-two tile."""
    return min(int(rng.integers(lo, hi + 1)) | 1, hi | 1)


def args_linear(extra):
    def make(rng, dt):
        m, k, n = odd(rng, 3, 40), odd(rng, 17, 50), odd(rng, 17, 40)
        args = [rand(rng, (m, k), dt), rand(rng, (n, k), dt, 0.3)]
        if extra in ("bias", "bias_residual"):
            args.append(rand(rng, (n,), dt))
        if extra in ("residual", "bias_residual"):
            args.append(rand(rng, (m, n), dt))
        return args + [poisoned((m, n), dt)], dict(BM=16, BN=16, BK=16)
    return make


def args_gemv(rng, dt):
    m, k, n = odd(rng, 1, 5), odd(rng, 33, 90), odd(rng, 17, 40)
    return [rand(rng, (m, k), dt), rand(rng, (n, k), dt, 0.3), poisoned((m, n), dt)], dict(BN=16, BK=32)


def args_quant(tw, group, zp, gemv):
    def make(rng, dt):
        m, k, n = odd(rng, 1, 5) if gemv else odd(rng, 3, 40), odd(rng, 33, 90), odd(rng, 17, 40)
        g = group or k
        w, s, z, _ = quantized(rng, n, k, tw, g, zp, dt)
        args = [rand(rng, (m, k), dt), w, s] + ([z.astype(NP_DTYPES[dt])] if zp else []) + [poisoned((m, n), dt)]
        tiles = dict(BN=16, BK=32) if gemv else dict(BM=16, BN=16, BK=16)
        return args, dict(TW=tw, G=g, **tiles)
    return make


def args_packed(zp):
    """wNa16_packed[_zp]: the weight in the order the kernel's plan chooses (`kernel.pack`)."""
    def make(rng, dt):
        m, k, n = odd(rng, 1, 5), odd(rng, 33, 90), odd(rng, 17, 40)
        w, s, z, _ = quantized(rng, n, k, "u4", 32, zp, dt)
        consts = dict(TW="u4", G=32, BN=16, BK=128, WK=2)
        kern = load("gemm_wNa16")["wNa16_packed_zp" if zp else "wNa16_packed"]
        pw = kern.pack("W", unpack(w, 4, k, False), T=dt, **consts)
        args = [rand(rng, (m, k), dt), pw, s] + ([z.astype(NP_DTYPES[dt])] if zp else []) + [poisoned((m, n), dt)]
        return args, consts
    return make


def args_norm(kind):
    def make(rng, dt):
        m, h = odd(rng, 1, 5), odd(rng, 33, 90)
        x, w = rand(rng, (m, h), dt), rand(rng, (h,), dt)
        if kind == "rmsnorm":
            args = [x, w, poisoned((m, h), dt), 1e-5]
        elif kind == "add_rmsnorm":
            args = [x, rand(rng, (m, h), dt), w, poisoned((m, h), dt), 1e-5]
        elif kind == "add_layernorm":
            args = [x, rand(rng, (m, h), dt), w, rand(rng, (h,), dt), poisoned((m, h), dt), 1e-5]
        else:
            args = [x, w, rand(rng, (h,), dt), poisoned((m, h), dt), 1e-5]
        return args, dict(BH=32)
    return make


def args_softmax(rng, dt):
    m, n = odd(rng, 1, 5), odd(rng, 33, 90)
    return [rand(rng, (m, n), dt, 3.0), poisoned((m, n), dt)], dict(BN=32)


def args_rotary(rng, dt):
    nt, nh, d, pos0 = odd(rng, 3, 9), odd(rng, 3, 9), 16, int(rng.integers(0, 5))
    cos, sin = (rand(rng, (nt + pos0 + 2, d), "f32") for _ in range(2))
    return [rand(rng, (nt, nh, d), dt), cos, sin, poisoned((nt, nh, d), dt), pos0], dict(D=d, BH=4)


def args_prefill(rng, dt):
    b, hkv, s, d = 2, 2, odd(rng, 17, 40), odd(rng, 9, 15)
    q = rand(rng, (b, 2 * hkv, s, d), dt)
    k, v = rand(rng, (b, hkv, s, d), dt), rand(rng, (b, hkv, s, d), dt)
    return [q, k, v, poisoned(q.shape, dt), 0.3], dict(BM=16, BN=16, BD=16)


def args_cache(rng, dt):
    b, hkv, g, maxs, d = 2, 2, 3, odd(rng, 33, 50), odd(rng, 9, 15)
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    kc[:, :, maxs - 2:] = np.nan  # slots past seq_len may hold anything
    return rand(rng, (b, hkv, g, d), dt), kc, vc, maxs - 2


def args_decode(rng, dt):
    q, kc, vc, seq = args_cache(rng, dt)
    return [q, kc, vc, poisoned(q.shape, dt), seq, 0.3], dict(BG=4, BN=16, BD=16)


def args_decode_split(rng, dt):
    q, kc, vc, seq = args_cache(rng, dt)
    b, hkv, g, d = q.shape
    ns = 4  # more splits than key blocks for short caches: the last ones have nothing to do
    parts = [poisoned((b, hkv, ns, g, d), "f32"), poisoned((b, hkv, ns, g), "f32"), poisoned((b, hkv, ns, g), "f32")]
    return [q, kc, vc, *parts, seq, 0.3], dict(BG=4, BN=16, BD=16)


def args_decode_combine(rng, dt):
    b, hkv, ns, g, d = 2, 2, 3, 3, odd(rng, 9, 15)
    op, mp = rand(rng, (b, hkv, ns, g, d), "f32"), rand(rng, (b, hkv, ns, g), "f32")
    lp = np.abs(rand(rng, (b, hkv, ns, g), "f32")) + 0.5
    return [op, mp, lp, poisoned((b, hkv, g, d), dt)], dict(BG=4, BD=16)


def args_mlp(rng, dt):
    m, h, i = odd(rng, 3, 20), odd(rng, 17, 40), odd(rng, 17, 40)
    args = [rand(rng, (m, h), dt), rand(rng, (h,), dt), rand(rng, (i, h), dt, 0.3), rand(rng, (i, h), dt, 0.3),
            poisoned((m, i), dt), 1e-5]
    return args, dict(BM=16, BN=16, BK=16)


def args_mlp_gate_up(rng, dt):
    m, h, i = odd(rng, 3, 20), odd(rng, 17, 40), odd(rng, 17, 40)
    args = [rand(rng, (m, h), dt), rand(rng, (i, h), dt, 0.3), rand(rng, (i, h), dt, 0.3), poisoned((m, i), dt)]
    return args, dict(BM=16, BN=16, BK=16)


def args_binary(rng, dt):
    m, n = odd(rng, 3, 9), odd(rng, 33, 90)
    return [rand(rng, (m, n), dt), rand(rng, (m, n), dt), poisoned((m, n), dt)], dict(BM=4, BN=32)


def args_bias(kind):
    def make(rng, dt):
        m, n = odd(rng, 3, 9), odd(rng, 33, 90)
        args = [rand(rng, (m, n), dt), rand(rng, (n,), dt)] + ([rand(rng, (m, n), dt)] if kind == "residual" else [])
        return args + [poisoned((m, n), dt)], dict(BM=4, BN=32)
    return make


def _grouped(rng, dt, lead, hkv, g, d):
    q, k, v = rand(rng, (*lead, hkv * g, d), dt), rand(rng, (*lead, hkv, d), dt), rand(rng, (*lead, hkv, d), dt)
    return grouped_qkv(q, k, v)


def args_cache_lens(rng, dt):
    """A grouped QKV row as the query, caches poisoned past each sequence's own length."""
    b, hkv, g, maxs, d = 3, 2, 3, odd(rng, 33, 50), odd(rng, 9, 15)
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    lens = np.array([[maxs - 2], [1], [maxs // 2]], np.int32)
    for i, n in enumerate(lens[:, 0]):
        kc[i, :, n:] = np.nan
    return _grouped(rng, dt, (b,), hkv, g, d), kc, vc, lens


def args_decode_lens(rng, dt):
    qkv, kc, vc, lens = args_cache_lens(rng, dt)
    b, hkv, gq, d = qkv.shape
    return [qkv, kc, vc, poisoned((b, hkv, gq - 2, d), dt), lens, 0.3], dict(BG=4, BN=16, BD=16)


def args_decode_split_lens(rng, dt):
    qkv, kc, vc, lens = args_cache_lens(rng, dt)
    b, hkv, gq, d = qkv.shape
    ns, g = 4, gq - 2
    parts = [poisoned((b, hkv, ns, g, d), "f32"), poisoned((b, hkv, ns, g), "f32"), poisoned((b, hkv, ns, g), "f32")]
    return [qkv, kc, vc, *parts, lens, 0.3], dict(BG=4, BN=16, BD=16)


def paged_cache(rng, dt, b, hkv, d, pb, maxb, lens):
    """Pools of pages Kc, Vc [NB, HKV, PB, D] with a shuffled table Table [B, MAXB] and Lens [B, 1]:
    every slot no sequence may read (spare pages, table entries past a length, slots past it in the
    last page) is NaN, so a wrong read shows."""
    nb = b * maxb + 3  # spare pages
    kc, vc = (np.full((nb, hkv, pb, d), np.nan, NP_DTYPES[dt]) for _ in range(2))
    table = rng.permutation(nb)[:b * maxb].reshape(b, maxb).astype(np.int32)
    for i, n in enumerate(lens):
        for j in range(-(-n // pb)):
            used = min(pb, n - j * pb)
            kc[table[i, j], :, :used] = rand(rng, (hkv, used, d), dt)
            vc[table[i, j], :, :used] = rand(rng, (hkv, used, d), dt)
    return kc, vc, table, np.array(lens, np.int32).reshape(b, 1)


def _paged_case(rng, dt):
    """(QKV, Kc, Vc, Table, Lens, consts): a grouped QKV row and a paged cache with an odd head dim,
    odd lengths, one a page multiple, one of 1 and one of 0, a table entry outside the pool (the page
    is skipped) and NaN wherever a sequence may not read."""
    b, hkv, g, d, pb, maxb = 4, 2, 3, odd(rng, 9, 15), 32, 3  # PB = 32: mma-sized over 4 warps
    lens = [odd(rng, 2 * pb + 1, 3 * pb - 1), 1, 2 * pb, 0]
    kc, vc, table, n = paged_cache(rng, dt, b, hkv, d, pb, maxb, lens)
    kc[table[2, 1]] = vc[table[2, 1]] = np.nan
    table[2, 1] = kc.shape[0] + 7  # out of the pool: the page is skipped, nothing is read
    return _grouped(rng, dt, (b,), hkv, g, d), kc, vc, table, n, dict(PB=pb, BG=4, BD=16)


def args_decode_paged(rng, dt):
    qkv, kc, vc, table, n, consts = _paged_case(rng, dt)
    b, hkv, gq, d = qkv.shape
    return [qkv, kc, vc, poisoned((b, hkv, gq - 2, d), dt), table, n, 0.3], consts


def args_decode_split_paged(rng, dt):
    """As args_decode_paged, in NS = 2 runs of the table's 3 entries (the last run shorter)."""
    qkv, kc, vc, table, n, consts = _paged_case(rng, dt)
    b, hkv, gq, d = qkv.shape
    ns, g = 2, gq - 2
    parts = [poisoned((b, hkv, ns, g, d), "f32"), poisoned((b, hkv, ns, g), "f32"), poisoned((b, hkv, ns, g), "f32")]
    return [qkv, kc, vc, *parts, table, n, 0.3], consts


PAGED = [("attention_paged", "attention_decode_paged", args_decode_paged),
         ("attention_paged", "attention_decode_split_paged", args_decode_split_paged)]
"""(file, kernel, maker) of kernels/attention_paged.tile, for every backend's table."""


def cached_chunk(rng, dt, hq, hkv, s, d, past, extra):
    """attention_prefill_cached's inputs: a chunk Q [B, HQ, S, D] at positions past[b] .. past[b] + S - 1
    (B = len(past)), caches [B, HKV, max(past) + S + extra, D] whose rows past each chunk are NaN (garbage
    a wrong read shows), and Past [B, 1] i32."""
    b, maxs = len(past), max(past) + s + extra
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    for i, p in enumerate(past):
        kc[i, :, p + s:] = np.nan
        vc[i, :, p + s:] = np.nan
    return rand(rng, (b, hq, s, d), dt), kc, vc, np.array(past, np.int32).reshape(b, 1)


def args_prefill_cached(rng, dt):
    """An odd chunk at odd past lengths and at 0, GQA with G = 2."""
    past = [0, odd(rng, 1, 15), odd(rng, 17, 31)]
    q, kc, vc, pt = cached_chunk(rng, dt, 4, 2, odd(rng, 9, 21), odd(rng, 9, 15), past, odd(rng, 3, 9))
    return [q, kc, vc, poisoned(q.shape, dt), pt, 0.3], dict(BM=16, BN=16, BD=16)


def args_prefill_qkv(rng, dt):
    b, hkv, g, s, d = 2, 2, 2, odd(rng, 17, 40), 16
    qkv = _grouped(rng, dt, (b, s), hkv, g, d).reshape(b, s, -1)
    return [qkv, poisoned((b, s, hkv * g * d), dt), 0.3], dict(D=d, BM=16, BN=16)


def args_rotary_qk(rng, dt):
    nt, hkv, g, d = odd(rng, 3, 9), 3, 2, 16
    cos, sin = (rand(rng, (nt, d), "f32") for _ in range(2))
    return [_grouped(rng, dt, (nt,), hkv, g, d), cos, sin], dict(D=d, BH=4)


def args_positions(rng, dt):
    b, hkv, maxs = odd(rng, 3, 9), odd(rng, 3, 9), 1000
    pos = rng.integers(0, maxs - 1, (b, 1)).astype(np.int32)
    return [pos, np.full((b, 1), -7, np.int32), np.full((2, b), -7, np.int64), np.full((b, 2 * hkv), -7, np.int64),
            maxs], dict(BB=4, BC=4)


def args_norm_linear(kind):
    """Decode rows (M <= 16) through a norm fused into a linear layer."""
    def make(rng, dt):
        m, k, n = odd(rng, 1, 15), odd(rng, 33, 90), odd(rng, 17, 40)
        x, wn, w = rand(rng, (m, k), dt), rand(rng, (k,), dt), rand(rng, (n, k), dt, 0.3)
        if kind == "rms":
            return [x, wn, w, poisoned((m, n), dt), 1e-5], dict(BN=32, BK=32)
        return [x, wn, rand(rng, (k,), dt), w, rand(rng, (n,), dt), poisoned((m, n), dt), 1e-5], dict(BN=32, BK=32)
    return make


def args_quant_fused(kind):
    """One-row quantized kernels with a fused norm or epilogue (symmetric codes)."""
    def make(rng, dt):
        m, k, n = odd(rng, 1, 3), odd(rng, 33, 90), odd(rng, 17, 40)
        w, s, _, _ = quantized(rng, n, k, "i4", 32, False, dt)
        x = rand(rng, (m, k), dt)
        consts = dict(TW="i4", G=32, BN=16, BK=32)
        if kind == "residual":
            return [x, w, s, rand(rng, (m, n), dt), poisoned((m, n), dt)], consts
        if kind == "norm":
            return [x, rand(rng, (k,), dt), w, s, poisoned((m, n), dt), 1e-5], consts
        wu, su, _, _ = quantized(rng, n, k, "i4", 32, False, dt)
        return [x, rand(rng, (k,), dt), w, s, wu, su, poisoned((m, n), dt), 1e-5], consts
    return make


def args_embedding(rng, dt):
    """Token ids (i64) with some outside the table, which give zero rows."""
    v, d, nt = odd(rng, 9, 41), odd(rng, 17, 90), odd(rng, 3, 21)
    ids = rng.integers(-3, v + 3, nt).astype(np.int64)
    return [ids, rand(rng, (v, d), dt), poisoned((nt, d), dt)], dict(BD=32)


def args_scatter_rows(rng, dt):
    """Distinct destination rows, some outside the table (written nowhere)."""
    r, d, nt = odd(rng, 21, 41), odd(rng, 17, 90), odd(rng, 3, 15)
    rows = rng.permutation(r)[:nt].astype(np.int64)
    rows[0], rows[-1] = -2, r + 1
    return [rand(rng, (nt, d), dt), rand(rng, (r, d), dt), rows], dict(BD=32)


def args_kv_append(rng, dt):
    """New rows at per-sequence positions, one running past the cache's end."""
    b, hkv, s, d, maxs = odd(rng, 1, 5), odd(rng, 1, 3), odd(rng, 1, 21), odd(rng, 17, 40), odd(rng, 25, 41)
    pos = np.array([int(rng.integers(0, maxs - s)) for _ in range(b - 1)] + [maxs - s // 2 - 1], np.int32)
    return [rand(rng, (b, hkv, s, d), dt), rand(rng, (b, hkv, s, d), dt), rand(rng, (b, hkv, maxs, d), dt),
            rand(rng, (b, hkv, maxs, d), dt), pos], dict(BS=8, BD=16)


def args_kv_append_slots(rng, dt):
    """Grouped QKV rows into distinct cache rows, some slots outside the cache."""
    m, hkv, g, d, r = odd(rng, 1, 9), 2, 3, odd(rng, 17, 40), 61
    slots = rng.permutation(r)[:m * hkv * 2].reshape(m, hkv, 2).astype(np.int64)
    slots[0, 0, 1], slots[-1, -1, 0] = -1, r + 5
    return [rand(rng, (m, hkv, g + 2, d), dt), rand(rng, (r, d), dt), slots], dict(BD=16)


def run_scatter(file: str, name: str, dt: str, seed: int) -> tuple[list, list]:
    """A scatter kernel of the library on its maker's arguments: (the arguments after the kernel, after
    its numpy reference in kernel_refs, which returns every argument)."""
    import kernel_refs
    args, consts = globals()[f"args_{name}"](np.random.default_rng(seed), dt)
    want = getattr(kernel_refs, name)(*args)
    load(file)[name](*args, **consts)
    return args, want


def args_splitk(kind):
    """Split-K partial sums (kernels/splitk.tile) into a poisoned f32 workspace: more splits than K
    tiles at the small K, so trailing splits have no tiles and must write zeros."""
    def make(rng, dt):
        m = odd(rng, 1, 1 if kind.startswith("gemv_wNa16") else 15)
        k, n, ns = odd(rng, 33, 90), odd(rng, 17, 40), 4
        x, p = rand(rng, (m, k), dt), poisoned((ns, m, n), "f32")
        if kind == "gemv":
            return [x, rand(rng, (n, k), dt, 0.3), p], dict(BN=16, BK=16)
        zp = kind.endswith("_zp")
        w, s, z, _ = quantized(rng, n, k, "u4" if zp else "i4", 32, zp, dt)
        zero = [z.astype(NP_DTYPES[dt])] if zp else []
        return [x, w, s, *zero, p], dict(TW="u4" if zp else "i4", G=32, BN=16,
                                         BK=16 if kind.startswith("gemm_wNa16") else 32)
    return make


def args_splitk_sum(extra):
    """splitk_sum[_bias][_residual]: NS f32 partials reduced in order, then the epilogue."""
    def make(rng, dt):
        ns, m, n = 3, odd(rng, 1, 5), odd(rng, 33, 90)
        args = [rand(rng, (ns, m, n), "f32")] + ([rand(rng, (n,), dt)] if "bias" in extra else [])
        args += [rand(rng, (m, n), dt)] if "residual" in extra else []
        return args + [poisoned((m, n), dt)], dict(BN=32)
    return make


SPLITK = [("splitk", "gemv_splitk", args_splitk("gemv")),
          ("splitk", "gemv_wNa16_splitk", args_splitk("gemv_wNa16")),
          ("splitk", "gemm_wNa16_splitk", args_splitk("gemm_wNa16")),
          ("splitk", "gemv_wNa16_zp_splitk", args_splitk("gemv_wNa16_zp")),
          ("splitk", "gemm_wNa16_zp_splitk", args_splitk("gemm_wNa16_zp")),
          *[("splitk", "splitk_sum" + e, args_splitk_sum(e)) for e in ("", "_bias", "_residual", "_bias_residual")]]
"""(file, kernel, maker) of kernels/splitk.tile, for every backend's table."""


def args_argmax(rng, dt):
    """argmax (kernels/sampling.tile) over rows with a tie across tiles, NaNs, infinities and all -inf."""
    b, v = 5, odd(rng, 300, 700)
    x = rand(rng, (b, v), dt)
    x[0, [7, v - 3]] = 6.0  # a tie in different tiles: the first wins
    x[1, [v // 2, 5]] = np.nan  # the first NaN wins over every number
    x[2, [v - 1, 200]] = np.inf
    x[3, :] = -np.inf
    return [x, np.full((b, 1), -7, np.int64), poisoned((b, 1), "f32")], dict(BV=128)


SAMPLING = [("sampling", "argmax", args_argmax)]
"""(file, kernel, maker) of kernels/sampling.tile."""
