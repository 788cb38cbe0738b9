"""`tilelang bench-model`: the GPT-2 seed report's protocol on our kernels and, in the same run, on three
transformers peers (tilelang/models/peers.py).

Protocol: prefill the Gettysburg Address (322 tokens under GPT-2's tokenizer; a model without a
tokenizer gets 322 fixed random ids), then decode 512 new tokens, and 64, greedily, batch 1, with no
stop token.  Reported per system: prefill tokens/s, decode tokens/s, and for tilelang the kernel
launches per decoded token and the fraction of the weight-bandwidth floor (the device's measured copy
bandwidth, read + write, over the bytes of the weights a decode step reads: every weight once, the
embedding only as the LM head).  Our prefill is reported eager (what `generate` does: one host
dispatch per kernel) and replayed from a CUDA graph (the kernels alone).

`--ablate` reproduces the seed report's Table 2 on our kernels (tilelang/models/schedule.py): the
plain baseline, each kernel class optimized alone, all; prefill (graph-replayed) and decode (64
tokens) tokens/s with speedups over the baseline; GPT-2-medium and GPT-2-xl shapes by default.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import progress
from ..runtime.cache import write_atomic
from .generation import DecodeState
from .model import Model, Pass, cache_slots
from .quantize import QuantizedWeight
from .schedule import ABLATIONS

GETTYSBURG = (
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in "
    "Liberty, and dedicated to the proposition that all men are created equal.\n\nNow we are engaged in a great "
    "civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure. We are "
    "met on a great battle-field of that war. We have come to dedicate a portion of that field, as a final resting "
    "place for those who here gave their lives that that nation might live. It is altogether fitting and proper "
    "that we should do this.\n\nBut, in a larger sense, we can not dedicate -- we can not consecrate -- we can not "
    "hallow -- this ground. The brave men, living and dead, who struggled here, have consecrated it, far above our "
    "poor power to add or detract. The world will little note, nor long remember what we say here, but it can "
    "never forget what they did here. It is for us the living, rather, to be dedicated here to the unfinished work "
    "which they who fought here have thus far so nobly advanced. It is rather for us to be here dedicated to the "
    "great task remaining before us -- that from these honored dead we take increased devotion to that cause for "
    "which they gave the last full measure of devotion -- that we here highly resolve that these dead shall not "
    "have died in vain -- that this nation, under God, shall have a new birth of freedom -- and that government "
    "of the people, by the people, for the people, shall not perish from the earth.")


@dataclass
class Row:
    system: str
    prefill_tok_s: float | None = None  # eager
    prefill_graph_tok_s: float | None = None
    decode_tok_s: dict[int, float] = field(default_factory=dict)
    launches_per_token: int | None = None
    floor_fraction: dict[int, float] = field(default_factory=dict)
    note: str = ""


def prompt_ids(model: Model, length: int) -> list[int]:
    """The Gettysburg Address under the model's tokenizer, or `length` fixed random ids without one."""
    if model.tokenizer is not None and model.tokenizer.path is not None:
        return model.tokenizer.encode(GETTYSBURG)
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, model.config.vocab, (length,), generator=gen).tolist()


def weight_bytes(model: Model) -> int:
    """Bytes of the weights one decode step reads: each once; the embedding only where it is the LM head
    (a decode step gathers one row of it, and of GPT-2's position table)."""
    total = 0
    for name, w in model.weights.items():
        if name in ("embed", "positions") and not (name == "embed" and "head.weight" not in model.weights):
            continue
        parts = (w.qweight, w.scales) + (() if w.zeros is None else (w.zeros,)) if isinstance(w, QuantizedWeight) \
            else (w,)
        total += sum(t.numel() * t.element_size() for t in parts)
    return total


