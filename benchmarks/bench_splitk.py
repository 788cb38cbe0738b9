"""Split-K decode projections (kernels/splitk.tile via tilelang.splitk) against torch, in one GPU run.

For every M = 1 projection of GPT-2-medium, Llama-1B and Llama-8B (qkv, o, gate|up (one of the two),
down, LM head; shapes from tilelang.models.config.BUILTIN), side by side in one process:
  fp16:   torch `F.linear` (cuBLAS), our unsplit `gemv`, and the split form at the plan's NS
          (tilelang.splitk.plan on this GPU's SM count), plus the best NS of a small sweep;
  W4A16:  bf16 activations, 4-bit codes with group-128 scales: `torch._weight_int4pack_mm` where its
          shape rules allow, the fp16 cuBLAS time, our unsplit kernel (`gemv_wNa16` at M = 1,
          `gemm_wNa16` BM = 16 at M = 16) and the split form; M = 1 and M = 16 on 11008 x 4096 too.
Weights rotate over enough copies to exceed L2 (HBM reads, as a forward pass). Every configuration is
checked against a float reference first (a wrong one is reported, not timed). Times are CUDA-graph
replays (tilelang.bench.timing.time_us). The short table comes last.

    python benchmarks/bench_splitk.py [--backend triton|cuda] [--tune] [--quick] [--out FILE]

--tune lets the library autotune its candidates (slow: minutes); without it every kernel runs its
defaults (TILELANG_AUTOTUNE=0), which is what the plan counts blocks with.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

G = 128
SWEEP = (2, 4, 8, 16)


def projections(quick: bool) -> list[tuple[str, str, int, int]]:
    """(model, layer, K, N) of every M = 1 projection, from the built-in configs."""
    from tilelang.models.config import BUILTIN
    out = []
    for name in ("gpt2-medium", "llama-1b", "llama-8b"):
        c = BUILTIN[name]
        q = c.heads * c.head_dim
        out += [(name, "qkv", c.hidden, q + 2 * c.kv_heads * c.head_dim), (name, "o", q, c.hidden),
                (name, "gate|up", c.hidden, c.intermediate), (name, "down", c.intermediate, c.hidden),
                (name, "lm_head", c.hidden, c.vocab)]
    return [p for p in out if p[0] == "llama-1b"] if quick else out


def measured(fn, check, weights):
    """fn's time in us on rotating weights after `check()` passed, else the reason as a string."""
    from tilelang.bench.timing import time_us
    try:
        fn(weights())
        err = check()
        if not err < 1e-2:
            return f"wrong ({err:.1e})"
        return time_us(lambda: fn(weights()))[0]
    except Exception as e:  # noqa: BLE001 - report and go on
        return f"error: {type(e).__name__}: {str(e)[:100]}"


def fmt(t) -> str:
    return f"{t:.1f}" if isinstance(t, float) else str(t)


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) else "-"


