"""Linear layers on the kernel library: which kernel computes `y = x @ W^T` with its epilogue (bias,
GELU, residual add), for dense and weight-only quantized weights, prefill and decode rows, in the
optimized or the plain form of the model's `Schedule`.

Decode matmuls (at most DECODE_ROWS rows) run the GEMV tilings: `gemv` where there is no epilogue,
the `linear_*` kernels with BM = 16 and gemv's candidate lists where there is one, and
`gemv_wNa16` (one row) or `gemm_wNa16` with BM = 16 for quantized weights.  Quantized matmuls and
plain forms have no epilogue of their own: theirs runs as an elementwise kernel after them.
Where the outputs are too few to fill the GPU (`tilelang.splitk.plan`: long K, few output blocks, e.g.
the down projections), an optimized decode matmul splits K instead (`tilelang.splitk.linear`: partial
sums, then their sum in a fixed order with the bias/residual epilogue; not for GELU).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import splitk
from .library import Library
from .quantize import QuantizedWeight
from .schedule import PLAIN_MATMUL, Schedule

DECODE_ROWS = 16
DECODE_CANDIDATES = dict(BN=[32, 64], BK=[32, 128, 256, 512], STAGES=[3, 4])
"""The linear_* kernels' candidates at decode rows: gemv's (kernels/gemv.tile), with linear's defaults kept."""

_FUSED = {(False, False, False): "linear", (True, False, False): "linear_bias", (True, True, False): "linear_bias_gelu",
          (False, False, True): "linear_residual", (True, False, True): "linear_bias_residual"}


@dataclass
class Linear:
    """y = x @ W^T (+ bias) (then GELU) (+ residual), W dense [n, k] or quantized."""
    weight: torch.Tensor | QuantizedWeight
    bias: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.weight.n if isinstance(self.weight, QuantizedWeight) else self.weight.shape[0]

    def __call__(self, lib: Library, schedule: Schedule, x: torch.Tensor, y: torch.Tensor, *, gelu: bool = False,
                 residual: torch.Tensor | None = None) -> None:
        """Write the layer's output for rows x [m, k] into y [m, n]; `residual` may be y itself."""
        decode = x.shape[0] <= DECODE_ROWS
        optimized = schedule.gemv if decode else schedule.gemm
        has_bias, has_res = self.bias is not None, residual is not None
        if decode and optimized and not gelu and self._split_k(lib, x, y, residual):
            return
        if optimized and not isinstance(self.weight, QuantizedWeight):
            name = _FUSED[(has_bias, gelu, has_res)]
            args = [x, self.weight] + ([self.bias] if has_bias else []) + ([residual] if has_res else []) + [y]
            if decode and name == "linear":
                lib("gemv", *args)
            elif decode:
                lib(name, *args, BM=DECODE_ROWS, THREADS=128, candidates=DECODE_CANDIDATES)
            else:
                lib(name, *args)
            return
        q = self.weight
        if (optimized and isinstance(q, QuantizedWeight) and x.shape[0] == 1 and has_res and not has_bias
                and q.zeros is None):  # one row, the residual add as the epilogue
            lib("gemv_wNa16_residual", x, q.qweight, q.scales, residual, y, TW=q.spec.tw, G=q.group)
            return
        epilogue = has_bias or gelu or has_res
        out = torch.empty_like(y) if epilogue else y
        if isinstance(self.weight, QuantizedWeight):
            self._quantized(lib, optimized, x, out)
        else:
            lib("linear", x, self.weight, out, **PLAIN_MATMUL)
        if gelu:
            lib("add_bias_gelu", out, self.bias, y)
        elif has_bias and has_res:
            lib("add_bias_residual", out, self.bias, residual, y)
        elif has_bias:
            lib("add_bias", out, self.bias, y)
        elif has_res:
            lib("add", out, residual, y)

    def _split_k(self, lib: Library, x: torch.Tensor, y: torch.Tensor, residual: torch.Tensor | None) -> bool:
        """Run the layer split over K where `tilelang.splitk.plan` says it pays; False where it does not."""
        q = self.weight
        quantized = isinstance(q, QuantizedWeight)
        ns = splitk.plan(x.shape[0], self.n, x.shape[1], sms=splitk.sm_count(x.device), quantized=quantized)
        if ns == 1:
            return False
        epilogue = dict(bias=self.bias, residual=residual, splits=ns, launch=lib)
        if quantized:
            splitk.linear(x, q.qweight, y, scales=q.scales, zeros=q.zeros, TW=q.spec.tw, G=q.group, **epilogue)
        else:
            splitk.linear(x, q, y, **epilogue)
        return True

    def _quantized(self, lib: Library, optimized: bool, x: torch.Tensor, out: torch.Tensor) -> None:
        q = self.weight
        zp = "_zp" if q.zeros is not None else ""
        args = [x, q.qweight, q.scales] + ([q.zeros] if q.zeros is not None else []) + [out]
        consts = dict(TW=q.spec.tw, G=q.group)
        if x.shape[0] == 1:
            name = "gemv_wNa16" + zp
        else:
            name = "gemm_wNa16" + zp
            if x.shape[0] <= DECODE_ROWS:
                consts["BM"] = DECODE_ROWS
        lib(name, *args, **(consts if optimized else lib.untuned(name, **consts)))
