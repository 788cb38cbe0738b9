"""Weight-only quantization at load (`--quant w4g128`), its error report, and quantized folders.

A spec `w<bits><group>[zp]` names the format: 2 to 8 bits; `g32`, `g64`, `g128`, ... (any group size)
or `pc` (per output channel, one group per row); `zp` for unsigned codes with a zero point per group,
otherwise symmetric signed codes.  `w4g128` is 4-bit signed codes with one scale per 128 weights.
Weights are quantized with `tilelang.quant.quantize` (round to nearest; the format `dequant`
reads) and run through `gemm_wNa16`/`gemv_wNa16` (`tilelang/models/layers.py`).

`save_quantized` writes a folder `load` reads back without quantizing again: config.json with a
`quantization_config` entry, the quantized tensors in model.safetensors under the models' own names
(`<layer>.qweight`, `.scales`, `.zeros`), and the tokenizer and generation files.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..diagnostics import TileError
from ..quant import dequantize, quantize
from ..runtime.cache import write_atomic

QUANT_METHOD = "tilelang-wNa16"
_SPEC = re.compile(r"w([2-8])(?:g(\d+)|(pc))(zp)?")


@dataclass(frozen=True)
class QuantSpec:
    bits: int
    group: int | None  # None: per channel
    zero_point: bool

    @classmethod
    def parse(cls, text: str) -> "QuantSpec":
        m = _SPEC.fullmatch(text.strip().lower())
        if m is None or (m.group(2) is not None and int(m.group(2)) < 1):
            raise TileError(f"unknown quantization '{text}'",
                            hint="w<bits><group>[zp] with 2-8 bits and g<size> or pc (per channel), e.g. w4g128, "
                                 "w8pc, w3g64zp")
        return cls(int(m.group(1)), int(m.group(2)) if m.group(2) else None, m.group(4) is not None)

    @property
    def name(self) -> str:
        return f"w{self.bits}{f'g{self.group}' if self.group else 'pc'}{'zp' if self.zero_point else ''}"

    @property
    def signed(self) -> bool:
        """Symmetric codes are signed (two's complement); codes with a zero point are unsigned."""
        return not self.zero_point

    @property
    def tw(self) -> str:
        """The kernels' TW: the codes' dtype, which the packed bytes cannot say."""
        return f"{'i' if self.signed else 'u'}{self.bits}"

    def group_for(self, k: int) -> int:
        return self.group or k


@dataclass
class QuantizedWeight:
    """An [n, k] weight as packed codes [n, ceil(k * bits / 8)] (int8 [n, k] for signed 8-bit), scales and
    zero points [n, cdiv(k, group)] in the model's dtype."""
    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None
    spec: QuantSpec
    k: int

    @property
    def n(self) -> int:
        return self.qweight.shape[0]

    @property
    def group(self) -> int:
        return self.spec.group_for(self.k)

    def dequantize(self) -> torch.Tensor:
        """The float32 [n, k] weights the codes stand for (tilelang.quant.dequantize: dequant's semantics)."""
        z = None if self.zeros is None else self.zeros.float().cpu().numpy()
        return torch.from_numpy(dequantize(self.qweight.view(torch.uint8).cpu().numpy(), self.spec.bits, self.k,
                                           self.spec.signed, self.scales.float().cpu().numpy(), self.group, z))

    def to(self, device) -> "QuantizedWeight":
        return QuantizedWeight(self.qweight.to(device), self.scales.to(device),
                               None if self.zeros is None else self.zeros.to(device), self.spec, self.k)


def quantize_weight(w: torch.Tensor, spec: QuantSpec, dtype: torch.dtype) -> tuple[QuantizedWeight, float]:
    """Quantize one [n, k] weight; also its relative error ||W - dequant(Q)|| / ||W||, measured with the
    scales rounded to `dtype` as the kernels read them."""
    k = w.shape[1]
    w32 = w.detach().to(torch.float32).cpu().numpy()
    packed, scale, zero = quantize(w32, spec.bits, spec.group_for(k), signed=spec.signed,
                                   zero_point=spec.zero_point)
    q = torch.from_numpy(packed)
    if spec.bits == 8 and spec.signed:
        q = q.view(torch.int8)  # 8-bit codes are not packed: the kernel reads an int8 array for TW=i8
    zeros = None if zero is None else torch.from_numpy(zero).to(dtype)
    out = QuantizedWeight(q, torch.from_numpy(scale).to(dtype), zeros, spec, k)
    err = float(np.linalg.norm(out.dequantize().numpy() - w32) / max(np.linalg.norm(w32), 1e-30))
    return out, err


def quantize_all(weights: dict[str, torch.Tensor], names: list[str], spec: QuantSpec, dtype: torch.dtype,
                 progress=None) -> tuple[dict[str, QuantizedWeight], dict[str, float]]:
    """Quantize the named [n, k] weights on a thread pool (numpy runs outside the GIL); returns the
    quantized weights and each one's relative error, by name."""
    workers = max(1, min(len(names), os.cpu_count() or 1, 16))
    out, errors = {}, {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(quantize_weight, weights[name], spec, dtype): name for name in names}
        for i, f in enumerate(concurrent.futures.as_completed(futures), 1):
            name = futures[f]
            out[name], errors[name] = f.result()
            if progress:
                progress(i, len(names), name)
    return {n: out[n] for n in names}, {n: errors[n] for n in names}


def error_table(errors: dict[str, float]) -> str:
    """The per-layer relative errors as a markdown table, worst first, with the mean."""
    rows = sorted(errors.items(), key=lambda kv: -kv[1])
    lines = ["| weight | relative error |", "|---|---|"] + [f"| {n} | {e:.4f} |" for n, e in rows]
    if rows:
        lines.append(f"| mean of {len(rows)} | {sum(errors.values()) / len(rows):.4f} |")
    return "\n".join(lines)


def save_quantized(folder: str | Path, hf_config: dict, dense: dict[str, torch.Tensor],
                   quantized: dict[str, QuantizedWeight], source: Path | None) -> Path:
    """Write a quantized model folder (see the module docstring); the tokenizer and generation files
    are copied from `source` when it has them.  Written into a temporary folder, then renamed."""
    from safetensors.torch import save_file
    folder = Path(folder)
    tensors = {k: v.contiguous().cpu() for k, v in dense.items()}
    spec = next(iter(quantized.values())).spec if quantized else None
    for name, q in quantized.items():
        base = name.removesuffix(".weight")
        tensors[base + ".qweight"] = q.qweight.contiguous().cpu()
        tensors[base + ".scales"] = q.scales.contiguous().cpu()
        if q.zeros is not None:
            tensors[base + ".zeros"] = q.zeros.contiguous().cpu()
    config = dict(hf_config)
    config["quantization_config"] = {"quant_method": QUANT_METHOD, "spec": spec.name if spec else None,
                                     "bits": spec.bits if spec else None, "group": spec.group if spec else None,
                                     "zero_point": spec.zero_point if spec else None,
                                     "layers": sorted(quantized)}
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "quantization": QUANT_METHOD})
    write_atomic(tmp / "config.json", json.dumps(config, indent=2))
    for extra in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if source is not None and (source / extra).exists():
            shutil.copy(source / extra, tmp / extra)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def read_quantized(ckpt, qconfig: dict, shapes: dict[str, tuple[int, int]]) -> dict[str, QuantizedWeight]:
    """The quantized weights (names and [n, k] shapes given) of a folder written by save_quantized,
    checked against its config."""
    spec_name = qconfig.get("spec")
    if not isinstance(spec_name, str):
        raise TileError(f"{ckpt.folder / 'config.json'}: 'quantization_config' lacks its 'spec'")
    spec = QuantSpec.parse(spec_name)
    out = {}
    for name, (n, k) in shapes.items():
        base = name.removesuffix(".weight")
        q, s = ckpt.tensor(base + ".qweight"), ckpt.tensor(base + ".scales")
        kg = -(-k // spec.group_for(k))
        want_q = (n, k) if spec.bits == 8 else (n, -(-k * spec.bits // 8))
        if tuple(q.shape) != want_q or q.dtype not in (torch.uint8, torch.int8):
            raise TileError(f"{ckpt.where(base + '.qweight')} is {str(q.dtype).replace('torch.', '')} "
                            f"{list(q.shape)}, expected uint8 {list(want_q)} ({spec.name} codes of [{n}, {k}])")
        if tuple(s.shape) != (n, kg):
            raise TileError(f"{ckpt.where(base + '.scales')} has shape {list(s.shape)}, expected {[n, kg]}")
        z = ckpt.tensor(base + ".zeros") if spec.zero_point else None
        if z is not None and tuple(z.shape) != (n, kg):
            raise TileError(f"{ckpt.where(base + '.zeros')} has shape {list(z.shape)}, expected {[n, kg]}")
        if spec.bits == 8 and spec.signed:
            q = q.view(torch.int8)
        out[name] = QuantizedWeight(q, s, z, spec, k)
    return out
