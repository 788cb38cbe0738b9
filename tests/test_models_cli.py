"""`tilelang generate`, `tilelang quantize` and `tilelang bench-model` as a user runs them (in process,
through tilelang.cli.main, but for one run of the real command)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tilelang.cli import main
from tiny_models import hf_model, write_gpt2, write_llama

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Four score and seven years ago our fathers"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {"gpt2": write_gpt2(root / "gpt2", seed=6), "llama": write_llama(root / "llama", seed=7)}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_greedy_is_transformers_generate(folders, capsys, arch):
    code, out, err = run(capsys, "generate", folders[arch], "--prompt", PROMPT, "--temperature", "0",
                         "--max-new-tokens", "12", "--json")
    assert code == 0, err
    got = json.loads(out)
    hf = hf_model(folders[arch])
    with torch.no_grad():
        want = hf.generate(torch.tensor([got["prompt_tokens"]]), max_new_tokens=12, do_sample=False)
    assert got["tokens"] == want[0, len(got["prompt_tokens"]):].tolist()
    assert set(got) >= {"prompt_tokens", "tokens", "text", "prefill_tok_s", "decode_tok_s"}
    assert got["launches_per_token"] > 0 and got["random_weights"] is False


def test_generate_streams_text(folders, capsys):
    code, out, err = run(capsys, "generate", folders["gpt2"], "--prompt", PROMPT, "--max-new-tokens", "5",
                         "--temperature", "0")
    assert code == 0 and out.startswith(PROMPT) and "tok/s" in err


def test_generate_builtin_says_its_weights_are_random():
    r = subprocess.run([sys.executable, "-m", "tilelang.cli", "generate", "--model", "tiny-gpt2", "--prompt", "Hi",
                        "--max-new-tokens", "3"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "random weights" in r.stderr and r.stdout.startswith("Hi")


@pytest.mark.parametrize("args,message", [([], "no model"), (["/no/such/folder"], "model folder not found"),
                                          (["--model", "tiny-gpt2", "--quant", "w9"], "unknown quantization"),
                                          (["--model", "tiny-gpt2", "--device", "tpu"], "device 'tpu'")])
def test_generate_errors_are_one_message(capsys, args, message):
    code, out, err = run(capsys, "generate", *args, "--prompt", "x")
    assert code == 1 and message in err and "Traceback" not in err


def test_quantize_reports_saves_and_the_folder_generates(folders, capsys, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(PROMPT + " brought forth on this continent a new nation")
    code, out, err = run(capsys, "quantize", folders["llama"], "--quant", "w4g32", "--ppl", text, "-o",
                         tmp_path / "q", "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert len(report["errors"]) == 2 * 5 + 1 and report["perplexity"]["quantized"] > 0
    assert "| layers.0.qkv.weight |" in out
    code, out, err = run(capsys, "generate", tmp_path / "q", "--prompt", PROMPT, "--max-new-tokens", "3", "--json")
    assert code == 0 and len(json.loads(out)["tokens"]) >= 1


def test_bench_model_on_the_cpu(capsys, tmp_path):
    code, out, err = run(capsys, "bench-model", "--model", "tiny-gpt2", "--new-tokens", "3", "--prompt-tokens", "6",
                         "--peers", "eager,graph", "--repeats", "1", "--json", tmp_path / "b.json")
    assert code == 0, err
    rows = json.loads((tmp_path / "b.json").read_text())["runs"][0]["rows"]
    assert [r["system"] for r in rows] == ["tilelang float32", "transformers eager",
                                           "transformers + static cache + CUDA graph"]
    assert rows[0]["decode_tok_s"]["3"] > 0 and rows[0]["launches_per_token"] > 0
    assert rows[1]["decode_tok_s"]["3"] > 0 and rows[2]["note"] == "needs a GPU"
    assert "| tilelang float32 |" in out
