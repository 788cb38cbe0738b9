"""W4A16 with weights in the layout plan's packed order (`wNa16_packed`) against torch's int4 kernel.

One run on the GPU, side by side: for Llama-3-8B projection shapes (K x N = 4096 x 14336,
14336 x 4096, 4096 x 4096), bf16 activations, 4-bit weights with group-128 scales, M = 1 and
16: `torch.ops.aten._weight_int4pack_mm` (tinygemm), the fp16 cuBLAS GEMV on the dense weight,
and our packed kernel over a few tile configurations (BN rows per block, BK columns per
k-step, WK warp groups splitting k, pipeline STAGES: the order depends on BN, BK and WK, so each
is packed separately). Weights rotate over enough copies to exceed L2. Every configuration is
first checked against the dequantized weight. Prints one markdown table per M, ratios last.

    python benchmarks/bench_w4a16_packed.py [--quick] [--out FILE]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tilelang  # noqa: E402
from harness import _graph_time  # noqa: E402
from tilelang.quant import dequantize, quantize, unpack  # noqa: E402

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
SHAPES = [(4096, 14336), (14336, 4096), (4096, 4096)]
CONFIGS = [  # (BN, BK, WK, STAGES)
    (16, 512, 4, 4), (16, 256, 4, 6), (16, 1024, 4, 3), (16, 512, 2, 4),
    (32, 256, 2, 4), (32, 512, 2, 3), (64, 256, 1, 4), (32, 128, 4, 6),
]
G = 128
L2_BYTES = 200 << 20


def copy_bandwidth() -> float:
    """Device-to-device copy rate, GB/s counting read + write."""
    a = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    t = _graph_time(lambda: b.copy_(a), 5, 7)
    return 2 * a.numel() / (t * 1e-6) / 1e9


def rotating(make, nbytes: int):
    copies = [make() for _ in range(max(1, -(-L2_BYTES // max(nbytes, 1))))]
    state = {"i": 0}

    def nxt():
        state["i"] = (state["i"] + 1) % len(copies)
        return copies[state["i"]]
    return nxt


def int4pack(q: torch.Tensor, scale: torch.Tensor):
    """torch's tinygemm format: (q - 8) * s + 8 * s reproduces our unsigned q * s."""
    packed = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
    wp = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
    s = scale.t().contiguous().to(torch.bfloat16)
    return wp, torch.stack([s, 8 * s], dim=-1).contiguous()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    kern = tilelang.load(KERNELS / "gemm_wNa16.tile")["wNa16_packed"]
    gpu = torch.cuda.get_device_name()
    bw = copy_bandwidth()
    print(f"{gpu}: copy bandwidth {bw:.0f} GB/s", flush=True)
    configs = CONFIGS[:3] if args.quick else CONFIGS
    tables = {1: [], 16: []}
    rng = np.random.default_rng(0)
    for k, n in SHAPES:
        w = rng.standard_normal((n, k)).astype(np.float32)
        plain, scale, _ = quantize(w, 4, G, zero_point=False)
        q = unpack(plain, 4, k, False)
        s = torch.from_numpy(scale).to(torch.bfloat16).cuda()
        deq = torch.from_numpy(dequantize(plain, 4, k, False, s.float().cpu().numpy(), G)).cuda()
        weight_bytes = n * k // 2 + s.numel() * 2
        qt = torch.from_numpy(q).cuda()
        wp, sz = int4pack(qt.int(), s.float())
        tiny = rotating(lambda: (wp.clone(), sz.clone()), weight_bytes)
        dense = rotating(lambda: deq.half().clone(), n * k * 2)
        packs = {}
        for bn, bk, wk, stages in configs:
            t0 = time.time()
            pw = kern.pack("W", q, TW="u4", G=G, BN=bn, BK=bk, WK=wk)
            packs[(bn, bk, wk, stages)] = (pw.to("cuda"), time.time() - t0)
        for m in (1, 16):
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            ref = (x.float() @ deq.t()).float()
            y = torch.empty(m, n, dtype=torch.bfloat16, device="cuda")
            row = {"case": f"M={m} {k}x{n}"}
            def i4():
                wq, sz4 = tiny()
                torch.ops.aten._weight_int4pack_mm(x, wq, G, sz4)
            row["int4pack"] = _graph_time(i4, 20, 7)
            xf = x.half()
            row["fp16 cuBLAS"] = _graph_time(lambda: torch.matmul(xf, dense().t()), 20, 7)
            best = None
            for cfg, (pw, _) in packs.items():
                bn, bk, wk, stages = cfg
                bm = 8 if m <= 8 else 16
                try:
                    y.fill_(float("nan"))
                    kern(x, pw, s, y, G=G, BM=bm, STAGES=stages, backend="cuda")
                    torch.cuda.synchronize()
                    err = ((y.float() - ref).norm() / ref.norm()).item()
                    if not err < 1e-2:
                        row[str(cfg)] = f"wrong ({err:.2e})"
                        continue
                    rot = rotating(lambda pw=pw: dataclasses.replace(pw, data=pw.data.clone()), weight_bytes)
                    t = _graph_time(lambda: kern(x, rot(), s, y, G=G, BM=bm, STAGES=stages, backend="cuda"), 20, 7)
                except Exception as e:  # noqa: BLE001 - report and go on
                    row[str(cfg)] = f"error: {type(e).__name__}: {str(e)[:120]}"
                    continue
                row[str(cfg)] = t
                if best is None or t < best[1]:
                    best = (cfg, t)
            row["best"] = best
            tables[m].append(row)
            b = best[1] if best else float("nan")
            print(f"M={m} {k}x{n}: int4pack {row['int4pack']:.1f} us, fp16 {row['fp16 cuBLAS']:.1f} us, "
                  f"packed best {b:.1f} us {best[0] if best else ''} -> {row['int4pack'] / b:.2f}x int4pack, "
                  f"{weight_bytes / (b * 1e-6) / 1e9:.0f} GB/s ({weight_bytes / (b * 1e-6) / 1e9 / bw * 100:.0f}% of copy)",
                  flush=True)
    lines = [f"# W4A16 packed, {gpu}, {time.strftime('%Y-%m-%d')}, copy bandwidth {bw:.0f} GB/s", ""]
    for m, rows in tables.items():
        cols = [str(c) for c in configs]
        lines += [f"## M={m} (us; config = (BN, BK, WK, STAGES))", "",
                  "| case | int4pack | fp16 cuBLAS | " + " | ".join(cols) + " | best | int4pack/best | % copy bw |",
                  "|" + "---|" * (len(cols) + 6)]
        for r in rows:
            b = r["best"]
            cells = [f"{r[c]:.1f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols]
            k_, n_ = map(int, r["case"].split()[1].split("x"))
            wb = n_ * k_ // 2 + n_ * (k_ // G) * 2
            lines.append(f"| {r['case']} | {r['int4pack']:.1f} | {r['fp16 cuBLAS']:.1f} | " + " | ".join(cells) +
                         f" | {b[1]:.1f} {b[0]} | {r['int4pack'] / b[1]:.2f}x | {wb / (b[1] * 1e-6) / 1e9 / bw * 100:.0f}% |"
                         if b else f"| {r['case']} | - |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TILELANG_AUTOTUNE", "0")
    sys.exit(main())
