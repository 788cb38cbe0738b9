"""GPT-2: learned positions, LayerNorm, a GELU MLP with biases, a tied LM head (tilelang/models/model.py)."""
from __future__ import annotations

import torch

from .layers import Linear
from .model import Model, Pass


class GPT2(Model):
    """GPT-2's embeddings, LayerNorms and GELU MLP on the shared forward pass."""

    def __init__(self, config, weights, **kwargs):
        super().__init__(config, weights, **kwargs)
        self.position_limit = config.max_positions
        self.fc = [Linear(weights[f"layers.{i}.fc.weight"], weights[f"layers.{i}.fc.bias"])
                   for i in range(config.layers)]
        self.proj = [Linear(weights[f"layers.{i}.proj.weight"], weights[f"layers.{i}.proj.bias"])
                     for i in range(config.layers)]

    def norm(self, name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        self.lib("layernorm", x, self.weights[name + ".weight"], self.weights[name + ".bias"], y, self.config.norm_eps)

    def norm_linear(self, name: str, linear: Linear, x: torch.Tensor, y: torch.Tensor, gelu: bool = False) -> None:
        self.lib("layernorm_linear_bias_gelu" if gelu else "layernorm_linear_bias", x, self.weights[name + ".weight"],
                 self.weights[name + ".bias"], linear.weight, linear.bias, y, self.config.norm_eps)

    def embed(self, p: Pass, h: torch.Tensor) -> torch.Tensor | None:
        self.gather(self.embed_table, p.ids, out=h)
        positions = self.gather(self.weights["positions"], p.positions)
        if self.schedule.reduction and not self.fuses_norm(h.shape[0], self.qkv[0]):
            n = torch.empty_like(h)  # h += positions and ln_1(h) in one kernel
            self.lib("add_layernorm", positions, h, self.weights["layers.0.norm1.weight"],
                     self.weights["layers.0.norm1.bias"], n, self.config.norm_eps)
            return n
        self.lib("add", h, positions, h)  # ln_1 then runs inside layer 0's QKV GEMM, or on its own
        return None

    def mlp(self, layer: int, h: torch.Tensor) -> None:
        f = torch.empty(h.shape[0], self.config.intermediate, dtype=self.dtype, device=self.device)
        self.normed(f"layers.{layer}.norm2", self.fc[layer], h, f, gelu=True)
        self.proj[layer](self.lib, self.schedule, f, h, residual=h)
