"""`tilelang bench`: the library's kernels against their torch peers on the GPU, side by side in one run.

    tilelang bench [--backends triton,cuda,tvm] [--quick] [--only gemm,rmsnorm] [--out BENCH.md]

Prints one markdown table per kernel family: microseconds per call (CUDA-graph replay),
achieved GB/s or TFLOP/s, and the ratio peer_time / our_time (> 1 means we are faster).
Where TVM has no compiler (the GPU image), the tvm column runs the libraries of
scripts/tvm_aot_prebuild.py through TILELANG_TVM_AOT (scripts/gpu_check.sh sets it up).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import kernels, progress
from ..quant import quantize
from .timing import Row, copy_bandwidth_gbs, table, time_us




def _ours(kernel: str, args: tuple, backend: str, **consts):
    k = kernels.load(kernel)
    return lambda: k(*args, backend=backend, **consts)


def _measure(row: Row, fns: dict) -> Row:
    for col, fn in fns.items():
        try:
            fn()  # the first call compiles and autotunes: done here, on the default stream, untimed
            torch.cuda.synchronize()
            row.times_us[col], how = time_us(fn)
            if how != "graph":
                row.notes += f" {col}:events"
        except Exception as e:  # one failing column must not hide the others
            row.notes += f" {col}: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return row


def bench_gemm(backends, quick):
    rows = []
    shapes = [(4096, 4096, 4096)] + ([] if quick else [(322, 1024, 4096), (322, 2048, 8192), (322, 4096, 11008)])
    for dt in (torch.float16, torch.bfloat16):
        for m, k, n in shapes:
            a = torch.randn(m, k, dtype=dt, device="cuda")
            b = torch.randn(k, n, dtype=dt, device="cuda")
            c = torch.empty(m, n, dtype=dt, device="cuda")
            fns = {"torch": lambda: torch.matmul(a, b, out=c)}
            for be in backends:
                fns[be] = _ours("gemm", (a, b, c), be)  # tile sizes autotuned over gemm.tile's candidates
            rows.append(_measure(Row("gemm", f"{str(dt)[6:]} {m}x{k}x{n}", work=2 * m * n * k, unit="TFLOP/s"), fns))
    return rows, "torch"


def _rotating(make, nbytes_each: int):
    """A callable returning the next of enough argument sets to exceed L2 (60 MB), so that repeated
    calls read their weights from HBM as in a real forward pass, not from L2."""
    n = min(8, max(1, -(-200 * 2**20 // max(nbytes_each, 1))))
    sets = [make() for _ in range(n)]
    state = {"i": -1}

    def nxt():
        state["i"] = (state["i"] + 1) % n
        return sets[state["i"]]
    return nxt


def bench_gemv(backends, quick):
    rows = []
    shapes = [(4096, 11008), (11008, 4096), (2048, 8192)]
    for m in (1, 16):
        for k, n in (shapes[:1] if quick else shapes):
            def make():
                return (torch.randn(m, k, dtype=torch.float16, device="cuda"),
                        torch.randn(n, k, dtype=torch.float16, device="cuda"),
                        torch.empty(m, n, dtype=torch.float16, device="cuda"))
            nxt = _rotating(make, n * k * 2)

            def peer():
                x, w, y = nxt()
                torch.matmul(x, w.t(), out=y)
            fns = {"torch": peer}
            for be in backends:
                fns[be] = lambda be=be: kernels.load("gemv")(*nxt(), backend=be)
            rows.append(_measure(Row("gemv f16", f"M={m} {k}x{n}", work=2 * (n * k + m * k + m * n)), fns))
    return rows, "torch"


def _int4pack(w_q: torch.Tensor, scale: torch.Tensor, group: int):
    """torch's tinygemm int4 format: (q - 8) * s + z with z = 8 * s reproduces our unsigned (q) * s."""
    n, k = w_q.shape
    packed = ((w_q[:, ::2] << 4) | w_q[:, 1::2]).to(torch.uint8)
    wp = torch.ops.aten._convert_weight_to_int4pack(packed, 8)
    s = scale.t().contiguous().to(torch.bfloat16)
    sz = torch.stack([s, 8 * s], dim=-1).contiguous()
    return wp, sz


def bench_w4a16(backends, quick):
    from tilelang.quant import unpack
    rows = []
    shapes = [(4096, 11008), (11008, 4096), (2048, 8192)]
    for m in (1, 16):
        for k, n in (shapes[:1] if quick else shapes):
            g = 128
            packed, scale, _ = quantize(torch.randn(n, k).numpy(), 4, g, zero_point=False)
            q = torch.from_numpy(unpack(packed, 4, k, False)).cuda()
            wq = torch.from_numpy(packed).cuda()
            s = torch.from_numpy(scale).to(torch.bfloat16).cuda()
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            y = torch.empty(m, n, dtype=torch.bfloat16, device="cuda")
            xf = x.half()
            weight_bytes = wq.numel() + s.numel() * 2
            quant = _rotating(lambda: (wq.clone(), s.clone()), weight_bytes)
            dense = _rotating(lambda: torch.randn(n, k, dtype=torch.float16, device="cuda"), n * k * 2)
            fns = {"fp16 cuBLAS": lambda: torch.matmul(xf, dense().t())}
            try:
                wp, sz = _int4pack(q.int(), s.float(), g)
                tiny = _rotating(lambda: (wp.clone(), sz.clone()), weight_bytes)

                def int4pack():
                    w4, s4 = tiny()
                    torch.ops.aten._weight_int4pack_mm(x, w4, g, s4)
                fns["int4pack"] = int4pack
            except Exception as e:
                print(f"int4pack unavailable: {e}", file=sys.stderr)
            kern = "gemv_wNa16" if m == 1 else "gemm_wNa16"
            for be in backends:
                fns[be] = lambda be=be: kernels.load(kern)(x, *quant(), y, backend=be, TW="u4", G=g)
            rows.append(_measure(Row("w4a16 g128 bf16", f"M={m} {k}x{n}", work=weight_bytes + x.numel() * 2), fns))
    return rows, "int4pack"


