"""GPT-2 and Llama on the kernel library: local Hugging Face checkpoints, generation with a KV cache and
CUDA-graph decode, weight-only quantization (docs/MODELS.md).

    model = tilelang.models.load("path/to/model", backend="triton", quant="w4g128", dtype="f16")
    print(model.generate("The capital of France is", max_new_tokens=20).text)
"""
from .config import BUILTIN, ModelConfig
from .generation import Generation, Generator
from .loading import from_builtin, load
from .model import Model
from .quantize import QuantSpec
from .sampling import SamplingParams
from .schedule import ABLATIONS, Schedule

__all__ = ["BUILTIN", "ABLATIONS", "Generation", "Generator", "Model", "ModelConfig", "QuantSpec", "SamplingParams",
           "Schedule", "from_builtin", "load"]
