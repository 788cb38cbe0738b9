"""The transformers peers of `tilelang bench-model`, on the same weights: eager with a dynamic cache, a
static cache with the decode step captured in a CUDA graph by hand, and a static cache under
`torch.compile(mode="reduce-overhead")`.  Only stable transformers APIs are used (StaticCache,
cache_position, torch.compile of forward), so that transformers 5.x of any minor version runs them."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from statistics import median

import torch

from .weights import to_hf

PEERS = ("eager", "graph", "compile")
LABELS = {"eager": "transformers eager", "graph": "transformers + static cache + CUDA graph",
          "compile": "transformers + static cache + torch.compile(reduce-overhead)"}


@dataclass
class PeerResult:
    prefill_tok_s: float | None  # None: not measured (the captured and compiled peers share eager's prefill)
    decode_tok_s: dict[int, float]
    note: str = ""


def hf_model(model, folder=None):
    """A transformers model with `model`'s dense weights, dtype and device (sdpa attention)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    config = model.config.to_hf()
    hf_config = AutoConfig.for_model(config.pop("model_type"), **{k: v for k, v in config.items()
                                                                  if k not in ("architectures", "dtype")})
    with torch.device(model.device):
        hf = AutoModelForCausalLM.from_config(hf_config, dtype=model.dtype, attn_implementation="sdpa")
    state = {k: v for k, v in to_hf(model.weights, model.config).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or any("lm_head" not in m and "bias" not in m.rsplit(".", 1)[-1] for m in missing):
        raise RuntimeError(f"transformers model does not take these weights: missing {missing}, unexpected "
                           f"{unexpected}")
    return hf.eval()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eager(hf, ids: torch.Tensor, new_tokens: list[int], repeats: int) -> PeerResult:
    """Prefill and greedy steps with a DynamicCache.  Timed once per length after a short warm-up (at ~20
    tokens/s a 512-token run takes half a minute; its spread is small next to that)."""
    from transformers import DynamicCache
    dev = ids.device
    prefill, decode = [], {}
    with torch.no_grad():
        for n in [8] + list(new_tokens):  # the first, short run warms up
            cache = DynamicCache()
            _sync(dev)
            t0 = time.perf_counter()
            out = hf(ids, past_key_values=cache, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)
            _sync(dev)
            t1 = time.perf_counter()
            for _ in range(n - 1):
                tok = hf(tok, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)
            _sync(dev)
            prefill.append(ids.shape[1] / (t1 - t0))
            decode[n] = (n - 1) / (time.perf_counter() - t1)
    return PeerResult(median(prefill[1:]), {n: decode[n] for n in new_tokens})


def _static(hf, ids: torch.Tensor, length: int):
    """A StaticCache of `length` positions prefilled with `ids`; the first token and its position."""
    from transformers import StaticCache
    cache = StaticCache(config=hf.config, max_cache_len=length)
    s = ids.shape[1]
    out = hf(ids, past_key_values=cache, cache_position=torch.arange(s, device=ids.device), use_cache=True)
    return cache, out.logits[:, -1:].argmax(-1), torch.tensor([s], device=ids.device)


def graph(hf, ids: torch.Tensor, new_tokens: list[int], repeats: int) -> PeerResult:
    """The decode step (forward, argmax, position + 1) captured once per run, replayed per token."""
    dev = ids.device
    decode = {n: [] for n in new_tokens}
    with torch.no_grad():
        for n in new_tokens:
            for _ in range(repeats):
                cache, tok, pos = _static(hf, ids, ids.shape[1] + n + 8)

                def step():
                    tok.copy_(hf(tok, past_key_values=cache, cache_position=pos, use_cache=True).logits[:, -1:]
                              .argmax(-1))
                    pos.add_(1)

                saved_tok, saved_pos = tok.clone(), pos.clone()
                side = torch.cuda.Stream(dev)
                side.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(side):
                    for _ in range(2):
                        step()
                torch.cuda.current_stream(dev).wait_stream(side)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    step()
                tok.copy_(saved_tok)
                pos.copy_(saved_pos)
                _sync(dev)
                t0 = time.perf_counter()
                for _ in range(n - 1):
                    g.replay()
                _sync(dev)
                decode[n].append((n - 1) / (time.perf_counter() - t0))
    return PeerResult(None, {n: median(v) for n, v in decode.items()})


def compiled(hf, ids: torch.Tensor, new_tokens: list[int], repeats: int) -> PeerResult:
    """forward under torch.compile(mode="reduce-overhead", fullgraph=True), a static cache, greedy steps;
    with fullgraph=False (said in the note) if this transformers version breaks the graph."""
    try:
        return _compiled(hf, ids, new_tokens, repeats, fullgraph=True)
    except Exception as e:  # noqa: BLE001 - a graph break under fullgraph: measure what compiles
        torch._dynamo.reset()
        result = _compiled(hf, ids, new_tokens, repeats, fullgraph=False)
        result.note = f"fullgraph=False ({type(e).__name__} with fullgraph=True)"
        return result


def _compiled(hf, ids: torch.Tensor, new_tokens: list[int], repeats: int, fullgraph: bool) -> PeerResult:
    dev = ids.device
    forward = torch.compile(hf.forward, mode="reduce-overhead", fullgraph=fullgraph)
    decode = {n: [] for n in new_tokens}
    with torch.no_grad():
        for n in new_tokens:
            for i in range(repeats + 1):  # the first run compiles and records the graphs
                cache, tok, pos = _static(hf, ids, ids.shape[1] + max(new_tokens) + 8)
                _sync(dev)
                t0 = time.perf_counter()
                for _ in range(n - 1):
                    tok = forward(tok, past_key_values=cache, cache_position=pos, use_cache=True).logits[:, -1:] \
                        .argmax(-1).clone()
                    pos = pos + 1
                _sync(dev)
                if i:
                    decode[n].append((n - 1) / (time.perf_counter() - t0))
    return PeerResult(None, {n: median(v) for n, v in decode.items()})


def _quiet(run):
    """transformers 5.2x warns on every call that `past_key_values` becomes `cache`; 5.17 (the GPU machine's)
    knows only the old name, which both accept."""
    def wrapped(*args):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*past_key_values.*", category=FutureWarning)
            return run(*args)
    return wrapped


RUNNERS = {"eager": _quiet(eager), "graph": _quiet(graph), "compile": _quiet(compiled)}
