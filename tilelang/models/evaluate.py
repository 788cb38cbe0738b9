"""Perplexity of a model on a token sequence: the quantization report's measure of what quantizing cost."""
from __future__ import annotations

import math

import torch

from ..diagnostics import TileError


def perplexity(model, ids: list[int], window: int | None = None) -> float:
    """exp(mean negative log-likelihood) of each token given the ones before it, over windows of at most
    `window` tokens (default: the model's positions, at most 1024), each a fresh prefill."""
    window = window or min(model.config.max_positions, 1024)
    if len(ids) < 2:
        raise TileError("perplexity needs at least two tokens")
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        if len(chunk) < 2:
            break
        logits = model.logits(chunk[:-1]).double().cpu()
        logp = torch.log_softmax(logits, dim=-1)
        nll -= float(logp[torch.arange(len(chunk) - 1), torch.tensor(chunk[1:])].sum())
        count += len(chunk) - 1
    return math.exp(nll / count)
