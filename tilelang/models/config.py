"""What a model is: the shapes and choices its forward pass depends on, read from a Hugging Face
`config.json` (GPT-2 and Llama) or named among the built-in random-weight configurations.

Every key the loader reads is checked here, once, with an error naming `config.json` and the key;
features the kernels do not implement (another activation, biased Llama projections, a rope
scaling other than linear/llama3, a head dim the attention tiles cannot hold) are refused by name
rather than computed wrongly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..diagnostics import TileError

ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # the tanh approximation, what linear_bias_gelu computes
ROPE_TYPES = ("default", "linear", "llama3")
RUN_DTYPES = ("f16", "bf16", "f32")  # the dtypes a model runs in (activations and dense weights)


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # "gpt2" or "llama"
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    max_positions: int
    norm_eps: float
    tie_embeddings: bool
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] = ()  # HF's rope parameters beyond theta, as sorted items
    scale_attn_by_layer: bool = False  # GPT-2's scale_attn_by_inverse_layer_idx
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    name: str = ""  # the built-in configuration's name, or the checkpoint folder
    hf: dict = field(default_factory=dict, compare=False, repr=False)  # the config.json it came from

    @property
    def group(self) -> int:
        """Query heads per kv head (G)."""
        return self.heads // self.kv_heads

    @property
    def qkv_width(self) -> int:
        """Columns of the fused, grouped QKV projection: per kv head G queries, a key and a value."""
        return self.kv_heads * (self.group + 2) * self.head_dim

    def sm_scale(self, layer: int) -> float:
        scale = self.head_dim ** -0.5
        return scale / (layer + 1) if self.scale_attn_by_layer else scale

    def to_hf(self) -> dict:
        """A `config.json` transformers builds this model from (random weights, peers, tests)."""
        if self.hf:
            return dict(self.hf)
        if self.arch == "gpt2":
            return {"model_type": "gpt2", "architectures": [ARCHITECTURES["gpt2"]], "vocab_size": self.vocab,
                    "n_embd": self.hidden, "n_layer": self.layers, "n_head": self.heads,
                    "n_inner": self.intermediate, "n_positions": self.max_positions,
                    "layer_norm_epsilon": self.norm_eps, "activation_function": "gelu_new",
                    "tie_word_embeddings": True, "bos_token_id": self.bos_token_id,
                    "eos_token_id": self.eos_token_ids[0] if self.eos_token_ids else None}
        out = {"model_type": "llama", "architectures": [ARCHITECTURES["llama"]], "vocab_size": self.vocab,
               "hidden_size": self.hidden, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
               "num_key_value_heads": self.kv_heads, "head_dim": self.head_dim,
               "intermediate_size": self.intermediate, "max_position_embeddings": self.max_positions,
               "rms_norm_eps": self.norm_eps, "tie_word_embeddings": self.tie_embeddings,
               "rope_theta": self.rope_theta, "hidden_act": "silu", "bos_token_id": self.bos_token_id,
               "eos_token_id": list(self.eos_token_ids) or None}
        if self.rope_scaling:
            out["rope_scaling"] = dict(self.rope_scaling)
        return out


def llama3_scaling() -> tuple[tuple[str, Any], ...]:
    """Llama 3.1/3.2's rope scaling."""
    return tuple(sorted({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}.items()))


def _gpt2(name, hidden, layers, heads, vocab=50257, positions=1024) -> ModelConfig:
    return ModelConfig("gpt2", vocab, hidden, layers, heads, heads, hidden // heads, 4 * hidden, positions, 1e-5,
                       True, bos_token_id=vocab - 1, eos_token_ids=(vocab - 1,), name=name)


def _llama(name, hidden, layers, heads, kv_heads, intermediate, vocab=128256, tie=False, head_dim=None,
           positions=131072, theta=500000.0, scaling=True) -> ModelConfig:
    return ModelConfig("llama", vocab, hidden, layers, heads, kv_heads, head_dim or hidden // heads, intermediate,
                       positions, 1e-5, tie, theta, llama3_scaling() if scaling else (),
                       bos_token_id=1 if vocab < 1000 else 128000, eos_token_ids=(2,) if vocab < 1000 else (128001,),
                       name=name)


