"""The model commands of `tilelang`: generate, quantize and bench-model (`register` adds them to the
main parser in tilelang/cli.py)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..diagnostics import TileError
from .config import BUILTIN, RUN_DTYPES


def _model_args(p: argparse.ArgumentParser, quant: bool = True) -> None:
    p.add_argument("model_dir", nargs="?", help="a local Hugging Face model folder (GPT-2 or Llama)")
    p.add_argument("--model", choices=sorted(BUILTIN), help="a built-in configuration with random weights instead")
    p.add_argument("--backend", choices=["triton", "cuda", "tvm", "reference"],
                   help="default: triton on a GPU, the reference interpreter on the CPU")
    p.add_argument("--dtype", choices=RUN_DTYPES, help="default: f16 on a GPU, f32 on the CPU")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda if there is one)")
    if quant:
        p.add_argument("--quant", metavar="SPEC",
                       help="quantize every linear layer at load, e.g. w4g128, w8pc, w3g64zp")


def load_model(args, progress=None):
    """The model the command line names: a folder, or --model NAME (random weights, said on stderr)."""
    from .loading import from_builtin, load
    quant = getattr(args, "quant", None)
    if (args.model_dir is None) == (args.model is None):
        raise TileError("name a model folder or a built-in --model, not both" if args.model_dir else
                        "no model: give a model folder or --model NAME",
                        hint="built-in configurations (random weights): " + ", ".join(BUILTIN))
    if args.model:
        model = from_builtin(args.model, backend=args.backend, quant=quant, dtype=args.dtype, device=args.device,
                             progress=progress)
        print(f"note: {args.model} has random weights (no checkpoint): its text is noise, its speed is real",
              file=sys.stderr)
    else:
        model = load(args.model_dir, backend=args.backend, quant=quant, dtype=args.dtype, device=args.device,
                     progress=progress)
    if model.quant_errors:
        errs = model.quant_errors
        print(f"quantized {len(errs)} weights to {model.weights[model.quantized[0]].spec.name}: relative error "
              f"mean {sum(errs.values()) / len(errs):.4f}, worst {max(errs.values()):.4f} ({max(errs, key=errs.get)})",
              file=sys.stderr)
    return model


def cmd_generate(args) -> int:
    from .tokenizer import TextStream
    model = load_model(args)
    if args.token_ids:
        prompt = [int(t) for t in args.prompt.replace(",", " ").split()]
    else:
        prompt = args.prompt
    stream = None if args.json else TextStream(model.tokenizer, sys.stdout) if model.tokenizer else None
    if stream is not None and isinstance(prompt, str):
        sys.stdout.write(prompt)
    out = model.generate(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, stop_tokens=tuple(args.stop_token) if args.stop_token
                         else None, on_token=(lambda row, t: stream(t)) if stream else None)
    timing = model.generator.timing
    if args.json:
        print(json.dumps({"prompt_tokens": out.prompt_tokens, "tokens": out.tokens, "text": out.text,
                          "finish": out.finish, "prefill_tok_s": timing.prefill_tok_s,
                          "decode_tok_s": timing.decode_tok_s,
                          "launches_per_token": sum(timing.launches_per_step.values()),
                          "model": args.model or str(args.model_dir), "random_weights": model.random_weights,
                          "backend": model.backend,
                          "device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
                          "quant": args.quant}))
    else:
        print()
        print(f"[{len(out.prompt_tokens)} prompt tokens, {len(out.tokens)} generated ({out.finish}); prefill "
              f"{timing.prefill_tok_s:.1f} tok/s, decode {timing.decode_tok_s:.1f} tok/s]", file=sys.stderr)
    return 0


def cmd_quantize(args) -> int:
    from .evaluate import perplexity
    from .quantize import error_table
    model = load_model(args)
    report = {"quant": args.quant, "errors": model.quant_errors}
    print(error_table(model.quant_errors))
    if args.ppl:
        if model.tokenizer is None:
            raise TileError("--ppl needs the model's tokenizer.json to tokenize the text")
        ids = model.tokenizer.encode(Path(args.ppl).read_text())
        dense = load_model(argparse.Namespace(**{**vars(args), "quant": None}))
        report["perplexity"] = {"dense": perplexity(dense, ids), "quantized": perplexity(model, ids),
                                "tokens": len(ids)}
        p = report["perplexity"]
        print(f"\nperplexity on {args.ppl} ({len(ids)} tokens): {p['dense']:.3f} -> {p['quantized']:.3f}")
    if args.output:
        print(f"wrote {model.save_quantized(args.output)}")
    if args.json:
        print(json.dumps(report))
    return 0


def cmd_bench_model(args) -> int:
    from .bench import run
    return run(args)


def register(sub) -> None:
    """Add generate, quantize and bench-model to the `tilelang` command's subparsers."""
    g = sub.add_parser("generate", help="generate text with a GPT-2 or Llama checkpoint on the kernel library")
    _model_args(g)
    g.add_argument("--prompt", required=True, help="the prompt text (or token ids with --token-ids)")
    g.add_argument("--token-ids", action="store_true", help="the prompt is token ids, e.g. '464 2068 7586'")
    g.add_argument("--max-new-tokens", type=int, default=64)
    g.add_argument("--temperature", type=float, help="0 is greedy (default: generation_config.json's choice)")
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--stop-token", type=int, action="append", help="stop at this token id (default: the eos ids)")
    g.add_argument("--json", action="store_true", help="print one JSON object instead of streaming the text")
    g.set_defaults(fn=cmd_generate)

    q = sub.add_parser("quantize", help="quantize a checkpoint's linear layers, report the error, save the result")
    _model_args(q, quant=False)
    q.add_argument("--quant", required=True, metavar="SPEC", help="e.g. w4g128, w8pc, w3g64zp")
    q.add_argument("--ppl", metavar="TEXT_FILE", help="also the perplexity on this text, before and after")
    q.add_argument("-o", "--output", metavar="DIR", help="write the quantized model folder here")
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=cmd_quantize)

    b = sub.add_parser("bench-model", help="prefill/decode tokens/s against transformers (the GPT-2 seed protocol)")
    _model_args(b)
    b.add_argument("--new-tokens", type=int, nargs="+", default=[512, 64], help="decode lengths to time")
    b.add_argument("--prompt-tokens", type=int, default=322, help="prompt length without a tokenizer")
    b.add_argument("--peers", default="eager,graph,compile",
                   help="transformers peers: any of eager, graph, compile, or none")
    b.add_argument("--ablate", action="store_true",
                   help="the seed report's Table 2: plain baseline, each kernel class optimized alone, all")
    b.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the median is kept)")
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.set_defaults(fn=cmd_bench_model)
