"""Ahead-of-time compilation to PTX and cubin for an NVIDIA architecture, without a GPU, and
running those cubins without Triton.

Triton compiles for a named target on any machine (it ships ptxas), so `tilelang
build` can check that every kernel compiles and keep the binaries.  The
signature assumes only what holds for every call: tensors start 16-byte aligned
(torch allocations do) and dims are arbitrary, so these binaries are generic; a
JIT launch also specializes on dims divisible by 16.  `<kernel>.json` beside the
cubin records what a launch needs (Triton's kernel ABI: the non-constexpr arguments,
then its scratch pointers), so `load_aot` launches the cubin through CuPy alone.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ...diagnostics import TileError
from ...runtime.args import BoundCall
from ...runtime.cache import write_atomic
from ...runtime.cubin import device_pointer, launch, load_function
from .launcher import Launcher, launch_options, load_source
from .lower import Program, lower

_PTR = {"f32": "*fp32", "f16": "*fp16", "bf16": "*bf16", "f8e4m3": "*fp8e4nv", "f8e5m2": "*fp8e5", "i8": "*i8",
        "u8": "*u8", "i32": "*i32", "u32": "*u32", "i64": "*i64", "bool": "*i1"}
_SCALAR = {"f32": "fp32", "f16": "fp32", "bf16": "fp32", "i32": "i32", "u32": "i32", "i64": "i64", "i8": "i32",
           "u8": "i32"}


def arch_of(target: str | None) -> int:
    """`sm_90`, `sm90`, `90` or None (90) -> 90."""
    m = re.fullmatch(r"(?:sm_?)?(\d+)a?", target or "sm_90")
    if not m:
        raise TileError(f"unknown Triton target {target!r}", hint="use an NVIDIA architecture such as sm_80 or sm_90")
    return int(m.group(1))


def compile_binary(tk, target: str | None = None, program: Program | None = None):
    """Triton's CompiledKernel (asm: ttir, ttgir, llir, ptx, cubin) for the target architecture."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from triton.runtime.jit import JITFunction

    program = program or lower(tk)
    fn = JITFunction(getattr(load_source(program.source), program.fn_name).fn)
    signature, attrs = {}, {}
    for i, (kind, name) in enumerate(program.args):
        gen = fn.arg_names[i]
        if kind == "tensor":
            dt = tk.tensor(name).dtype
            signature[gen] = "*u8" if dt.is_packed else _PTR[dt.name]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif kind == "dim":
            signature[gen] = "i32"
        else:
            signature[gen] = _SCALAR[tk.kernel.param(name).dtype.name]
    src = ASTSource(fn, signature, constexprs={}, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch_of(target), 32), options=launch_options(program))


def build_aot(tk, out: Path, target: str | None = None) -> list[Path]:
    """Write `<kernel>.ptx`, `<kernel>.cubin` and `<kernel>.json` (its launch) under `out`; their paths."""
    import triton
    program = lower(tk)
    kernel = compile_binary(tk, target, program)
    md = kernel.metadata
    entry = re.search(r"\.entry\s+\w+\(([^)]*)\)", kernel.asm["ptx"]).group(1)
    meta = {"name": md.name, "num_warps": md.num_warps, "shared": md.shared, "args": [list(a) for a in program.args],
            "types": {name: _SCALAR[tk.kernel.param(name).dtype.name] for kind, name in program.args
                      if kind == "scalar"},
            "scratch_params": entry.count(".param") - len(program.args),  # Triton's global and profile scratch
            "global_scratch_size": md.global_scratch_size, "triton": triton.__version__}
    paths = []
    for ext, data in (("ptx", kernel.asm["ptx"]), ("cubin", kernel.asm["cubin"]), ("json", json.dumps(meta, indent=1))):
        path = Path(out) / f"{tk.kernel.name}.{ext}"
        write_atomic(path, data)
        paths.append(path)
    return paths


_ARG = {"fp32": np.float32, "i32": np.int32, "i64": np.int64}


class CubinLauncher(Launcher):
    """Runs a cubin written by `build_aot` through CuPy: no Triton needed (the grid comes from the IR)."""

    def __init__(self, tk, cubin: Path):
        self.tk = tk
        self.meta = json.loads(Path(cubin).with_suffix(".json").read_text())
        self.kernel = load_function(Path(cubin), self.meta["name"], self.meta["shared"])

    def __call__(self, call: BoundCall) -> None:
        grid = self.grid(call)
        if 0 in grid:
            return
        grid = tuple(grid) + (1,) * (3 - len(grid))
        m, args = self.meta, []
        for kind, name in m["args"]:
            if kind == "tensor":
                ptr = device_pointer(call.arrays[name], name)
                if ptr % 16:
                    raise TileError(f"argument '{name}' of '{self.tk.kernel.name}' does not start on a 16-byte "
                                    "boundary, which this prebuilt Triton binary assumes", self.tk.kernel.loc,
                                    hint="pass a fresh (or .clone()d) tensor, or compile it with tilelang.load")
                args.append(np.uint64(ptr))
            elif kind == "dim":
                args.append(np.int32(call.dims[name]))
            else:
                args.append(_ARG[m["types"][name]](call.scalars[name]))
        scratch = []
        if m["global_scratch_size"]:  # kept alive until the launch is queued; the stream orders its reuse
            import cupy
            scratch.append(cupy.empty(math.prod(grid) * m["global_scratch_size"], cupy.uint8))
        args += [np.uint64(scratch[0].data.ptr if scratch and i == 0 else 0) for i in range(m["scratch_params"])]
        launch(self.kernel, call, grid, 32 * m["num_warps"], tuple(args), m["shared"])


def load_aot(tk, cubin: str | Path) -> CubinLauncher:
    return CubinLauncher(tk, Path(cubin))


def aot_target(target: str | None) -> str:
    """The architecture `build_aot` builds for: sm_90 unless named."""
    return f"sm_{arch_of(target)}"


def aot_artifact(paths: list[Path]) -> tuple[Path | None, bool]:
    """The cubin `load_aot` takes among `build_aot`'s files: Triton always makes one."""
    return next(p for p in paths if p.suffix == ".cubin"), True
