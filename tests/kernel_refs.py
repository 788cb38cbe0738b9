"""Plain numpy references for the kernels in kernels/, shared by kernel and backend tests.

References compute in float64 from the (rounded) inputs, so they measure a kernel's own rounding;
`rel_err` below 1e-2 is the bar for f16/bf16 kernels.  Arrays are numpy; bf16 is ml_dtypes'.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import ml_dtypes
import numpy as np

import tilelang
from tilelang.quant import dequantize, quantize

NP_DTYPES = {"f16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16), "f32": np.dtype(np.float32)}
TOL = 1e-2
KERNELS = Path(__file__).resolve().parent.parent / "kernels"


@lru_cache(maxsize=None)
def load(file: str) -> dict:
    """The kernels of kernels/<file>.tile, loaded once per test session."""
    return tilelang.load(KERNELS / f"{file}.tile")


# ----------------------------------------------------------------------------- test helpers

def rand(rng: np.random.Generator, shape, dtype: str, scale: float = 1.0) -> np.ndarray:
    """Normal random values rounded to `dtype`."""
    return (rng.standard_normal(shape) * scale).astype(NP_DTYPES[dtype])


def poisoned(shape, dtype: str) -> np.ndarray:
    """An output buffer full of NaN, so elements a kernel fails to write show up."""
    return np.full(shape, np.nan, NP_DTYPES[dtype])


def f64(x) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref||; infinite when `out` has a NaN or inf anywhere."""
    o, r = f64(out), f64(ref)
    if o.shape != r.shape:
        raise AssertionError(f"shape {o.shape} != reference shape {r.shape}")
    if not np.isfinite(o).all():
        return math.inf
    return float(np.linalg.norm(o - r) / max(np.linalg.norm(r), 1e-30))


# ----------------------------------------------------------------------------- activations

def silu(x):
    x = f64(x)
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    x = f64(x)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


# ----------------------------------------------------------------------------- linear algebra

def gemm(a, b):
    """C = A @ B."""
    return f64(a) @ f64(b)


def linear(x, w, bias=None, residual=None, act=None):
    """torch.nn.functional.linear: x @ w.T (+ bias), then act, then + residual."""
    y = f64(x) @ f64(w).T
    if bias is not None:
        y = y + f64(bias)
    if act is not None:
        y = act(y)
    if residual is not None:
        y = y + f64(residual)
    return y


def dequant(packed, bits: int, k: int, signed: bool, scale, group: int, zero=None):
    """The [N, K] float weights that packed group-quantized weights stand for."""
    return f64(dequantize(packed, bits, k, signed, f64(scale), group, None if zero is None else f64(zero)))


# (TW, group) cases of the quantized kernels' tests; group None is per-channel (G = K)
QUANT = [("u4", 32), ("i4", 64), ("u4", 128), ("u2", None), ("i3", 32), ("u8", None)]


def quantized(rng: np.random.Generator, n: int, k: int, tw: str, group: int, zp: bool, scale_dt: str):
    """Random [n, k] weights quantized to `tw` ("u4", "i3", ...): packed, scale, zero (or None) and
    the float weights they stand for."""
    bits, signed = int(tw[1:]), tw[0] == "i"
    packed, s, z = quantize(rng.standard_normal((n, k)) * 0.5, bits, group, signed=signed, zero_point=zp)
    s = s.astype(NP_DTYPES[scale_dt])
    return packed, s, z, dequant(packed, bits, k, signed, s, group, z)


# ----------------------------------------------------------------------------- normalization

def rmsnorm(x, w, eps: float):
    x = f64(x)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * f64(w)


def layernorm(x, w, b, eps: float):
    x = f64(x)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * f64(w) + f64(b)


def softmax(x):
    x = f64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- transformer pieces

