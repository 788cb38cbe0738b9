"""GPT-2 and Llama on the kernel library: local Hugging Face checkpoints, generation with a KV cache and
CUDA-graph decode, weight-only quantization (docs/MODELS.md).

    model = tilelang.models.load("path/to/model", backend="triton", quant="w4g128", dtype="f16")
    print(model.generate("The capital of France is", max_new_tokens=20).text)

Names are imported on first use, so that `tilelang check` (whose parser lists the model commands)
does not import torch.
"""
import importlib

_EXPORTS = {"load": "loading", "from_builtin": "loading", "Model": "model", "ModelConfig": "config",
            "BUILTIN": "config", "Generation": "generation", "Generator": "generation", "QuantSpec": "quantize",
            "SamplingParams": "sampling", "Schedule": "schedule", "ABLATIONS": "schedule"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tilelang.models' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
