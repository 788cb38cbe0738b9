"""Which form of each kernel class a model runs: the optimized one, or the library's plainest correct
one.  `tilelang bench-model --ablate` switches the classes on one at a time, as the GPT-2 seed report's
Table 2 did with TVM's schedule rules (baseline, Matmul, GEMV, Reduction, full).

Plain forms: every constant pinned (nothing is autotuned), matmul tiles of 8 (under Triton's 16, a
product-sum instead of tensor-core dots) with one pipeline stage, and nothing fused: biases, GELU,
residual adds and norms each run as their own kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

PLAIN_MATMUL = dict(BM=8, BN=8, BK=8, STAGES=1, THREADS=128)
"""The plain matmul's pinned constants (for `linear`)."""


@dataclass(frozen=True)
class Schedule:
    gemm: bool = True  # prefill matmuls (M > 16): autotuned tensor-core tiles, pipelined, epilogues fused
    gemv: bool = True  # decode matmuls (M <= 16): the decode tilings (BM = 16, narrow BN, long BK), autotuned, fused
    reduction: bool = True  # norms: fused with the residual add before them and (Llama decode) the MLP after
    attention: bool = True  # split-KV decode over the GPU and 64-wide tiles; plain: one block per kv head, 16-wide

    def label(self) -> str:
        on = [k for k in ("gemm", "gemv", "reduction", "attention") if getattr(self, k)]
        return "full" if len(on) == 4 else "baseline" if not on else "+".join(on)


FULL = Schedule()
BASELINE = Schedule(False, False, False, False)
ABLATIONS = {"baseline": BASELINE, "gemm": Schedule(gemm=True, gemv=False, reduction=False, attention=False),
             "gemv": Schedule(gemm=False, gemv=True, reduction=False, attention=False),
             "reduction": Schedule(gemm=False, gemv=False, reduction=True, attention=False),
             "attention": Schedule(gemm=False, gemv=False, reduction=False, attention=True), "full": FULL}
