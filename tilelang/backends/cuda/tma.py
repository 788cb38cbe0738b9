"""Hopper's bulk tensor copies (TMA, `cp.async.bulk.tensor`) for pipelined loads of wgmma operands.

* A pipelined `copy(G[...], tile)` whose tile is in a canonical wgmma swizzle (`smem_gmma`: rows of
  32/64/128 bytes, 8-row atoms, column blocks stored one after another) is exactly what a TMA box
  with the matching swizzle mode writes: one box per column block, `block` elements wide and the
  tile's rows high.  Out-of-bounds elements of a box are zero-filled by the hardware (the masks
  of the cp.async path), and the bytes land on an mbarrier (`complete_tx`) per pipeline stage.
* The box is described to the hardware by a 128-byte tensor map, encoded on the host by the
  driver (`cuTensorMapEncodeTiled`, libcuda through ctypes) for each call's pointer and dims, and
  passed by value as a `const __grid_constant__` kernel parameter.  TMA needs a 16-byte aligned
  base and row pitch (`usable`); calls that break that run a variant compiled without TMA.
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from functools import lru_cache

from ...ir import nodes as N
from . import ctype
from ...layout.shared import smem_gmma
from .smem import Smem

MAX_BOX = 256          # elements per box dimension
MAX_RANK = 5
DATA_TYPE = {"f16": 6, "bf16": 9}           # CU_TENSOR_MAP_DATA_TYPE_FLOAT16 / _BFLOAT16
SWIZZLE = {32: 1, 64: 2, 128: 3}            # CU_TENSOR_MAP_SWIZZLE_32B / 64B / 128B by row bytes
L2_PROMOTION_256B = 3
MAP_BYTES = 128


@dataclass(frozen=True)
class TmaLoad:
    """The TMA boxes of one pipelined copy: `blocks` boxes of `box` (innermost first), `block_elems`
    elements apart in shared memory, `block` columns apart in the tensor."""
    tile: str
    tensor: str
    dtype: str
    elem_bytes: int
    rank: int              # the tensor's
    box: tuple[int, ...]   # innermost dimension first, as the driver takes it
    block: int             # columns per box
    blocks: int
    block_elems: int       # shared-memory elements between consecutive boxes
    swizzle: int           # CU_TENSOR_MAP_SWIZZLE_*

    @property
    def param(self) -> str:
        return f"tl_tmap_{self.tile}"

    @property
    def bytes(self) -> int:
        """Bytes one stage receives (out-of-bounds fill included: the transaction count is the box's)."""
        return self.blocks * math.prod(self.box) * self.elem_bytes


def tma_load(tk, c: N.Copy, lay: Smem) -> TmaLoad | None:
    """The TMA form of a global -> shared copy into `lay`, or None where TMA cannot write that layout."""
    p, t = tk.tensor(c.src.tensor), tk.tiles[c.dst.name]
    zero_pad = c.pad is None or (isinstance(c.pad, N.Const) and c.pad.value == 0)
    if (p.dtype.name not in DATA_TYPE or p.dtype != t.dtype or not zero_pad or len(t.shape) != 2
            or not 2 <= len(p.dims) <= MAX_RANK):
        return None
    eb = ctype.nbytes(t.dtype)
    if lay.layout != smem_gmma(t.shape[0], t.shape[1], eb) or t.shape[0] > MAX_BOX:  # TMA's swizzles: canonical
        return None
    rows, cols = t.shape
    block = lay.block or cols
    return TmaLoad(c.dst.name, p.name, p.dtype.name, eb, len(p.dims), (block, rows) + (1,) * (len(p.dims) - 2),
                   block, cols // block, rows * block, SWIZZLE[block * eb])


def usable(ptr: int, dims: tuple[int, ...], elem_bytes: int) -> bool:
    """Whether a contiguous tensor at `ptr` can be described: 16-byte aligned base and row pitch,
    every dim in 1 .. 2^32 and every stride under 2^40 bytes."""
    pitch = dims[-1] * elem_bytes
    return (ptr % 16 == 0 and pitch % 16 == 0 and all(1 <= d <= 1 << 32 for d in dims)
            and math.prod(dims[1:]) * elem_bytes < 1 << 40)


def map_args(load: TmaLoad, dims: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(globalDim, globalStrides in bytes) of a contiguous row-major tensor, innermost first."""
    eb = load.elem_bytes
    rev = tuple(reversed(dims))
    strides = tuple(math.prod(dims[i + 1:]) * eb for i in reversed(range(len(dims) - 1)))
    return rev, strides


@lru_cache(maxsize=1)
def _encoder():
    lib = ctypes.CDLL("libcuda.so.1")
    fn = lib.cuTensorMapEncodeTiled
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64),
                   ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32),
                   ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return fn


@lru_cache(maxsize=1024)
def encode(load: TmaLoad, ptr: int, dims: tuple[int, ...]) -> bytes:
    """The 128-byte CUtensorMap of `load`'s box over the tensor at `ptr` (cached per pointer and dims)."""
    gdim, gstride = map_args(load, dims)
    r = load.rank
    out = ctypes.create_string_buffer(MAP_BYTES + 64)
    addr = -(-ctypes.addressof(out) // 64) * 64  # CUtensorMap is alignas(64)
    err = _encoder()(addr, DATA_TYPE[load.dtype], r, ptr, (ctypes.c_uint64 * r)(*gdim),
                     (ctypes.c_uint64 * max(r - 1, 1))(*gstride), (ctypes.c_uint32 * r)(*load.box),
                     (ctypes.c_uint32 * r)(*([1] * r)), 0, load.swizzle, L2_PROMOTION_256B, 0)
    if err:
        raise RuntimeError(f"cuTensorMapEncodeTiled failed (CUresult {err}) for {load.tensor} {dims}, box {load.box}")
    return ctypes.string_at(addr, MAP_BYTES)


# ----------------------------------------------------------------------------- device code

def copy_helper(rank: int) -> tuple[str, str]:
    """(name, C++ definition) of a helper issuing one `rank`-d box load onto an mbarrier."""
    name = f"tma_load_{rank}d"
    coords = ", ".join(f"int c{i}" for i in range(rank))
    regs = ", ".join(f"%{i + 3}" for i in range(rank))
    ins = ", ".join(f'"r"(c{i})' for i in range(rank))
    code = (f"__device__ __forceinline__ void {name}(void* dst, const void* map, unsigned long long* bar, {coords}) {{\n"
            f"  asm volatile(\"cp.async.bulk.tensor.{rank}d.shared::cluster.global.mbarrier::complete_tx::bytes \"\n"
            f"               \"[%0], [%1, {{{regs}}}], [%2];\"\n"
            f"               :: \"r\"(smem_u32(dst)), \"l\"(map), \"r\"(smem_u32(bar)), {ins} : \"memory\");\n"
            f"}}\n")
    return name, code