def bench_rmsnorm(backends, quick):
    rows = []
    h = 4096
    for m in ((16384,) if quick else (1, 322, 16384)):
        x = torch.randn(m, h, dtype=torch.float16, device="cuda")
        w = torch.randn(h, dtype=torch.float16, device="cuda")
        y = torch.empty_like(x)
        fns = {"torch": lambda: F.rms_norm(x, (h,), w, 1e-6)}
        for be in backends:
            fns[be] = _ours("rmsnorm", (x, w, y, 1e-6), be)
        rows.append(_measure(Row("rmsnorm f16", f"M={m} H={h}", work=2 * x.numel() * 2 + h * 2), fns))
    return rows, "torch"


# The down projection at decode sizes streams Wd with few rows: 16-row tiles and long K steps
# (measured best on the H200 with Triton); the linear kernels' candidate lists target prefill.
DOWN_DECODE = dict(BM=16, BN=32, BK=256, STAGES=4, THREADS=128)


def _mlp_decode(x, wn, wg, wu, wd, hid, y, be):
    """M <= 16: the fused rmsnorm + gate/up + silu*mul kernel, then the down projection + residual."""
    kernels.load("fused_mlp_gate_up")(x, wn, wg, wu, hid, 1e-6, backend=be, BM=16)
    kernels.load("linear_residual")(hid, wd, x, y, backend=be, **DOWN_DECODE)


def _mlp_prefill(x, xn, wn, wg, wu, wd, hid, y, be):
    """Larger M: rmsnorm, then gate/up as a pipelined dual GEMM, then the down projection + residual."""
    kernels.load("rmsnorm")(x, wn, xn, 1e-6, backend=be)
    kernels.load("mlp_gate_up")(xn, wg, wu, hid, backend=be)
    kernels.load("linear_residual")(hid, wd, x, y, backend=be)


def bench_mlp(backends, quick):
    rows = []
    h, i = 4096, 11008
    wn = torch.randn(h, dtype=torch.float16, device="cuda")
    wg = torch.randn(i, h, dtype=torch.float16, device="cuda") * 0.02
    wu = torch.randn(i, h, dtype=torch.float16, device="cuda") * 0.02
    wd = torch.randn(h, i, dtype=torch.float16, device="cuda") * 0.02

    def eager(x):
        n = F.rms_norm(x, (h,), wn, 1e-6)
        return x + F.linear(F.silu(F.linear(n, wg)) * F.linear(n, wu), wd)

    compiled = torch.compile(eager)
    for m in ((1,) if quick else (1, 16, 322)):
        x = torch.randn(m, h, dtype=torch.float16, device="cuda")
        hid = torch.empty(m, i, dtype=torch.float16, device="cuda")
        y = torch.empty_like(x)
        fns = {"torch": lambda: eager(x), "torch.compile": lambda: compiled(x)}
        xn = torch.empty_like(x)
        for be in backends:
            fns[be] = (lambda be=be: _mlp_decode(x, wn, wg, wu, wd, hid, y, be)) if m <= 16 else \
                (lambda be=be: _mlp_prefill(x, xn, wn, wg, wu, wd, hid, y, be))
        weight_bytes = (wg.numel() + wu.numel() + wd.numel()) * 2
        rows.append(_measure(Row("fused mlp f16", f"M={m} H={h} I={i}", work=weight_bytes), fns))
    return rows, "torch"


GROUPS = {"gemm": bench_gemm, "gemv": bench_gemv, "w4a16": bench_w4a16, "rmsnorm": bench_rmsnorm, "mlp": bench_mlp}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--backends", default="triton,cuda,tvm", help="comma list of tilelang backends to time")
    ap.add_argument("--quick", action="store_true", help="one shape per family")
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    ap.add_argument("--only", default=None, help="comma list of: " + ",".join(GROUPS))


def run(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        from ..diagnostics import TileError
        raise TileError("tilelang bench times kernels on a CUDA GPU, and torch sees none here",
                        hint="run it on a machine with an NVIDIA GPU (scripts/gpu_tune_bench.sh)")
    backends = [b for b in args.backends.split(",") if b]
    torch.manual_seed(0)
    bw = copy_bandwidth_gbs()
    name = torch.cuda.get_device_name()
    lines = [f"GPU: {name}; date {datetime.date.today()}; torch {torch.__version__}; "
             f"measured copy bandwidth {bw:.0f} GB/s (read+write)", ""]
    chosen = [(key, fn) for key, fn in GROUPS.items() if not args.only or key in args.only.split(",")]
    for i, (key, fn) in enumerate(chosen, 1):
        progress.step(i, len(chosen), key)
        try:
            rows, peer = fn(backends, args.quick)
        except Exception:
            traceback.print_exc()
            continue
        cols = list(dict.fromkeys(c for r in rows for c in r.times_us))
        lines += [f"### {rows[0].group if rows else key}", "", table(rows, cols, peer), ""]
        notes = [f"- {r.case}:{r.notes}" for r in rows if r.notes.strip()]
        lines += notes + ([""] if notes else [])
        print("\n".join(lines[-(len(rows) + 4 + len(notes)):]), flush=True)
        if args.out:  # after every family, so a run cut short keeps what it measured
            Path(args.out).write_text("\n".join(lines))
    progress.done()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tilelang bench", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
