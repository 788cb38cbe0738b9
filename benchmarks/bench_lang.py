"""GPU: the gather/scatter kernels built on scalars read from tensors and windows at element offsets
(kernels/embedding.tile, kernels/kv_cache.tile) against the torch ops the models used before, on Triton
and CUDA, f16 and bf16, odd shapes.  Each row first checks the kernel's result against torch's
(bit-equal: these kernels only move values), then times both (tilelang.bench.timing: CUDA-graph
replay).  Prints a markdown table; a mismatch is a row marked FAIL and exit status 1.

    python3 benchmarks/bench_lang.py [--backends triton,cuda]
"""
from __future__ import annotations

import argparse
import sys

import torch

import tilelang.kernels as library
from tilelang.bench.timing import time_us

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}


def cases(dt: torch.dtype):
    """(name, case, run(backend), torch reference, the output tensors to compare)."""
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device="cuda").to(dt)

    for v, d, nt in [(50257, 1024, 1), (128257, 2047, 333)]:  # a decode token; an odd prefill
        table, out = randn(v, d), torch.empty(nt, d, dtype=dt, device="cuda")
        ids = torch.randint(0, v, (nt,), generator=g, device="cuda")
        ids[0] = v + 3  # out of range: a zero row
        want = torch.where((ids < v)[:, None], table[ids.clamp(max=v - 1)], 0)
        yield ("embedding", f"V={v} D={d} NT={nt}", lambda b, t=table, i=ids, o=out: library.embedding(i, t, o, backend=b),
               lambda t=table, i=ids.clamp(max=v - 1): torch.index_select(t, 0, i), (out,), (want,))
    for m, hkv, gq, hd, maxs in [(1, 8, 4, 128, 4096), (333, 3, 5, 67, 1000)]:  # Llama-8B decode; odd prefill
        qkv = randn(m, hkv, gq + 2, hd)
        cache = randn(2 * maxs * hkv, hd)
        slots = torch.randperm(2 * maxs * hkv, generator=g, device="cuda")[:m * hkv * 2].view(m, hkv, 2)
        want = cache.clone()
        want.index_put_((slots,), qkv[:, :, gq:])
        yield ("kv_append_slots", f"M={m} HKV={hkv} D={hd}",
               lambda b, q=qkv, c=cache, s=slots: library.kv_append_slots(q, c, s, backend=b),
               lambda q=qkv, c=cache.clone(), s=slots: c.index_put_((s,), q[:, :, gq:]), (cache,), (want,))
    for b_, hkv, s, hd, maxs in [(4, 8, 1, 128, 4096), (3, 5, 77, 67, 300)]:
        k, v = randn(b_, hkv, s, hd), randn(b_, hkv, s, hd)
        kc, vc = randn(b_, hkv, maxs, hd), randn(b_, hkv, maxs, hd)
        pos = torch.randint(0, maxs - s, (b_,), generator=g, device="cuda").to(torch.int32)
        pos[-1] = maxs - s // 2 - 1  # runs past the end: those rows are dropped
        wk, wv = kc.clone(), vc.clone()
        for i, p in enumerate(pos.tolist()):
            n = min(s, maxs - p)
            wk[i, :, p:p + n], wv[i, :, p:p + n] = k[i, :, :n], v[i, :, :n]
        yield ("kv_append", f"B={b_} HKV={hkv} S={s} D={hd}",
               lambda b, a=(k, v, kc, vc, pos): library.kv_append(*a, backend=b),
               lambda k=k, kc=kc.clone(): kc[:, :, :s].copy_(k), (kc, vc), (wk, wv))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="triton,cuda")
    backends = ap.parse_args().backends.split(",")
    lines = ["| kernel | case | dtype | " + " | ".join(f"{b} us" for b in backends) + " | torch us | check |",
             "|" + "---|" * (len(backends) + 5)]
    rc = 0
    for dn, dt in DTYPES.items():
        for name, case, run, ref, outs, wants in cases(dt):
            cells, ok = [], True
            for b in backends:
                run(b)
                torch.cuda.synchronize()
                ok &= all(torch.equal(o, w) for o, w in zip(outs, wants))
                cells.append(f"{time_us(lambda: run(b))[0]:.1f}")
            rc |= not ok
            lines.append(f"| {name} | {case} | {dn} | " + " | ".join(cells) +
                         f" | {time_us(ref)[0]:.1f} | {'ok' if ok else 'FAIL'} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return rc


if __name__ == "__main__":
    sys.exit(main())
