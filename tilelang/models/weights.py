"""Hugging Face tensor names and layouts -> the models' own.

The models keep one flat dict of CPU tensors under their own names, in the layouts the kernels
read: every linear weight in torch's `[out, in]` (GPT-2's Conv1D `[in, out]` transposed), and the
query, key and value projections fused into one `qkv` matrix grouped per kv head (for each kv
head its G query heads, then its key head, then its value head; see kernels/attention.tile).

    embed [V, H]   positions [P, H] (GPT-2)   norm.weight [H] (+ norm.bias, GPT-2)   head.weight [V, H] (untied)
    layers.{i}.norm1.weight  .qkv.weight [C, H]  .out.weight [H, HQ*D]  .norm2.weight     (+ .bias, GPT-2)
    GPT-2: layers.{i}.fc.weight [I, H], .proj.weight [H, I]; Llama: .gate.weight, .up.weight [I, H], .down.weight [H, I]

LINEARS names the layers that `--quant` quantizes.
"""
from __future__ import annotations

import torch

from .checkpoint import Checkpoint
from .config import ModelConfig

LINEARS = {"gpt2": ("qkv", "out", "fc", "proj"), "llama": ("qkv", "out", "gate", "up", "down")}


def group_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Rows of q [HQ*D, ...], k and v [HKV*D, ...] regrouped per kv head: G query heads, the key, the value."""
    hkv, g, d = config.kv_heads, config.group, config.head_dim
    rest = q.shape[1:]
    parts = [q.reshape(hkv, g, d, *rest), k.reshape(hkv, 1, d, *rest), v.reshape(hkv, 1, d, *rest)]
    return torch.cat(parts, dim=1).reshape(config.qkv_width, *rest)


def ungroup_qkv(qkv: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of group_qkv."""
    hkv, g, d = config.kv_heads, config.group, config.head_dim
    rest = qkv.shape[1:]
    x = qkv.reshape(hkv, g + 2, d, *rest)
    return (x[:, :g].reshape(hkv * g * d, *rest), x[:, g].reshape(hkv * d, *rest),
            x[:, g + 1].reshape(hkv * d, *rest))


