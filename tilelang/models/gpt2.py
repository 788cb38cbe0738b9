"""GPT-2: learned positions, LayerNorm, a GELU MLP with biases, a tied LM head (tilelang/models/model.py)."""
from __future__ import annotations

import torch

from .layers import Linear
from .model import Model, Pass


class GPT2(Model):
    arch = "gpt2"

    def __init__(self, config, weights, **kwargs):
        super().__init__(config, weights, **kwargs)
        self.fc = [Linear(weights[f"layers.{i}.fc.weight"], weights[f"layers.{i}.fc.bias"])
                   for i in range(config.layers)]
        self.proj = [Linear(weights[f"layers.{i}.proj.weight"], weights[f"layers.{i}.proj.bias"])
                     for i in range(config.layers)]

    def layernorm(self, name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        self.lib("layernorm", x, self.weights[name + ".weight"], self.weights[name + ".bias"], y, self.config.norm_eps)

    def embed_and_norm(self, p: Pass, h: torch.Tensor, n: torch.Tensor) -> None:
        self.gather(self.embed, p.ids, out=h)
        positions = self.gather(self.weights["positions"], p.positions)
        if self.schedule.reduction:  # h += positions and ln_1(h) in one kernel
            self.lib("add_layernorm", positions, h, self.weights["layers.0.norm1.weight"],
                     self.weights["layers.0.norm1.bias"], n, self.config.norm_eps)
        else:
            self.lib("add", h, positions, h)
            self.layernorm("layers.0.norm1", h, n)

    def norm1(self, layer: int, h: torch.Tensor, n: torch.Tensor) -> None:
        self.layernorm(f"layers.{layer}.norm1", h, n)

    def mlp(self, layer: int, h: torch.Tensor) -> None:
        n = torch.empty_like(h)
        self.layernorm(f"layers.{layer}.norm2", h, n)
        f = torch.empty(h.shape[0], self.config.intermediate, dtype=self.dtype, device=self.device)
        self.fc[layer](self.lib, self.schedule, n, f, gelu=True)
        self.proj[layer](self.lib, self.schedule, f, h, residual=h)

    def final_norm(self, h: torch.Tensor, n: torch.Tensor) -> None:
        self.layernorm("norm", h, n)
