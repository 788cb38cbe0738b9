"""The layout plan's decisions, read back from the CUDA source generated for a target
(each statement's code follows its `// file.tile:LINE` comment):
* every register tile held in registers is an array of the plan's values per thread;
* every swizzled shared tile's offsets XOR exactly the plan's swizzle bits, and a blocked wgmma
  layout cuts its columns into the plan's blocks;
* every gemm runs the plan's instruction: wgmma with the plan's instruction shape and matrix
  descriptors, mma.sync over the plan's warp grid with the fragments it implies, or an fma loop;
* every copy and dequant moves the plan's vector of elements at a time.
"""
from __future__ import annotations

import re

from tilelang.backends.cuda.codegen import generate_source
from tilelang.backends.cuda.plan import make_plan
from tilelang.ir import nodes as N
from tilelang.layout import infer_layouts
from tilelang.layout.plan import CopyPlan, DequantPlan, GemmPlan

# A 64x64 f16 gemm (one k-step) with every layout left to the plan: the base the plan and annotation
# tests edit one declaration of.
SMALL_GEMM = """\
kernel k(A: f16[M, K], B: f16[K, N], C: f32[M, N])
    grid(cdiv(M, 64), cdiv(N, 64)) threads(128)
{
    a = shared(f16[64, 32]);
    b = shared(f16[32, 64]);
    acc = register(f32[64, 64]);
    copy(A[block_id(0), 0], a);
    copy(B[0, block_id(1)], b);
    gemm(a, b, acc);
    copy(acc, C[block_id(0), block_id(1)]);
}
"""


def _sections(code: str, kernel: N.Kernel) -> dict[int, str]:
    """Generated code per source line: the text after each `// file.tile:LINE` comment, up to the next."""
    out: dict[int, str] = {}
    parts = re.split(r"^\s*// [^\n:]+\.tile:(\d+)\s.*$", code, flags=re.M)
    for line, text in zip(parts[1::2], parts[2::2]):
        out[int(line)] = out.get(int(line), "") + text
    return out


def assert_cuda_follows_plan(tk, target: str) -> None:
    """Read the plan's decisions back from the CUDA source generated for `target`."""
    plan = infer_layouts(tk, target)
    code = generate_source(tk, target, tma=target == "sm_90a").code
    sections = _sections(code, tk.kernel)
    tma = make_plan(tk, target, tma=target == "sm_90a").tma  # tiles TMA writes (in the plan's swizzle)
    wgmma_read = {x.name: p for p in plan.stmts if isinstance(p, GemmPlan) and p.kind == "wgmma"
                  for x in (p.stmt.a, p.stmt.b)}
    for t in plan.tiles:
        if t.mapping is not None:
            assert re.search(rf"\b{t.name}_\[{t.mapping.values_per_thread}\];", code), \
                f"register tile '{t.name}' is not {t.mapping.values_per_thread} values per thread"
        elif t.storage == "virtual":
            assert not re.search(rf"\b{t.name}_\[", code), f"virtual tile '{t.name}' was stored"
        if t.shared is not None and t.shared.swizzle is not None:
            sw = t.shared.swizzle
            if t.name in tma:  # written by TMA boxes, read by wgmma descriptors: the hardware swizzles
                assert tma[t.name].swizzle == {32: 1, 64: 2, 128: 3}[16 << sw.bits] and t.name in wgmma_read
            else:
                assert f">> {sw.base + sw.shift}) & {(1 << sw.bits) - 1}) << {sw.base}))" in code, \
                    f"shared tile '{t.name}' is not swizzled by {sw}"
        if t.shared is not None and t.shared.block:
            assert f"% {t.shared.block}" in code and f"* {t.shared.block_stride}" in code
    for p in plan.stmts:
        text = sections[p.stmt.loc.line]
        if isinstance(p, GemmPlan):
            if p.kind == "wgmma":
                assert f"wgmma_m64n{p.tiling.inst_n}k16_" in text and "tl::mma_16816" not in text
                assert f"{p.a_desc.high:#x}ull" in text and f"{p.b_desc.high:#x}ull" in text
            elif p.kind == "mma":
                t = p.tiling
                assert "tl::mma_16816" in text and f"(tid / 32) / {t.wn}" in text
                assert f"unsigned int af[{t.mi}][4];" in text and f"unsigned int bf[{t.ni}][2];" in text
            else:
                assert "tl::mma_16816" not in text and "wgmma" not in text and "sum[v] +=" in text
        elif isinstance(p, (CopyPlan, DequantPlan)) and p.vector > 1:
            moved = re.findall(r"tl::Vec<[^,]+, (\d+)>|uint4|cp_async_16|Vec<unsigned int, (\d+)>", text)
            assert moved or "tmap" in text or "ring" in text, f"{p.stmt}: no vector access of {p.vector}"