def best_split(run_split, check, weights):
    """(NS, us) of the fastest split count of SWEEP."""
    best = None
    for ns in SWEEP:
        t = measured(lambda w, ns=ns: run_split(w, ns), check, weights)
        if isinstance(t, float) and (best is None or t < best[1]):
            best = (ns, t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="triton", choices=["triton", "cuda"])
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--quick", action="store_true", help="Llama-1B only, no NS sweep")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not args.tune:
        os.environ["TILELANG_AUTOTUNE"] = "0"
    import torch
    import torch.nn.functional as F

    import tilelang
    from tilelang import splitk
    from tilelang.bench.timing import copy_bandwidth_gbs
    from bench_w4a16_packed import int4pack, rotating  # this folder's: the same rotation and tinygemm packing

    lib = tilelang.kernels

    def launch(name, *a, **c):
        lib.load(name)(*a, backend=args.backend, **c)

    dev = torch.device("cuda")
    sms = splitk.sm_count(dev)
    gpu = torch.cuda.get_device_name()
    print(f"{gpu}, {sms} SMs, copy bandwidth {copy_bandwidth_gbs():.0f} GB/s, backend {args.backend}, "
          f"{'autotuned' if args.tune else 'default tiles'}", flush=True)
    dense_rows, quant_rows = [], []

    # ---------------------------------------------------------------- fp16, M = 1
    for model, layer, k, n in projections(args.quick):
        w = torch.randn(n, k, dtype=torch.float16, device=dev) * 0.05
        x = torch.randn(1, k, dtype=torch.float16, device=dev)
        y = torch.empty(1, n, dtype=torch.float16, device=dev)
        ref = x.float() @ w.float().t()
        weights = rotating(lambda: w.clone(), n * k * 2)

        def check():
            return ((y.float() - ref).norm() / ref.norm()).item()
        ns = splitk.plan(1, n, k, sms=sms)
        row = dict(case=f"{model} {layer}", k=k, n=n, ns=ns)
        row["torch"] = measured(lambda w_: F.linear(x, w_), lambda: 0.0, weights)
        row["gemv"] = measured(lambda w_: launch("gemv", x, w_, y), check, weights)
        run_split = lambda w_, s: splitk.linear(x, w_, y, splits=s, launch=launch)  # noqa: E731
        row["split"] = measured(lambda w_: run_split(w_, ns), check, weights) if ns > 1 else row["gemv"]
        row["best"] = None if args.quick else best_split(run_split, check, weights)
        dense_rows.append(row)
        print(f"fp16 M=1 {row['case']} K={k} N={n}: torch {fmt(row['torch'])} us, gemv {fmt(row['gemv'])}, "
              f"split NS={ns} {fmt(row['split'])}, best {row['best']}", flush=True)

    # ---------------------------------------------------------------- W4A16, M = 1 (and M = 16 on 11008 x 4096)
    quant_cases = [(m, model, layer, k, n) for model, layer, k, n in projections(args.quick) for m in (1,)]
    quant_cases += [(m, "w4a16", "11008x4096", 11008, 4096) for m in (1, 16)]
    for m, model, layer, k, n in quant_cases:
        q = torch.randint(0, 16, (n, k), dtype=torch.int32, device=dev)  # unsigned 4-bit codes, w = q * s
        s = (torch.rand(n, k // G, device=dev) * 0.01).to(torch.bfloat16)
        deq = q.float() * s.float().repeat_interleave(G, dim=1)
        wq = (q[:, 0::2] | (q[:, 1::2] << 4)).to(torch.uint8)  # tilelang.quant.pack's LSB-first bytes
        wbytes = wq.numel() + s.numel() * 2
        x = torch.randn(m, k, dtype=torch.bfloat16, device=dev)
        y = torch.empty(m, n, dtype=torch.bfloat16, device=dev)
        ref = x.float() @ deq.t()

        def check():
            return ((y.float() - ref).norm() / ref.norm()).item()
        ns = splitk.plan(m, n, k, sms=sms, quantized=True)
        row = dict(case=f"M={m} {model} {layer}", k=k, n=n, ns=ns, m=m)
        try:
            wp, sz = int4pack(q, s.float())
            tiny = rotating(lambda: (wp.clone(), sz.clone()), wbytes)
            row["int4pack"] = measured(lambda p: torch.ops.aten._weight_int4pack_mm(x, p[0], G, p[1]),
                                       lambda: 0.0, tiny)
        except Exception as e:  # noqa: BLE001 - its shape rules
            row["int4pack"] = f"n/a ({type(e).__name__})"
        xf, dense = x.half(), rotating(lambda: deq.half(), n * k * 2)
        row["fp16"] = measured(lambda w_: torch.matmul(xf, w_.t()), lambda: 0.0, dense)
        weights = rotating(lambda: wq.clone(), wbytes)
        plain_name, tiles = ("gemv_wNa16", {}) if m == 1 else ("gemm_wNa16", dict(BM=16))
        row["ours"] = measured(lambda w_: launch(plain_name, x, w_, s, y, TW="u4", G=G, **tiles), check, weights)
        run_split = lambda w_, ns_: splitk.linear(x, w_, y, scales=s, TW="u4", G=G, splits=ns_,  # noqa: E731
                                                 launch=launch)
        row["split"] = measured(lambda w_: run_split(w_, ns), check, weights) if ns > 1 else row["ours"]
        row["best"] = None if args.quick else best_split(run_split, check, weights)
        quant_rows.append(row)
        print(f"W4A16 {row['case']}: int4pack {fmt(row['int4pack'])} us, fp16 {fmt(row['fp16'])}, "
              f"ours {fmt(row['ours'])}, split NS={ns} {fmt(row['split'])}, best {row['best']}", flush=True)

    lines = [f"# split-K, {gpu} ({sms} SMs), {time.strftime('%Y-%m-%d')}, backend {args.backend}, "
             f"{'autotuned' if args.tune else 'default tiles'}", "",
             "## fp16, M = 1 (us; split = the plan's NS, unsplit where NS = 1)", "",
             "| projection | K | N | torch | gemv | NS | split | best NS (us) | torch/gemv | torch/split |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in dense_rows:
        b = f"{r['best'][0]} ({r['best'][1]:.1f})" if r["best"] else "-"
        lines.append(f"| {r['case']} | {r['k']} | {r['n']} | {fmt(r['torch'])} | {fmt(r['gemv'])} | {r['ns']} | "
                     f"{fmt(r['split'])} | {b} | {ratio(r['torch'], r['gemv'])} | {ratio(r['torch'], r['split'])} |")
    lines += ["", "## W4A16 g128 bf16 (us; goal: split >= 1.0x int4pack, else >= 2.5x fp16 cuBLAS)", "",
              "| case | K | N | int4pack | fp16 cuBLAS | ours unsplit | NS | split | best NS (us) | "
              "int4pack/split | fp16/split |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in quant_rows:
        b = f"{r['best'][0]} ({r['best'][1]:.1f})" if r["best"] else "-"
        lines.append(f"| {r['case']} | {r['k']} | {r['n']} | {fmt(r['int4pack'])} | {fmt(r['fp16'])} | "
                     f"{fmt(r['ours'])} | {r['ns']} | {fmt(r['split'])} | {b} | {ratio(r['int4pack'], r['split'])} | "
                     f"{ratio(r['fp16'], r['split'])} |")
    big = {r["m"]: r["split"] for r in quant_rows if r["case"].endswith("11008x4096")}
    lines += ["", f"W4A16 11008x4096: M=16 split {fmt(big.get(16))} us vs M=1 {fmt(big.get(1))} us -> "
                  f"{ratio(big.get(16), big.get(1))} (goal <= 1.2x)"]
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
