"""Choosing the next token from the logits, on the logits' device.

Greedy is an argmax: the library's `argmax` kernel (kernels/sampling.tile; ties go to the smallest
id, NaN above every number, as torch.argmax), run by `next_tokens`. Otherwise the logits are divided
by the temperature, cut to the top k and to the smallest set of tokens whose probability reaches top_p
(as transformers does), and one token is drawn with the exponential-race trick (argmax of p / E,
E ~ Exp(1)), which needs no host sync and so can be captured in a CUDA graph.  These are torch ops
(`sample`) until the language has sampling kernels (docs/MODELS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diagnostics import TileError
from .library import Library


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off

    def __post_init__(self):
        if not self.temperature >= 0:
            raise TileError(f"temperature {self.temperature} must be >= 0", hint="0 is greedy")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise TileError(f"top_k {self.top_k!r} must be a non-negative integer", hint="0 turns it off")
        if not 0 < self.top_p <= 1:
            raise TileError(f"top_p {self.top_p} must be in (0, 1]", hint="1 turns it off")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids [B] (int64) from logits [B, V] (float32)."""
    if params.greedy:
        return logits.argmax(dim=-1)
    x = logits / params.temperature
    if params.top_k and params.top_k < x.shape[-1]:
        kth = torch.topk(x, params.top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        probs = sorted_x.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # the mass of the tokens ranked above each one
        sorted_x = sorted_x.masked_fill(before >= params.top_p, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(-1, order, sorted_x)
    probs = x.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / race).argmax(dim=-1)


def next_tokens(lib: Library, logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Next token ids [B] (int64) from logits [B, V]: greedy through the `argmax` kernel, else `sample`."""
    if not params.greedy:
        return lib.torch_op("sample", sample, logits, params)
    ids = torch.empty(logits.shape[0], 1, dtype=torch.int64, device=logits.device)
    best = torch.empty(logits.shape[0], 1, dtype=torch.float32, device=logits.device)
    lib("argmax", logits, ids, best)
    return ids.view(-1)
