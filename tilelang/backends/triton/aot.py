"""Ahead-of-time compilation to PTX and cubin for an NVIDIA architecture, without a GPU.

Triton compiles for a named target on any machine (it ships ptxas), so `tilelang
build` can check that every kernel compiles and keep the binaries.  The
signature assumes only what holds for every call: tensors start 16-byte aligned
(torch allocations do) and dims are arbitrary, so these binaries are generic; a
JIT launch also specializes on dims divisible by 16.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...diagnostics import TileError
from ...runtime.cache import write_atomic
from .launcher import launch_options, load_source
from .lower import lower

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


def compile_binary(tk, target: str | None = None):
    """Triton's CompiledKernel (asm: ttir, ttgir, llir, ptx, cubin) for the target architecture."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from triton.runtime.jit import JITFunction

    program = lower(tk)
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
    """Write `<kernel>.ptx` and `<kernel>.cubin` under `out`; returns their paths."""
    kernel = compile_binary(tk, target)
    paths = []
    for ext in ("ptx", "cubin"):
        path = Path(out) / f"{tk.kernel.name}.{ext}"
        write_atomic(path, kernel.asm[ext])
        paths.append(path)
    return paths