BUILTIN: dict[str, ModelConfig] = {c.name: c for c in [
    _gpt2("tiny-gpt2", 64, 2, 4, vocab=512, positions=256),
    _gpt2("gpt2", 768, 12, 12),
    _gpt2("gpt2-medium", 1024, 24, 16),
    _gpt2("gpt2-large", 1280, 36, 20),
    _gpt2("gpt2-xl", 1600, 48, 25),
    _llama("tiny-llama", 64, 2, 4, 2, 128, vocab=512, positions=256, theta=10000.0, scaling=False),
    _llama("llama-1b", 2048, 16, 32, 8, 8192, tie=True),
    _llama("llama-3b", 3072, 28, 24, 8, 8192, tie=True, head_dim=128),
    _llama("llama-8b", 4096, 32, 32, 8, 14336),
]}
"""Built-in shapes for `--model NAME`: the published models' shapes with random weights (tiny-* are
small enough for the reference interpreter).  Llama-1B/3B/8B are Llama-3.2-1B/3B and Llama-3.1-8B."""


def builtin(name: str) -> ModelConfig:
    if name not in BUILTIN:
        raise TileError(f"unknown built-in model '{name}'", hint="built-in models: " + ", ".join(BUILTIN))
    return BUILTIN[name]


class _Reader:
    """Typed reads of config.json keys, each error naming the file and the key."""

    def __init__(self, cfg: dict, path: Path):
        self.cfg, self.path = cfg, path

    def fail(self, key: str, message: str, hint: str | None = None) -> TileError:
        return TileError(f"{self.path}: '{key}' {message}", hint=hint)

    def get(self, key: str, kind: type, default: Any = ..., *aliases: str) -> Any:
        for k in (key, *aliases):
            if k in self.cfg and self.cfg[k] is not None:
                value = self.cfg[k]
                if kind is float and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
                if kind is int and isinstance(value, bool) or not isinstance(value, kind):
                    raise self.fail(k, f"is {value!r}, expected {'a number' if kind is float else kind.__name__}")
                if kind is int and value <= 0:
                    raise self.fail(k, f"is {value}, expected a positive integer")
                return value
        if default is ...:
            raise self.fail(key, "is missing", hint=f"a {self.cfg.get('model_type', 'model')} config.json names it")
        return default

    def token_ids(self, key: str) -> tuple[int, ...]:
        value = self.cfg.get(key)
        if value is None:
            return ()
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise self.fail(key, f"is {value!r}, expected a token id or a list of them")
        return tuple(values)


