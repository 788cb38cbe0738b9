"""Launching compiled GPU functions through CuPy on torch or cupy arrays.

Shared by the CUDA backend (NVRTC cubins) and by the ahead-of-time kernels of
`tilelang build` (nvcc and Triton cubins), which run where no compiler is: a cubin
is loaded with CuPy's `RawModule(path=...)` and launched on the device of the
call's arrays, on torch's current stream when they are torch tensors (so CUDA-graph
capture records the launch).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from ..diagnostics import TileError
from .args import BoundCall

DEFAULT_SMEM = 48 * 1024  # dynamic shared memory a launch gets without opting in


def cupy_module():
    """CuPy, where a GPU is usable; a TileError saying what is missing otherwise."""
    try:
        import cupy
    except ImportError as e:
        raise TileError(f"launching compiled CUDA kernels needs CuPy ({e})",
                        hint="pip install cupy-cuda13x (or cupy-cuda12x), or use backend='triton'") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception as e:  # noqa: BLE001 - CUDA reports a missing driver in many ways
        raise TileError(f"no usable GPU for compiled CUDA kernels ({e})",
                        hint="run on a machine with an NVIDIA GPU, or use backend='reference'") from None
    return cupy


def load_function(path: Path, name: str, smem_bytes: int):
    """A cubin's kernel `name` as a CuPy RawKernel, opted in to `smem_bytes` of shared memory."""
    kernel = cupy_module().RawModule(path=str(path)).get_function(name)
    if smem_bytes > DEFAULT_SMEM:
        kernel.max_dynamic_shared_size_bytes = smem_bytes
    return kernel


def device_pointer(a, name: str) -> int:
    """The device address of a torch or cupy GPU array (argument `name`, for errors)."""
    mod = type(a).__module__.split(".")[0]
    if mod == "torch":
        if a.device.type != "cuda":
            raise TileError(f"argument '{name}' is on {a.device}; compiled CUDA kernels need GPU tensors",
                            hint="move it with .cuda()")
        return a.data_ptr()
    if mod == "cupy":
        return a.data.ptr
    raise TileError(f"argument '{name}' is a {type(a).__name__}; compiled CUDA kernels take torch or cupy GPU "
                    "arrays", hint="use torch.tensor(..., device='cuda') or cupy.asarray(...)")


def launch(kernel, call: BoundCall, grid: tuple[int, int, int], threads: int, args: tuple, smem_bytes: int) -> None:
    """Launch on the device of the call's arrays, on torch's current stream for torch tensors."""
    import cupy
    device = next((int(i.device.split(":")[1]) for i in call.infos.values() if i.device.startswith("cuda")), 0)
    with cupy.cuda.Device(device):
        stream = _stream(call)
        with stream if stream is not None else nullcontext():
            kernel(grid, (threads, 1, 1), args, shared_mem=smem_bytes)


def _stream(call: BoundCall):
    if not any(type(a).__module__.split(".")[0] == "torch" for a in call.arrays.values()):
        return None
    import cupy
    import torch
    dev = next(a.device for a in call.arrays.values() if type(a).__module__.split(".")[0] == "torch")
    stream = torch.cuda.current_stream(dev)
    from_external = getattr(cupy.cuda.Stream, "from_external", None)  # CuPy >= 14; ExternalStream is deprecated
    if from_external is not None and hasattr(stream, "__cuda_stream__"):
        return from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, dev.index or 0)
