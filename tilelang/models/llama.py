"""Llama: RMSNorm, rotary positions (with Llama 3's scaling), grouped-query attention, a SwiGLU MLP
(tilelang/models/model.py)."""
from __future__ import annotations

import torch

from .config import rope_inv_freq
from .layers import DECODE_ROWS, Linear
from .model import Model, Pass, next_pow2
from .quantize import QuantizedWeight


class Llama(Model):
    """Llama's RMSNorms, rotary positions and SwiGLU MLP on the shared forward pass."""

    def __init__(self, config, weights, **kwargs):
        super().__init__(config, weights, **kwargs)
        self.gate = [Linear(weights[f"layers.{i}.gate.weight"]) for i in range(config.layers)]
        self.up = [Linear(weights[f"layers.{i}.up.weight"]) for i in range(config.layers)]
        self.down = [Linear(weights[f"layers.{i}.down.weight"]) for i in range(config.layers)]
        self.cos = self.sin = None
        self.rope_positions(min(config.max_positions, 4096))

    def rope_positions(self, positions: int) -> None:
        """cos, sin [positions, D/2] (float32) of every position up to `positions` (grown on demand)."""
        if self.cos is not None and self.cos.shape[0] >= positions:
            return
        angles = torch.arange(positions, dtype=torch.float32)[:, None] * rope_inv_freq(self.config)[None, :]
        self.cos, self.sin = angles.cos().to(self.device), angles.sin().to(self.device)

    def norm(self, name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        pinned = {} if self.schedule.reduction else self.lib.untuned("rmsnorm")
        self.lib("rmsnorm", x, self.weights[name + ".weight"], y, self.config.norm_eps, **pinned)

    def norm_linear(self, name: str, linear: Linear, x: torch.Tensor, y: torch.Tensor, gelu: bool = False) -> None:
        wn, eps, w = self.weights[name + ".weight"], self.config.norm_eps, linear.weight
        if isinstance(w, QuantizedWeight):
            self.lib("rmsnorm_gemv_wNa16", x, wn, w.qweight, w.scales, y, eps, TW=w.spec.tw, G=w.group)
        else:
            self.lib("rmsnorm_linear", x, wn, w, y, eps)

    def fused_quantized(self, rows: int, linear: Linear) -> bool:
        """rmsnorm_gemv_wNa16 and fused_mlp_gate_up_wNa16 take one row and symmetric codes."""
        return rows == 1 and isinstance(linear.weight, QuantizedWeight) and linear.weight.zeros is None

    def embed(self, p: Pass, h: torch.Tensor) -> None:
        self.gather(self.embed_table, p.ids, out=h)
        p.rope = self.gather(self.cos, p.positions), self.gather(self.sin, p.positions)

    def rotary(self, p: Pass, qkv: torch.Tensor) -> None:
        c = self.config
        self.lib("rotary_qk", self.grouped(qkv), *p.rope, D=c.head_dim, BH=next_pow2(c.group + 2))

    def mlp(self, layer: int, h: torch.Tensor) -> None:
        c, lib, sched = self.config, self.lib, self.schedule
        m = h.shape[0]
        decode = m <= DECODE_ROWS
        dense = not isinstance(self.gate[layer].weight, QuantizedWeight)
        matmul = sched.gemv if decode else sched.gemm
        hid = torch.empty(m, c.intermediate, dtype=self.dtype, device=self.device)
        gate, up, wn = self.gate[layer].weight, self.up[layer].weight, self.weights[f"layers.{layer}.norm2.weight"]
        if self.fuses_norm(m, self.gate[layer]) and dense:  # the norm, both projections and SiLU * up in one
            lib("fused_mlp_gate_up", h, wn, gate, up, hid, c.norm_eps)
        elif self.fuses_norm(m, self.gate[layer]):
            lib("fused_mlp_gate_up_wNa16", h, wn, gate.qweight, gate.scales, up.qweight, up.scales, hid, c.norm_eps,
                TW=gate.spec.tw, G=gate.group)
        else:
            n = torch.empty_like(h)
            self.norm(f"layers.{layer}.norm2", h, n)
            if dense and matmul:
                tiles = dict(BM=DECODE_ROWS, candidates=dict(BN=[32, 64], BK=[64, 128])) if decode else {}
                lib("mlp_gate_up", n, gate, up, hid, **tiles)
            else:
                g, u = torch.empty_like(hid), torch.empty_like(hid)
                self.gate[layer](lib, sched, n, g)
                self.up[layer](lib, sched, n, u)
                lib("silu_mul", g, u, hid)
        self.down[layer](lib, sched, hid, h, residual=h)

