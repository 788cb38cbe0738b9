"""Run kernels of `tilelang build` folders on the GPU through `tilelang.load_build`, against torch.

    python scripts/gpu_load_build.py DIR [DIR ...]

Meant for folders built elsewhere (e.g. TVM for cuda:sm_90a on a CPU machine with nvcc) and run
where no compiler is needed: the TVM backend's CUDA compilers (nvcc, NVRTC) are replaced by a
function that fails, so a kernel passes only if it ran the binary its folder carries.  One line per kernel.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import tilelang


def rel_err(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def checks():
    x = torch.randn(37, 1000, dtype=torch.float16, device="cuda")
    w = torch.randn(1000, dtype=torch.float16, device="cuda")
    a, b = torch.randn(37, 200, dtype=torch.float16, device="cuda"), torch.randn(37, 200, dtype=torch.float16,
                                                                                   device="cuda")
    return {
        "rmsnorm": ((x, w, torch.empty_like(x), 1e-6), 2, F.rms_norm(x.float(), (1000,), w.float(), 1e-6)),
        "softmax": ((x, torch.empty_like(x)), 1, torch.softmax(x.float(), -1)),
        "add": ((a, b, torch.empty_like(a)), 2, a.float() + b.float()),
    }


def forbid_compilers() -> None:
    from tilelang.backends.tvm import build

    def compiler_called(code, arch):
        raise RuntimeError(f"TVM asked to compile CUDA for {arch}: the folder's prebuilt fatbin was not used")
    build.nvcc_fatbin = build._nvrtc = compiler_called


def main() -> int:
    forbid_compilers()
    bad = 0
    for folder in sys.argv[1:]:
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
        kernels = tilelang.load_build(folder)
        for name, (args, out, want) in checks().items():
            if name not in kernels:
                continue
            try:
                kernels[name](*args)
                torch.cuda.synchronize()
                err = rel_err(args[out], want)
                verdict = "PASS" if err < 1e-2 else "FAIL"
            except Exception as e:  # noqa: BLE001 - report every kernel
                err, verdict = float("nan"), f"FAIL {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            bad += not verdict.startswith("PASS")
            print(f"load_build {manifest['backend']} {manifest['target']} {name}: {verdict} (rel err {err:.1e})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
