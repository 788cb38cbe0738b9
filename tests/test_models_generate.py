"""Generation on tiny checkpoints: greedy tokens identical to transformers' own generate, a batch of
prompts of different lengths identical to one-by-one, stop tokens, streaming, seeded sampling."""
from __future__ import annotations

import pytest
import torch

import tilelang.models as tm
from tiny_models import hf_model, write_gpt2, write_llama

PROMPTS = [[5, 77, 140, 23, 9, 200, 61], [12, 250, 3], [40, 41, 42, 43, 44, 45, 46]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    return {"gpt2": write_gpt2(root / "gpt2", seed=2), "llama": write_llama(root / "llama", seed=3)}


@pytest.fixture(scope="module")
def models(folders):
    return {arch: tm.load(folder, dtype="f32") for arch, folder in folders.items()}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_greedy_tokens_are_transformers_generate(folders, models, arch):
    hf = hf_model(folders[arch])
    with torch.no_grad():
        want = hf.generate(torch.tensor([PROMPTS[0]]), max_new_tokens=16, do_sample=False)[0, len(PROMPTS[0]):]
    got = models[arch].generate(PROMPTS[0], 16, temperature=0)
    assert got.tokens == want.tolist()
    assert got.finish == ("stop" if len(got.tokens) < 16 else "length")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_batch_of_different_lengths_is_one_by_one(models, arch):
    model = models[arch]
    alone = [model.generate(p, 8, temperature=0, stop_tokens=()).tokens for p in PROMPTS]
    together = [r.tokens for r in model.generate(PROMPTS, 8, temperature=0, stop_tokens=())]
    assert together == alone


def test_stop_tokens_end_generation_and_are_kept(models):
    model = models["gpt2"]
    free = model.generate(PROMPTS[1], 10, temperature=0, stop_tokens=()).tokens
    stopped = model.generate(PROMPTS[1], 10, temperature=0, stop_tokens=(free[3],))
    first = free.index(free[3])
    assert stopped.tokens == free[:first + 1] and stopped.finish == "stop"


def test_streaming_reports_every_token_in_order(models):
    seen = []
    out = models["llama"].generate(PROMPTS[2], 6, temperature=0, stop_tokens=(), on_token=lambda row, t: seen.append(
        (row, t)))
    assert seen == [(0, t) for t in out.tokens]


def test_sampling_is_reproducible_with_a_seed_and_greedy_at_top_k_1(models):
    model = models["llama"]
    a = model.generate(PROMPTS[0], 8, temperature=1.0, top_p=0.9, seed=7, stop_tokens=()).tokens
    b = model.generate(PROMPTS[0], 8, temperature=1.0, top_p=0.9, seed=7, stop_tokens=()).tokens
    assert a == b
    greedy = model.generate(PROMPTS[0], 8, temperature=0, stop_tokens=()).tokens
    assert model.generate(PROMPTS[0], 8, temperature=1.5, top_k=1, seed=3, stop_tokens=()).tokens == greedy


def test_text_in_text_out(models):
    out = models["gpt2"].generate("Four score and seven", 5, temperature=0)
    assert out.prompt_tokens == models["gpt2"].tokenizer.encode("Four score and seven")
    assert out.text == models["gpt2"].tokenizer.decode(out.tokens)
