"""Timing on the GPU, side by side: CUDA-graph replay where it captures, events otherwise.

Launch overhead on the lent machine is 20-30 us per launch, larger than many of the
kernels measured, so each measurement captures `reps` calls into one CUDA graph and
reports the median per-call time over several replays.  Inputs larger than L2 are
given by the caller, which rotates buffers when it measures bandwidth.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Row:
    group: str
    case: str
    times_us: dict[str, float] = field(default_factory=dict)  # column -> us
    work: float = 0.0  # bytes moved or flops done per call
    unit: str = "GB/s"  # "GB/s" or "TFLOP/s"
    notes: str = ""

    def rate(self, col: str) -> str:
        t = self.times_us.get(col)
        if t is None or t != t:
            return "-"
        return f"{self.work / (t * 1e-6) / (1e9 if self.unit == 'GB/s' else 1e12):.0f}"


def _graph_time(fn: Callable[[], None], reps: int, replays: int) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return statistics.median(times)


def _event_time(fn: Callable[[], None], reps: int, replays: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return statistics.median(times)


def time_us(fn: Callable[[], None], reps: int = 20, replays: int = 7) -> tuple[float, str]:
    """Median microseconds per call, and how it was measured ("graph" or "events")."""
    try:
        return _graph_time(fn, reps, replays), "graph"
    except Exception:
        torch.cuda.synchronize()
        return _event_time(fn, reps, replays), "events"


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    """HBM bandwidth of an SM-driven device-to-device copy, counting bytes read and written.

    An elementwise kernel (`torch.neg(out=)`), not `copy_`: inside a CUDA graph `copy_` becomes a
    memcpy node served by the copy engines, which reach only about two thirds of what SMs do."""
    a = torch.empty(nbytes // 2, dtype=torch.float16, device="cuda")
    b = torch.empty_like(a)
    t, _ = time_us(lambda: torch.neg(a, out=b), reps=5, replays=5)
    return 2 * nbytes / (t * 1e-6) / 1e9


def table(rows: list[Row], columns: list[str], peer: str) -> str:
    """A markdown table: per column time and rate, and the ratio peer_time / our_time."""
    head = ["kernel", "case"] + [f"{c} us" for c in columns] + [f"{c} {rows[0].unit if rows else ''}" for c in columns]
    head += [f"{peer}/{c}" for c in columns if c != peer]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.group, r.case]
        cells += [f"{r.times_us[c]:.1f}" if c in r.times_us else "-" for c in columns]
        cells += [r.rate(c) for c in columns]
        p = r.times_us.get(peer)
        cells += [f"{p / r.times_us[c]:.2f}x" if p and c in r.times_us else "-" for c in columns if c != peer]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
