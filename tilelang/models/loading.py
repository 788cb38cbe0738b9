"""Building a model: weights from a checkpoint folder (or random ones for a built-in configuration),
converted to the run dtype, optionally quantized, placed on the device, with its tokenizer and
generation defaults."""
from __future__ import annotations

from pathlib import Path

import torch

from ..diagnostics import TileError
from .checkpoint import Checkpoint
from .config import RUN_DTYPES, ModelConfig, builtin, from_hf
from .gpt2 import GPT2
from .llama import Llama
from .model import Model
from .quantize import QUANT_METHOD, QuantizedWeight, QuantSpec, quantize_all, read_quantized
from .schedule import FULL, Schedule
from .tokenizer import ByteTokenizer, generation_defaults, load_tokenizer
from .weights import LINEARS, from_checkpoint

DTYPES = dict(zip(RUN_DTYPES, (torch.float16, torch.bfloat16, torch.float32)))
ARCH = {"gpt2": GPT2, "llama": Llama}


def run_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """f16 on a GPU, f32 on the CPU (the reference interpreter), unless asked."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise TileError(f"unknown dtype {dtype!r}", hint="use f16, bf16 or f32")
    return DTYPES[dtype]


def default_device(device) -> torch.device:
    """The device asked for (checked), else the GPU if there is one."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TileError(f"unknown device {device!r}", hint="use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TileError(f"device {device!r}: torch sees no CUDA GPU here", hint="run on the CPU (--device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise TileError(f"device {device!r} is not supported", hint="use cpu, cuda or cuda:N")
    return dev


def quantized_names(config: ModelConfig) -> list[str]:
    """Every linear layer's weight, the LM head included."""
    return [f"layers.{i}.{n}.weight" for i in range(config.layers) for n in LINEARS[config.arch]] + ["head.weight"]


def layout_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight of the models' own layout (tilelang/models/weights.py) and its shape."""
    c = config
    h, i, hq = c.hidden, c.intermediate, c.heads * c.head_dim
    out = {"embed": (c.vocab, h), "norm.weight": (h,), "head.weight": (c.vocab, h)}
    per = {"norm1.weight": (h,), "norm2.weight": (h,), "qkv.weight": (c.qkv_width, h), "out.weight": (h, hq)}
    if c.arch == "gpt2":
        out.update({"positions": (c.max_positions, h), "norm.bias": (h,)})
        per.update({"norm1.bias": (h,), "norm2.bias": (h,), "qkv.bias": (c.qkv_width,), "out.bias": (h,),
                    "fc.weight": (i, h), "fc.bias": (i,), "proj.weight": (h, i), "proj.bias": (h,)})
    else:
        per.update({"gate.weight": (i, h), "up.weight": (i, h), "down.weight": (h, i)})
    for n in range(c.layers):
        out.update({f"layers.{n}.{k}": v for k, v in per.items()})
    return out


def random_weights(config: ModelConfig, seed: int = 0, device="cpu") -> dict[str, torch.Tensor]:
    """Normal(0, 0.02) linear weights and embeddings, unit norms, zero biases (float32)."""
    gen = torch.Generator(device).manual_seed(seed)
    out = {}
    for name, shape in layout_shapes(config).items():
        if name == "head.weight" and config.tie_embeddings:
            continue
        if ".norm" in name or name.startswith("norm"):
            out[name] = (torch.ones if name.endswith(".weight") else torch.zeros)(shape, device=device)
        elif name.endswith(".bias"):
            out[name] = torch.zeros(shape, device=device)
        else:
            out[name] = torch.randn(shape, generator=gen, device=device) * 0.02
    return out


def build(config: ModelConfig, weights: dict, *, dtype: torch.dtype, device: torch.device, backend: str | None,
          quant: QuantSpec | None = None, schedule: Schedule = FULL, progress=None) -> Model:
    """The model from CPU weights in the models' layout (some already QuantizedWeight); quantizes the
    linear layers first if `quant` says so (the errors are kept in `model.quant_errors`)."""
    errors: dict[str, float] = {}
    weights = dict(weights)
    if quant is not None:
        names = quantized_names(config)
        source = {n: weights.get(n, weights["embed"]) for n in names}  # a tied head quantizes the embedding
        quantized, errors = quantize_all(source, names, quant, dtype, progress)
        weights.update(quantized)
    placed = {}
    for name, w in weights.items():
        if isinstance(w, QuantizedWeight):
            placed[name] = w.to(device)
        else:
            placed[name] = w.to(device=device, dtype=dtype).contiguous()
    model = ARCH[config.arch](config, placed, dtype=dtype, device=device, backend=backend, schedule=schedule)
    model.quant_errors = errors
    return model


def load(path: str | Path, *, backend: str | None = None, quant: str | QuantSpec | None = None, dtype=None,
         device=None, schedule: Schedule = FULL, progress=None) -> Model:
    """A GPT-2 or Llama model from a local Hugging Face folder (see tilelang/models/checkpoint.py), or from
    a folder that `Model.save_quantized` wrote."""
    ckpt = Checkpoint(path)
    config = from_hf(ckpt.config, ckpt.folder / "config.json")
    device = default_device(device)
    qconfig = ckpt.config.get("quantization_config")
    if qconfig is not None:
        if not isinstance(qconfig, dict) or qconfig.get("quant_method") != QUANT_METHOD:
            method = qconfig.get("quant_method") if isinstance(qconfig, dict) else qconfig
            raise TileError(f"{ckpt.folder / 'config.json'}: quantization method {method!r} is not supported",
                            hint=f"load the unquantized checkpoint with --quant, or a folder saved by tilelang "
                                 f"({QUANT_METHOD})")
        if quant is not None:
            raise TileError(f"{ckpt.folder} is already quantized ({qconfig.get('spec')}); drop --quant")
        weights = _own_layout(ckpt, config, qconfig)
    else:
        weights = from_checkpoint(ckpt, config)
    spec = QuantSpec.parse(quant) if isinstance(quant, str) else quant
    model = build(config, weights, dtype=run_dtype(dtype, device), device=device, backend=backend, quant=spec,
                  schedule=schedule, progress=progress)
    model.source = ckpt.folder
    model.tokenizer = load_tokenizer(ckpt.folder, required=False)
    model.generation = generation_defaults(ckpt.folder, config.eos_token_ids)
    return model


def _own_layout(ckpt: Checkpoint, config: ModelConfig, qconfig: dict) -> dict:
    layers = qconfig.get("layers")
    if not isinstance(layers, list):
        raise TileError(f"{ckpt.folder / 'config.json'}: 'quantization_config' lacks its list of 'layers'")
    shapes = layout_shapes(config)
    out = read_quantized(ckpt, qconfig, {n: shapes[n] for n in layers if n in shapes})
    for name, shape in shapes.items():
        if name in out or (name == "head.weight" and config.tie_embeddings):
            continue
        out[name] = ckpt.checked(name, shape)
    return out


def from_builtin(name: str, *, backend: str | None = None, quant: str | QuantSpec | None = None, dtype=None,
                 device=None, seed: int = 0, schedule: Schedule = FULL, progress=None) -> Model:
    """A built-in configuration (config.BUILTIN) with random weights and a byte-level tokenizer."""
    config = builtin(name)
    device = default_device(device)
    spec = QuantSpec.parse(quant) if isinstance(quant, str) else quant
    # quantization runs on the CPU; otherwise draw the weights where they will live
    weights = random_weights(config, seed, "cpu" if spec is not None else device)
    model = build(config, weights, dtype=run_dtype(dtype, device), device=device, backend=backend, quant=spec,
                  schedule=schedule, progress=progress)
    model.random_weights = True
    model.tokenizer = ByteTokenizer()
    model.generation = generation_defaults(None, config.eos_token_ids)
    return model