def rotary(x, cos, sin, pos0: int = 0):
    """HF Llama apply_rotary_pos_emb on x [tokens, heads, D]; cos/sin [P, D/2] rows per position."""
    x = f64(x)
    t, d = x.shape[0], x.shape[-1]
    c = f64(cos)[pos0:pos0 + t, : d // 2]
    s = f64(sin)[pos0:pos0 + t, : d // 2]
    c = np.concatenate([c, c], axis=-1)[:, None, :]
    s = np.concatenate([s, s], axis=-1)[:, None, :]
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * c + rot * s


def rope_tables(positions: int, d: int, base: float = 10000.0):
    """cos, sin [positions, d/2] of Llama's rotary frequencies."""
    inv = 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang), np.sin(ang)


def attention_prefill(q, k, v, sm_scale: float):
    """Causal attention; q [B, HQ, S, D], k/v [B, HKV, S, D] with HQ a multiple of HKV."""
    q, k, v = f64(q), f64(k), f64(v)
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * sm_scale
    n = q.shape[2]
    s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    return np.einsum("bhij,bhjd->bhid", softmax(s), v)


def attention_prefill_cached(q, k_cache, v_cache, past, sm_scale: float):
    """Chunked prefill (kernels/attention_chunked.tile): the S queries of sequence b sit at positions
    past[b] .. past[b] + S - 1; the one at position p attends to its cache rows 0 .. min(p, MAXS - 1)."""
    q, s, maxs = f64(q), q.shape[2], k_cache.shape[2]
    out = []
    for b, p in enumerate(np.asarray(past, np.int64).reshape(-1)):
        n = min(p + s, maxs)
        k, v = f64(k_cache[b:b + 1, :, :n]), f64(v_cache[b:b + 1, :, :n])
        rep = q.shape[1] // k.shape[1]
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        sc = np.einsum("bhid,bhjd->bhij", q[b:b + 1], k) * sm_scale
        causal = np.arange(n)[None, :] <= np.minimum(np.arange(p, p + s), maxs - 1)[:, None]
        out.append(np.einsum("bhij,bhjd->bhid", softmax(np.where(causal, sc, -np.inf)), v))
    return np.concatenate(out)


def attention_decode(q, k_cache, v_cache, seq_len: int, sm_scale: float):
    """One query per sequence; q [B, HQ, D], caches [B, HKV, MAXS, D] with seq_len valid slots."""
    q = f64(q)
    k, v = f64(k_cache[:, :, :seq_len]), f64(v_cache[:, :, :seq_len])
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = np.einsum("bhd,bhjd->bhj", q, k) * sm_scale
    return np.einsum("bhj,bhjd->bhd", softmax(s), v)


def llama_mlp(x, wn, wg, wu, wd, residual, eps: float):
    """residual + down(silu(gate(n)) * up(n)) with n = rmsnorm(x) * wn."""
    n = rmsnorm(x, wn, eps)
    return f64(residual) + (silu(n @ f64(wg).T) * (n @ f64(wu).T)) @ f64(wd).T


# ----------------------------------------------------------------------------- the models' layouts

def grouped_qkv(q, k, v):
    """The models' fused QKV row [.., HKV, G + 2, D] from q [.., HQ, D] and k, v [.., HKV, D]."""
    hkv, d = k.shape[-2], k.shape[-1]
    g = q.shape[-2] // hkv
    lead = q.shape[:-2]
    return np.concatenate([q.reshape(*lead, hkv, g, d), k.reshape(*lead, hkv, 1, d), v.reshape(*lead, hkv, 1, d)],
                          axis=-2)


def attention_decode_lens(q, k_cache, v_cache, lens, sm_scale: float):
    """attention_decode per sequence with its own length; q [B, HQ, D], lens [B]."""
    return np.concatenate([attention_decode(q[b:b + 1], k_cache[b:b + 1], v_cache[b:b + 1], int(n), sm_scale)
                           for b, n in enumerate(lens)])


def attention_decode_paged(q, k_pages, v_pages, table, lens, sm_scale: float):
    """attention_decode_lens over a paged cache (kernels/attention_paged.tile): q [B, HQ, D], pages
    [NB, HKV, PB, D]; sequence b's token t sits in page table[b, t // PB] at slot t % PB, for t below
    min(lens[b], MAXB * PB).  Tokens on a page outside the pool are skipped; none attended gives zeros."""
    nb, _, pb, _ = k_pages.shape
    table = np.asarray(table, np.int64)
    out = []
    for b, n in enumerate(np.asarray(lens).reshape(-1)):
        kept = [(table[b, t // pb], t % pb) for t in range(min(int(n), table.shape[1] * pb))
                if 0 <= table[b, t // pb] < nb]
        if not kept:
            out.append(np.zeros((1, *q.shape[1:])))
            continue
        page, slot = np.array(kept).T
        k, v = (x[page, :, slot].transpose(1, 0, 2)[None] for x in (k_pages, v_pages))
        out.append(attention_decode(q[b:b + 1], k, v, len(page), sm_scale))
    return np.concatenate(out)


def decode_positions(pos, hkv: int, maxs: int):
    """What kernels/kv_cache.tile's decode_positions writes, from the entry positions pos [B]."""
    pos = np.asarray(pos, np.int64)
    b = np.arange(len(pos))
    kv, h = np.meshgrid(np.arange(2), np.arange(hkv), indexing="ij")
    slots = ((kv[None] * len(pos) + b[:, None, None]) * hkv + h[None]) * maxs + pos[:, None, None]
    tok = np.stack([b * maxs + pos, b * maxs + pos + 1])
    return pos + 1, pos, tok, slots.transpose(0, 2, 1).reshape(len(pos), 2 * hkv)


# ----------------------------------------------------------------------------- gathers and cache writes

def embedding(ids, table):
    """Rows of `table` at `ids`; an id outside the table gives a row of zeros (kernels/embedding.tile)."""
    ids = np.asarray(ids, np.int64)
    inside = (ids >= 0) & (ids < table.shape[0])
    return np.where(inside[:, None], table[np.clip(ids, 0, table.shape[0] - 1)], 0).astype(table.dtype)


# The scatters below return every argument as the kernel leaves it.

def scatter_rows(src, dst, rows):
    """kernels/embedding.tile's scatter_rows: src[t] at row rows[t] of dst where that is inside dst."""
    dst = dst.copy()
    for t, r in enumerate(np.asarray(rows, np.int64)):
        if 0 <= r < dst.shape[0]:
            dst[r] = src[t]
    return [src, dst, rows]


def kv_append(k, v, k_cache, v_cache, pos):
    """kernels/kv_cache.tile's kv_append: K[b, :, s] at cache row pos[b] + s (rows outside the cache dropped)."""
    k_cache, v_cache = k_cache.copy(), v_cache.copy()
    maxs = k_cache.shape[2]
    for b, p in enumerate(np.asarray(pos, np.int64)):
        for s in range(k.shape[2]):
            if 0 <= p + s < maxs:
                k_cache[b, :, p + s] = k[b, :, s]
                v_cache[b, :, p + s] = v[b, :, s]
    return [k, v, k_cache, v_cache, pos]


def kv_append_slots(qkv, cache, slots):
    """kv_append_slots: the key (value) of token m, kv head h at cache row slots[m, h, 0] (1)."""
    cache = cache.copy()
    for m in range(qkv.shape[0]):
        for h in range(qkv.shape[1]):
            for kv in range(2):
                r = int(slots[m, h, kv])
                if 0 <= r < cache.shape[0]:
                    cache[r] = qkv[m, h, qkv.shape[2] - 2 + kv]
    return [qkv, cache, slots]
