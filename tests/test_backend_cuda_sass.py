"""SASS evidence for the CUDA backend, without a GPU: the generated source of the library's gemm,
gemv and quantized kernels is compiled by nvcc for sm_90a and disassembled by cuobjdump, and the
instructions the code was written for must be there:

* tensor-core gemms: HMMA (mma.sync), LDSM (ldmatrix) and LDGSTS (cp.async), no register spills;
* gemv: 16-byte loads of W (LDG.E.128) and warp shuffles (SHFL), no tensor cores;
* gemv_wNa16 (4-bit, an f32 tile): 16-byte loads of packed W and the 2^23 magic-number conversion
  (0x4b000000 or-ed into the fields, 2^23 subtracted), not an I2F per weight on the vector path;
* gemm_wNa16 (4-bit, bf16 and f16 tiles): 16-byte loads of packed W, fields turned into bf16/f16 pairs by PRMT + LOP3 with the pair magic (0x43004300 / 0x64006400) and packed fmas
  (HFMA2, HMUL2), not the f32 magic (0x4b000000) nor an I2F per weight on the vector path.

Skipped cleanly where nvcc or cuobjdump is missing.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

import tilelang
from tilelang.backends.cuda.codegen import generate_source

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"


def _tool(name: str) -> str | None:
    """A CUDA binary utility: on PATH, in the toolkit, or the copy bundled with Triton."""
    found = shutil.which(name)
    if found:
        return found
    dirs = [os.path.join(r, "bin") for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda")
            if r]
    spec = importlib.util.find_spec("triton")
    if spec is not None and spec.origin:
        dirs.append(os.path.join(os.path.dirname(spec.origin), "backends", "nvidia", "bin"))
    return next((os.path.join(d, name) for d in dirs if os.access(os.path.join(d, name), os.X_OK)), None)


NVCC, CUOBJDUMP = _tool("nvcc"), _tool("cuobjdump")
pytestmark = pytest.mark.skipif(NVCC is None or CUOBJDUMP is None, reason="needs nvcc and cuobjdump")


@lru_cache(maxsize=None)
def sass(file: str, name: str, consts: tuple) -> str:
    tk = tilelang.load(KERNEL_DIR / f"{file}.tile")[name].lower(**dict(consts))
    with tempfile.TemporaryDirectory() as work:
        cu, cubin = Path(work) / f"{name}.cu", Path(work) / f"{name}.cubin"
        cu.write_text(generate_source(tk).code)
        subprocess.run([NVCC, "-std=c++17", "-O3", "-arch=sm_90a", "-cubin", str(cu), "-o", str(cubin)],
                       check=True, capture_output=True, text=True)
        return subprocess.run([CUOBJDUMP, "-sass", str(cubin)], check=True, capture_output=True, text=True).stdout


def opcodes(text: str) -> collections.Counter:
    """Opcode (with modifiers, e.g. LDG.E.128) -> count, predicates stripped."""
    ops = re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", text)
    return collections.Counter(ops)


def has(ops: collections.Counter, prefix: str) -> bool:
    return any(op == prefix or op.startswith(prefix + ".") for op in ops)


GEMMS = [
    ("gemm", "gemm", (("T", "f16"),)),
    ("gemm", "gemm", (("T", "bf16"), ("BM", 128), ("BN", 128), ("BK", 32), ("STAGES", 4))),
    ("linear", "linear", (("T", "f16"),)),
    ("gemm_wNa16", "gemm_wNa16", (("T", "bf16"), ("TS", "bf16"), ("TY", "bf16"), ("TW", "u4"))),
]


@pytest.mark.parametrize("file,name,consts", GEMMS, ids=lambda x: x if isinstance(x, str) else None)
def test_tensor_core_gemms_use_mma_ldmatrix_and_cp_async(file, name, consts):
    ops = opcodes(sass(file, name, consts))
    for op in ("HMMA", "LDSM", "LDGSTS"):
        assert has(ops, op), f"{name} {consts}: no {op} in the SASS ({dict(ops.most_common(12))})"
    assert not has(ops, "STL") and not has(ops, "LDL"), f"{name}: registers spill to local memory"


def _wide_global_loads(ops) -> bool:
    """16-byte global reads: plain (LDG.E.128) or cp.async into a pipeline's shared stages (LDGSTS...128)."""
    return ops["LDG.E.128"] > 0 or any(o.startswith("LDGSTS") and ".128" in o for o in ops)


def test_gemv_loads_16_bytes():
    ops = opcodes(sass("gemv", "gemv", (("T", "f16"),)))
    assert _wide_global_loads(ops), dict(ops.most_common(12))


def test_gemv_w4_loads_16_bytes_and_dequantizes_with_the_magic_number():
    text = sass("gemm_wNa16", "gemv_wNa16", (("T", "bf16"), ("TS", "bf16"), ("TY", "bf16"), ("TW", "u4")))
    ops = opcodes(text)
    assert _wide_global_loads(ops), "packed 4-bit W is not read in 16-byte vectors"
    magic = len(re.findall(r"0x4b000000", text))
    assert magic >= 32, f"{magic} fields or-ed into 2^23: the vector path should convert a run of 32 that way"
    assert "-8388608" in text


@pytest.mark.parametrize("t,magic", [("bf16", "0x43004300"), ("f16", "0x64006400")])
def test_gemm_w4_loads_16_bytes_and_dequantizes_to_pairs(t, magic):
    text = sass("gemm_wNa16", "gemm_wNa16", (("T", t), ("TS", t), ("TY", t), ("TW", "u4")))
    ops = opcodes(text)
    assert _wide_global_loads(ops), "packed 4-bit W is not read in 16-byte vectors"
    pairs = len(re.findall(magic, text))  # one LOP3 per pair: (prmt(q, q >> 4) & 0x000f000f) | magic
    hfma = sum(n for op, n in ops.items() if op.startswith(("HFMA2", "HMUL2")))
    assert pairs >= 16 and hfma >= 32, f"{pairs} pair magics, {hfma} packed fmas ({dict(ops.most_common(16))})"
    assert ops["PRMT"] >= 16 and "0x4b000000" not in text  # the f32 magic is left to other widths


def test_opcode_parser_reads_predicated_instructions():
    line = "        /*0d40*/              @!P0 LDG.E.128 R4, desc[UR8][R6.64] ;   /* 0x0000000806047981 */"
    assert opcodes(line) == collections.Counter({"LDG.E.128": 1})
