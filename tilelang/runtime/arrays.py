"""Moving arguments between torch, cupy and numpy without losing dtypes numpy lacks (bf16, f8)."""
from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

_TORCH_VIEW = {"bfloat16": ("int16", ml_dtypes.bfloat16), "float8_e4m3fn": ("uint8", ml_dtypes.float8_e4m3fn),
               "float8_e5m2": ("uint8", ml_dtypes.float8_e5m2)}


def to_numpy(x: Any) -> np.ndarray:
    """A numpy array with the same values; shares memory where the array is on the CPU."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        name = str(t.dtype).replace("torch.", "")
        if name in _TORCH_VIEW:
            import torch
            raw, npdt = _TORCH_VIEW[name]
            return t.view(getattr(torch, raw)).numpy().view(npdt)
        return t.numpy()
    if mod == "cupy":
        return x.get()
    return np.asarray(x)


def from_numpy_into(src: np.ndarray, dst: Any) -> None:
    """Write `src` back into `dst` where `to_numpy` had to copy (GPU arrays)."""
    mod = type(dst).__module__.split(".")[0]
    if mod == "torch" and dst.device.type != "cpu":
        import torch
        name = str(dst.dtype).replace("torch.", "")
        if name in _TORCH_VIEW:
            raw = getattr(torch, _TORCH_VIEW[name][0])
            dst.view(raw).copy_(torch.from_numpy(src.view(_np_raw(name))))
        else:
            dst.copy_(torch.from_numpy(src))
    elif mod == "cupy":
        dst.set(src)


def _np_raw(name: str):
    return np.int16 if _TORCH_VIEW[name][0] == "int16" else np.uint8


def clone(x: Any) -> Any:
    """A fresh contiguous copy on the same device, of the same library and dtype."""
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        return x.detach().clone()
    return x.copy()  # numpy and cupy
