"""Hopper warpgroup MMA (`wgmma.mma_async`, sm_90a): the instruction wrappers the generated code calls.

Whether a gemm runs on wgmma, its warpgroup tiling and its operands' matrix descriptors are the
layout plan's (`tilelang/layout/wgmma.py`, `tilelang/layout/gemm.py`); this module writes the
PTX for one m64nNk16 instruction.
"""
from __future__ import annotations


def instruction(n: int, elem: str, trans_a: bool, trans_b: bool) -> tuple[str, str]:
    """(name, C++ definition) of a helper issuing one m64nNk16 wgmma that accumulates into d[0 .. n/2)."""
    ptx = {"__half": "f16", "__nv_bfloat16": "bf16"}[elem]
    name = f"wgmma_m64n{n}k16_{ptx}_{int(trans_a)}{int(trans_b)}"
    regs = n // 2
    dlist = ", ".join(f"%{i}" for i in range(regs))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(regs))
    code = (f"__device__ __forceinline__ void {name}(float* d, unsigned long long da, unsigned long long db) {{\n"
            f"  asm volatile(\"{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{regs + 2}, 0;\\n\"\n"
            f"               \"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx} {{{dlist}}}, \"\n"
            f"               \"%{regs}, %{regs + 1}, p, 1, 1, {int(trans_a)}, {int(trans_b)};\\n}}\\n\"\n"
            f"               : {outs}\n"
            f"               : \"l\"(da), \"l\"(db), \"r\"(1));\n"
            f"}}\n")
    return name, code