def from_checkpoint(ckpt: Checkpoint, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Every weight of the model, checked against config.json (shape and float dtype, each error naming
    the file and the tensor), in the models' names and layouts; dtypes as stored."""
    return (_gpt2 if config.arch == "gpt2" else _llama)(ckpt, config)


def _gpt2(ckpt: Checkpoint, c: ModelConfig) -> dict[str, torch.Tensor]:
    p = "transformer." if "transformer.wte.weight" in ckpt else ""
    h, i = c.hidden, c.intermediate
    out = {"embed": ckpt.checked(p + "wte.weight", (c.vocab, h), "vocab_size, n_embd"),
           "positions": ckpt.checked(p + "wpe.weight", (c.max_positions, h), "n_positions, n_embd"),
           "norm.weight": ckpt.checked(p + "ln_f.weight", (h,), "n_embd"),
           "norm.bias": ckpt.checked(p + "ln_f.bias", (h,), "n_embd")}
    if not c.tie_embeddings:
        out["head.weight"] = ckpt.checked("lm_head.weight", (c.vocab, h), "vocab_size, n_embd")
    for n in range(c.layers):
        b, o = f"{p}h.{n}.", f"layers.{n}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[o + ours + ".weight"] = ckpt.checked(b + theirs + ".weight", (h,), "n_embd")
            out[o + ours + ".bias"] = ckpt.checked(b + theirs + ".bias", (h,), "n_embd")
        qkv = ckpt.checked(b + "attn.c_attn.weight", (h, 3 * h), "n_embd, 3 * n_embd").t()
        out[o + "qkv.weight"] = group_qkv(*qkv.split(h), c)
        out[o + "qkv.bias"] = group_qkv(*ckpt.checked(b + "attn.c_attn.bias", (3 * h,), "3 * n_embd").split(h), c)
        for ours, theirs, shape, meaning in (("out", "attn.c_proj", (h, h), "n_embd, n_embd"),
                                             ("fc", "mlp.c_fc", (h, i), "n_embd, n_inner"),
                                             ("proj", "mlp.c_proj", (i, h), "n_inner, n_embd")):
            out[o + ours + ".weight"] = ckpt.checked(b + theirs + ".weight", shape, meaning).t()  # Conv1D: [in, out]
            out[o + ours + ".bias"] = ckpt.checked(b + theirs + ".bias", shape[1:], meaning.split(", ")[1])
    return out


def _llama(ckpt: Checkpoint, c: ModelConfig) -> dict[str, torch.Tensor]:
    h, i, qd, kd = c.hidden, c.intermediate, c.heads * c.head_dim, c.kv_heads * c.head_dim
    out = {"embed": ckpt.checked("model.embed_tokens.weight", (c.vocab, h), "vocab_size, hidden_size"),
           "norm.weight": ckpt.checked("model.norm.weight", (h,), "hidden_size")}
    if not c.tie_embeddings:
        out["head.weight"] = ckpt.checked("lm_head.weight", (c.vocab, h), "vocab_size, hidden_size")
    for n in range(c.layers):
        b, o = f"model.layers.{n}.", f"layers.{n}."
        out[o + "norm1.weight"] = ckpt.checked(b + "input_layernorm.weight", (h,), "hidden_size")
        out[o + "norm2.weight"] = ckpt.checked(b + "post_attention_layernorm.weight", (h,), "hidden_size")
        q = ckpt.checked(b + "self_attn.q_proj.weight", (qd, h), "num_attention_heads * head_dim, hidden_size")
        k = ckpt.checked(b + "self_attn.k_proj.weight", (kd, h), "num_key_value_heads * head_dim, hidden_size")
        v = ckpt.checked(b + "self_attn.v_proj.weight", (kd, h), "num_key_value_heads * head_dim, hidden_size")
        out[o + "qkv.weight"] = group_qkv(q, k, v, c)
        out[o + "out.weight"] = ckpt.checked(b + "self_attn.o_proj.weight", (h, qd),
                                             "hidden_size, num_attention_heads * head_dim")
        for ours, theirs, shape, meaning in (("gate", "gate_proj", (i, h), "intermediate_size, hidden_size"),
                                             ("up", "up_proj", (i, h), "intermediate_size, hidden_size"),
                                             ("down", "down_proj", (h, i), "hidden_size, intermediate_size")):
            out[o + ours + ".weight"] = ckpt.checked(b + "mlp." + theirs + ".weight", shape, meaning)
    return out


def to_hf(weights: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The inverse mapping: a transformers state dict (for building the transformers peers from the
    same weights, and for tests)."""
    c, out = config, {}
    if c.arch == "gpt2":
        p = "transformer."
        out.update({p + "wte.weight": weights["embed"], p + "wpe.weight": weights["positions"],
                    p + "ln_f.weight": weights["norm.weight"], p + "ln_f.bias": weights["norm.bias"]})
        for n in range(c.layers):
            b, o = f"{p}h.{n}.", f"layers.{n}."
            for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[b + theirs + ".weight"], out[b + theirs + ".bias"] = weights[o + ours + ".weight"], \
                    weights[o + ours + ".bias"]
            out[b + "attn.c_attn.weight"] = torch.cat(ungroup_qkv(weights[o + "qkv.weight"], c)).t().contiguous()
            out[b + "attn.c_attn.bias"] = torch.cat(ungroup_qkv(weights[o + "qkv.bias"], c))
            for ours, theirs in (("out", "attn.c_proj"), ("fc", "mlp.c_fc"), ("proj", "mlp.c_proj")):
                out[b + theirs + ".weight"] = weights[o + ours + ".weight"].t().contiguous()
                out[b + theirs + ".bias"] = weights[o + ours + ".bias"]
    else:
        out.update({"model.embed_tokens.weight": weights["embed"], "model.norm.weight": weights["norm.weight"]})
        for n in range(c.layers):
            b, o = f"model.layers.{n}.", f"layers.{n}."
            out[b + "input_layernorm.weight"] = weights[o + "norm1.weight"]
            out[b + "post_attention_layernorm.weight"] = weights[o + "norm2.weight"]
            q, k, v = ungroup_qkv(weights[o + "qkv.weight"], c)
            out.update({b + "self_attn.q_proj.weight": q, b + "self_attn.k_proj.weight": k,
                        b + "self_attn.v_proj.weight": v, b + "self_attn.o_proj.weight": weights[o + "out.weight"]})
            for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
                out[b + "mlp." + theirs + ".weight"] = weights[o + ours + ".weight"]
    out["lm_head.weight"] = weights.get("head.weight", weights["embed"])
    return out