def from_hf(cfg: dict, path: Path) -> ModelConfig:
    """Read a GPT-2 or Llama `config.json` (already parsed; `path` names it in errors)."""
    r = _Reader(cfg, path)
    arch = cfg.get("model_type")
    if arch not in ARCHITECTURES:
        archs = cfg.get("architectures")
        raise TileError(f"{path}: unsupported architecture {arch!r}" + (f" ({', '.join(map(str, archs))})"
                                                                           if isinstance(archs, list) else ""),
                        hint="tilelang.models runs model_type 'gpt2' (GPT2LMHeadModel) and 'llama' (LlamaForCausalLM)")
    if arch == "gpt2":
        hidden, heads = r.get("n_embd", int), r.get("n_head", int)
        act = r.get("activation_function", str, "gelu_new")
        if act not in GPT2_ACTIVATIONS:
            raise r.fail("activation_function", f"is {act!r}, which the GPT-2 MLP kernel does not compute",
                         hint=f"supported: {', '.join(GPT2_ACTIVATIONS)} (GELU's tanh approximation)")
        if hidden % heads:
            raise r.fail("n_head", f"{heads} does not divide n_embd {hidden}")
        config = ModelConfig(
            "gpt2", r.get("vocab_size", int), hidden, r.get("n_layer", int), heads, heads, hidden // heads,
            r.get("n_inner", int, 4 * hidden), r.get("n_positions", int, 1024, "max_position_embeddings"),
            r.get("layer_norm_epsilon", float, 1e-5), r.get("tie_word_embeddings", bool, True),
            scale_attn_by_layer=r.get("scale_attn_by_inverse_layer_idx", bool, False),
            bos_token_id=(r.token_ids("bos_token_id") or (None,))[0], eos_token_ids=r.token_ids("eos_token_id"),
            name=str(path.parent), hf=dict(cfg))
        if not r.get("scale_attn_weights", bool, True):
            raise r.fail("scale_attn_weights", "is false (unscaled attention scores) and is not supported")
    else:
        hidden, heads = r.get("hidden_size", int), r.get("num_attention_heads", int)
        kv_heads = r.get("num_key_value_heads", int, heads)
        act = r.get("hidden_act", str, "silu")
        if act != "silu":
            raise r.fail("hidden_act", f"is {act!r}; the Llama MLP kernels compute SiLU")
        for key in ("attention_bias", "mlp_bias"):
            if r.get(key, bool, False):
                raise r.fail(key, "is true: biased Llama projections are not supported")
        if heads % kv_heads:
            raise r.fail("num_key_value_heads", f"{kv_heads} does not divide num_attention_heads {heads}")
        if hidden % heads and "head_dim" not in cfg:
            raise r.fail("num_attention_heads", f"{heads} does not divide hidden_size {hidden}")
        theta, scaling = _rope(r)
        config = ModelConfig(
            "llama", r.get("vocab_size", int), hidden, r.get("num_hidden_layers", int), heads, kv_heads,
            r.get("head_dim", int, hidden // heads), r.get("intermediate_size", int),
            r.get("max_position_embeddings", int, 2048), r.get("rms_norm_eps", float, 1e-6),
            r.get("tie_word_embeddings", bool, False), theta, scaling,
            bos_token_id=(r.token_ids("bos_token_id") or (None,))[0], eos_token_ids=r.token_ids("eos_token_id"),
            name=str(path.parent), hf=dict(cfg))
    check_shapes(config, path)
    return config


def _rope(r: _Reader) -> tuple[float, tuple]:
    """rope_theta and the scaling parameters, from transformers 4's keys or 5's `rope_parameters`."""
    params = r.cfg.get("rope_parameters") or r.cfg.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise r.fail("rope_parameters", f"is {params!r}, expected an object")
    theta = params.get("rope_theta", r.get("rope_theta", float, 10000.0))
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        raise r.fail("rope_theta", f"is {theta!r}, expected a positive number")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise r.fail("rope_parameters", f"has rope_type {rope_type!r}, which is not supported",
                     hint=f"supported: {', '.join(ROPE_TYPES)}")
    keys = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                                              "original_max_position_embeddings")}.get(rope_type, ())
    for k in keys:
        if not isinstance(params.get(k), (int, float)) or isinstance(params.get(k), bool):
            raise r.fail("rope_parameters", f"of rope_type {rope_type!r} lacks a number '{k}'")
    scaling = tuple(sorted([("rope_type", rope_type)] + [(k, float(params[k])) for k in keys])) \
        if rope_type != "default" else ()
    return float(theta), scaling


def check_shapes(config: ModelConfig, path: Path | str) -> None:
    """Shapes the kernels need: a power-of-two head dim of 16..256 (a [rows, head_dim] window is one
    head; tile extents are powers of two) and G = heads / kv_heads of at most 64 query rows per tile."""
    d = config.head_dim
    if d < 16 or d > 256 or d & (d - 1):
        raise TileError(f"{path}: head dim {d} is not supported",
                        hint="the attention kernels take one head per tile: a power of two from 16 to 256")
    if config.group > 64:
        raise TileError(f"{path}: {config.heads} query heads over {config.kv_heads} kv heads (G = {config.group}) "
                        "is not supported", hint="G = num_attention_heads / num_key_value_heads up to 64")


def rope_inv_freq(config: ModelConfig):
    """Llama's D/2 rotary frequencies (a float32 torch tensor) with linear or llama3 scaling, computed
    as transformers computes them, in float32, so that position tables agree with its own."""
    import torch
    d = config.head_dim
    inv = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    s = dict(config.rope_scaling)
    if s.get("rope_type") == "linear":
        inv = inv / s["factor"]
    elif s.get("rope_type") == "llama3":
        low_wavelen = s["original_max_position_embeddings"] / s["low_freq_factor"]
        high_wavelen = s["original_max_position_embeddings"] / s["high_freq_factor"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / s["factor"], inv)
        smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / (
            s["high_freq_factor"] - s["low_freq_factor"])
        mid = (1 - smooth) * scaled / s["factor"] + smooth * scaled
        inv = torch.where(~(wavelen < high_wavelen) & ~(wavelen > low_wavelen), mid, scaled)
    return inv
