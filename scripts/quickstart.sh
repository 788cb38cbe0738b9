#!/usr/bin/env bash
# The README's main job: install, check the kernel library, build it for Triton (ahead of time for
# sm_90 when Triton can compile here; generated sources otherwise), and generate a few tokens with a
# built-in GPT-2 shape (random weights) on the kernels, through the reference interpreter on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
tilelang check kernels/
tilelang build kernels/ --backend triton -o build/
tilelang generate --model tiny-gpt2 --prompt "Four score and seven years ago" --max-new-tokens 8
