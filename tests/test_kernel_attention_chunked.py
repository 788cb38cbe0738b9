"""attention_prefill_cached (kernels/attention_chunked.tile): chunked prefill, a chunk of queries at
per-sequence offsets read from a tensor attending causally to the cache's past keys and its own."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import (TOL, attention_decode, attention_prefill, attention_prefill_cached, f64, load, poisoned,
                         rand, rel_err)
from library_cases import cached_chunk
from tolerance import accumulation, allowed


def _tiles(d: int, **tiles) -> dict:
    return dict(BD=max(16, 1 << (d - 1).bit_length()), **tiles)


CASES = [  # hq, hkv, s, d, past per sequence, cache rows past the longest chunk, tiles
    (1, 1, 1, 16, [0], 0, dict(BM=16, BN=16)),
    (4, 2, 37, 24, [0, 5, 29], 3, dict(BM=16, BN=8)),
    (3, 1, 21, 64, [13, 0], 7, dict(BM=8, BN=16)),
    (6, 3, 9, 8, [1, 40, 17], 1, dict(BM=16, BN=16)),
    (2, 2, 1, 16, [33, 0], 0, dict(BM=16, BN=16)),  # one query: a decode step through the prefill kernel
]


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("hq,hkv,s,d,past,extra,tiles", CASES)
def test_attention_prefill_cached(dt, hq, hkv, s, d, past, extra, tiles):
    rng = np.random.default_rng(hq + s + d + sum(past))
    q, kc, vc, pt = cached_chunk(rng, dt, hq, hkv, s, d, past, extra)
    o = poisoned(q.shape, dt)
    load("attention_chunked")["attention_prefill_cached"](q, kc, vc, o, pt, d ** -0.5, **_tiles(d, **tiles))
    assert rel_err(o, attention_prefill_cached(q, kc, vc, pt, d ** -0.5)) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_past_zero_is_attention_prefill(dt):
    """With every past length 0 the kernel is attention_prefill on the chunk: the same tiles and order of
    operations, so they differ by no more than two correct runs of one kernel may (tolerance.allowed; the
    cache's rows past the chunk are NaN and must not leak in)."""
    rng = np.random.default_rng(3)
    q, kc, vc, pt = cached_chunk(rng, dt, 4, 2, 37, 24, [0, 0], 5)
    tiles = _tiles(24, BM=16, BN=8)
    cached, plain = poisoned(q.shape, dt), poisoned(q.shape, dt)
    load("attention_chunked")["attention_prefill_cached"](q, kc, vc, cached, pt, 0.2, **tiles)
    load("attention")["attention_prefill"](q, kc[:, :, :37].copy(), vc[:, :, :37].copy(), plain, 0.2, **tiles)
    k = load("attention_chunked")["attention_prefill_cached"]
    acc = accumulation(k.lower(**k.tuned(q, kc, vc, cached, pt, 0.2, backend="reference", **tiles)))
    assert np.isfinite(cached.astype(np.float32)).all()
    assert (np.abs(f64(cached) - f64(plain)) <= allowed(plain, acc, kc.shape[2])).all()
    assert rel_err(cached, attention_prefill(q, kc[:, :, :37], vc[:, :, :37], 0.2)) < TOL


def test_chunks_in_turn_give_the_whole_prefill():
    """Prefill of 45 tokens as chunks of 16, 16 and 13 over one cache equals attention_prefill of all 45."""
    rng = np.random.default_rng(11)
    s, d = 45, 16
    q, k, v = rand(rng, (1, 2, s, d), "f16"), rand(rng, (1, 1, s, d), "f16"), rand(rng, (1, 1, s, d), "f16")
    o = poisoned(q.shape, "f16")
    for start, stop in [(0, 16), (16, 32), (32, s)]:
        part = poisoned((1, 2, stop - start, d), "f16")
        load("attention_chunked")["attention_prefill_cached"](
            q[:, :, start:stop].copy(), k, v, part, np.array([[start]], np.int32), 0.25, BM=16, BN=16, BD=16)
        o[:, :, start:stop] = part
    assert rel_err(o, attention_prefill(q, k, v, 0.25)) < TOL


def test_positions_past_the_cache_attend_to_all_of_it():
    """A chunk running past MAXS (kv_append dropped its last rows): those queries see rows 0 .. MAXS - 1."""
    rng = np.random.default_rng(5)
    q, kc, vc, _ = cached_chunk(rng, "f16", 2, 1, 11, 16, [0, 0], 0)
    past = np.array([[20], [3]], np.int32)  # cache of 11 rows: positions 20 .. 30 and 3 .. 13 run past it
    o = poisoned(q.shape, "f16")
    load("attention_chunked")["attention_prefill_cached"](q, kc, vc, o, past, 0.25, BM=8, BN=8, BD=16)
    assert rel_err(o, attention_prefill_cached(q, kc, vc, past, 0.25)) < TOL
    whole = np.stack([attention_decode(q[:1, :, i], kc[:1], vc[:1], 11, 0.25) for i in range(11)], axis=2)
    assert rel_err(o[:1], whole) < TOL  # every query of sequence 0 sees the whole cache


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_gpu_attention_prefill_cached(backend, dt):
    """Llama-8B-like heads (32 query heads over 8, D = 128) at the default tiles, a long past and odd chunk."""
    import torch
    rng = np.random.default_rng(7)
    q, kc, vc, pt = cached_chunk(rng, dt, 32, 8, 77, 128, [0, 300, 1021], 9)
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dt]

    def dev(a):
        return torch.from_numpy(a.astype(np.float32)).to("cuda", tdt)

    o = torch.full(q.shape, float("nan"), dtype=tdt, device="cuda")
    load("attention_chunked")["attention_prefill_cached"](dev(q), dev(kc), dev(vc), o, torch.from_numpy(pt).cuda(),
                                                          128 ** -0.5, backend=backend)
    assert rel_err(o.float().cpu().numpy(), attention_prefill_cached(q, kc, vc, pt, 128 ** -0.5)) < TOL