def copy_bandwidth(device: torch.device) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting read + write (as DEVICE.md reports it)."""
    x = torch.empty(256 << 20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    torch.cuda.synchronize(device)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        y.copy_(x)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * x.numel() / statistics.median(times)


def prefill_graph_tok_s(model: Model, ids: list[int], repeats: int) -> float:
    """Prefill replayed from a CUDA graph: the kernels' own speed, without the host's dispatch."""
    dev, s = model.device, len(ids)
    state = DecodeState(model, 1, s)
    model.rope_positions(s)
    p = Pass(torch.tensor(ids, device=dev), torch.arange(s, dtype=torch.int32, device=dev),
             cache_slots(model.config, 1, s, [0], s).to(dev), 1, s)
    logits, last = state.logits, torch.tensor([s - 1], device=dev)
    model.forward(p, state.cache, logits, last)  # compiles and autotunes outside the capture
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        model.forward(p, state.cache, logits, last)
    times = []
    for _ in range(repeats + 1):
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        g.replay()
        torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return s / statistics.median(times[1:])


def bench_tilelang(model: Model, label: str, ids: list[int], new_tokens: list[int], repeats: int,
                   floor_tok_s: float | None) -> Row:
    row = Row(label)
    prefill = []
    for n in new_tokens:
        model.generate(ids, n, temperature=0, stop_tokens=())  # compiles, autotunes, captures
        decode = []
        for _ in range(repeats):
            model.generate(ids, n, temperature=0, stop_tokens=())
            prefill.append(model.generator.timing.prefill_tok_s)
            decode.append(model.generator.timing.decode_tok_s)
        row.decode_tok_s[n] = statistics.median(decode)
        if floor_tok_s:
            row.floor_fraction[n] = row.decode_tok_s[n] / floor_tok_s
    row.prefill_tok_s = statistics.median(prefill)
    row.launches_per_token = sum(model.generator.timing.launches_per_step.values())
    if model.device.type == "cuda":
        row.prefill_graph_tok_s = prefill_graph_tok_s(model, ids, repeats)
    return row


def bench_peers(model: Model, ids: list[int], new_tokens: list[int], repeats: int, peers: list[str]) -> list[Row]:
    from .peers import LABELS, RUNNERS, hf_model
    rows = []
    try:
        hf = hf_model(model)
    except Exception as e:  # noqa: BLE001 - no transformers here, or it cannot build this config: say so
        return [Row(LABELS[p], note=f"not run: {type(e).__name__}: {e}"[:200]) for p in peers]
    x = torch.tensor([ids], device=model.device)
    for p in peers:
        if p != "eager" and model.device.type != "cuda":
            rows.append(Row(LABELS[p], note="needs a GPU"))
            continue

        def measure(label, p=p):
            r = RUNNERS[p](hf, x, new_tokens, repeats)
            return Row(label, r.prefill_tok_s, None, r.decode_tok_s, note=r.note)
        rows.append(guarded(LABELS[p], measure))
        if model.device.type == "cuda":
            torch.cuda.empty_cache()
    del hf
    return rows


def guarded(label: str, measure) -> Row:
    """measure(label), or a row that says why it failed: one failure must not lose the run's other rows."""
    try:
        return measure(label)
    except Exception as e:  # noqa: BLE001 - reported in the table, with the traceback on stderr
        import traceback
        traceback.print_exc()
        return Row(label, note=f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e) else ''}")


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def table(title: str, rows: list[Row], new_tokens: list[int]) -> str:
    head = ["system", "prefill tok/s", "prefill tok/s (graph)"] + [f"decode tok/s ({n} new)" for n in new_tokens] \
        + ["launches/token", "of floor"] + ["note"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        floor = ", ".join(f"{r.floor_fraction[n]:.0%}" for n in new_tokens if n in r.floor_fraction) or "—"
        cells = [r.system, _fmt(r.prefill_tok_s), _fmt(r.prefill_graph_tok_s)] \
            + [_fmt(r.decode_tok_s.get(n)) for n in new_tokens] \
            + ["—" if r.launches_per_token is None else str(r.launches_per_token), floor, r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation(model: Model, ids: list[int], repeats: int, progress) -> tuple[str, list[dict]]:
    """The seed report's Table 2 on our kernels: every schedule on the same weights."""
    results = []
    for i, (name, schedule) in enumerate(ABLATIONS.items()):
        progress(i, len(ABLATIONS), f"ablation {model.config.name}: {name}")
        row = bench_tilelang(model.with_schedule(schedule), name, ids, [64], repeats, None)
        results.append({"schedule": name, "prefill_tok_s": row.prefill_graph_tok_s or row.prefill_tok_s,
                        "decode_tok_s": row.decode_tok_s[64], "launches_per_token": row.launches_per_token})
    progress(len(ABLATIONS), len(ABLATIONS), "ablation done")
    base = results[0]
    how = "replayed from a CUDA graph" if model.device.type == "cuda" else "eager"
    lines = [f"### Ablation, {model.config.name} shapes ({len(ids)}-token prefill {how}, 64 new tokens; "
             f"{_device_name(model)})", "",
             "| schedule | prefill tok/s | prefill speedup | decode tok/s | decode speedup | launches/token |",
             "|---|---|---|---|---|---|"]
    for r in results:
        speedups = r["prefill_tok_s"] / base["prefill_tok_s"], r["decode_tok_s"] / base["decode_tok_s"]
        lines.append(f"| {r['schedule']} | {r['prefill_tok_s']:,.1f} | {speedups[0]:.1f}x | {r['decode_tok_s']:,.1f} | "
                     f"{speedups[1]:.1f}x | {r['launches_per_token']} |")
    return "\n".join(lines), results


def _device_name(model: Model) -> str:
    return torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else "CPU"


def run(args) -> int:
    from .cli import load_model
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    targets = [(args.model_dir, args.model)]
    if args.ablate and args.model_dir is None and args.model is None:
        targets = [(None, "gpt2-medium"), (None, "gpt2-xl")]
    report, out = [], {"runs": []}
    for model_dir, name in targets:
        margs = type(args)(**{**vars(args), "model_dir": model_dir, "model": name, "quant": None})
        model = load_model(margs)
        ids = prompt_ids(model, args.prompt_tokens)
        where = f"{_device_name(model)}, {model.backend}"
        title = f"{name or model_dir}: {len(ids)}-token prompt, batch 1, {str(model.dtype).replace('torch.', '')}, " \
                f"{where}" + (" (random weights)" if model.random_weights else "")
        steps = 2 + (args.quant is not None) + len(peers)
        if args.ablate:
            text, results = ablation(model, ids, args.repeats, progress.step)
            report.append(text)
            out["runs"].append({"model": name or model_dir, "device": _device_name(model), "ablation": results})
            continue
        progress.step(0, steps, "measuring the copy bandwidth")
        bw = copy_bandwidth(model.device) if model.device.type == "cuda" else None
        floor = bw / weight_bytes(model) if bw else None
        progress.step(1, steps, "tilelang (warm-up autotunes and captures)")
        rows = [guarded(f"tilelang {str(model.dtype).replace('torch.', '')}", lambda label: bench_tilelang(
            model, label, ids, args.new_tokens, args.repeats, floor))]
        if args.quant:
            progress.step(2, steps, f"tilelang {args.quant}")

            def quantized(label):
                qmodel = load_model(type(args)(**{**vars(margs), "quant": args.quant}), progress=progress.step)
                return bench_tilelang(qmodel, label, ids, args.new_tokens, args.repeats,
                                      bw / weight_bytes(qmodel) if bw else None)
            rows.append(guarded(f"tilelang {args.quant}", quantized))
        progress.step(steps - len(peers), steps, "transformers peers")
        rows += bench_peers(model, ids, args.new_tokens, args.repeats, peers)
        progress.step(steps, steps, "done")
        report.append(table(title, rows, args.new_tokens) + (
            f"\n\nweight-bandwidth floor: {floor:,.0f} tok/s ({weight_bytes(model) / 1e6:,.0f} MB of weights per token,"
            f" copy bandwidth {bw / 1e9:,.0f} GB/s read + write)" if floor else ""))
        out["runs"].append({"model": name or model_dir, "device": _device_name(model), "prompt_tokens": len(ids),
                            "floor_tok_s": floor, "rows": [asdict(r) for r in rows]})
        del model
    text = "\n\n".join(report)
    print(text)
    if args.json:
        write_atomic(Path(args.json), json.dumps(out, indent=1))
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0
