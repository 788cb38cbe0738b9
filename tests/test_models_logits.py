"""GPT-2 and Llama on the kernel library against transformers, on tiny random checkpoints that
transformers wrote: every row of a prefill's logits and 16 decode steps (fed the same tokens), in f32
against transformers in f32, and in f16 and bf16 against the exact (float64) computation, within
tiny_models.logits_tolerance."""
from __future__ import annotations

import pytest
import torch

import tilelang.models as tm
from tilelang.models.generation import DecodeState, decode_step
from tilelang.models.sampling import SamplingParams
from tiny_models import hf_model, logits_tolerance, rel, write_gpt2, write_llama

pytestmark = pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning")  # transformers 5.2x renames it
PROMPT = [5, 77, 140, 23, 9, 200, 61, 3, 250, 18, 42]
STEPS = 16
NARROW_STEPS = 4  # the decode path is the f32 one's; these check the narrow dtypes' roundings


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"gpt2": write_gpt2(root / "gpt2"), "llama": write_llama(root / "llama"),
            "llama-tied": write_llama(root / "llama-tied", seed=1, tie_word_embeddings=True, rope_scaling=None,
                                      num_key_value_heads=1)}


def reference(folder, dtype, steps=STEPS):
    """transformers' logits: the prompt's rows, then one row per greedy step (with its KV cache)."""
    hf = hf_model(folder, dtype)
    with torch.no_grad():
        out = hf(torch.tensor([PROMPT]), use_cache=True)
        rows, cache, tokens = [out.logits[0]], out.past_key_values, []
        for _ in range(steps):
            tokens.append(int(rows[-1][-1].argmax()))
            out = hf(torch.tensor([[tokens[-1]]]), past_key_values=cache, use_cache=True)
            rows.append(out.logits[0])
            cache = out.past_key_values
    return rows[0].float(), torch.cat(rows[1:]).float(), tokens


def ours(folder, dtype, tokens):
    """Our prefill logits (every row), then the logits of decode steps fed `tokens`."""
    model = tm.load(folder, dtype=dtype)
    prefill = model.logits(PROMPT)
    state = DecodeState(model, 1, 32)
    model.generator.prefill(state, [PROMPT], SamplingParams())
    steps = []
    for i, t in enumerate(tokens):
        state.tokens[0, len(PROMPT) + i] = t  # feed transformers' token, whatever ours sampled
        decode_step(model, state, SamplingParams())
        steps.append(state.logits[0].clone())
    return prefill, torch.stack(steps)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "llama-tied"])
def test_f32_logits_match_transformers(folders, arch):
    want_prefill, want_steps, tokens = reference(folders[arch], torch.float32)
    got_prefill, got_steps = ours(folders[arch], "f32", tokens)
    tol = logits_tolerance(torch.float32)
    assert rel(got_prefill, want_prefill) < tol
    for i in range(STEPS):
        assert rel(got_steps[i], want_steps[i]) < tol, f"decode step {i}"


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_narrow_logits_match_the_exact_computation(folders, arch, dtype):
    want_prefill, want_steps, tokens = reference(folders[arch], torch.float64, NARROW_STEPS)
    got_prefill, got_steps = ours(folders[arch], {torch.float16: "f16", torch.bfloat16: "bf16"}[dtype], tokens)
    tol = logits_tolerance(dtype)
    assert rel(got_prefill, want_prefill) < tol
    assert max(rel(got_steps[i], want_steps[i]) for i in range(NARROW_STEPS)) < tol


def test_the_tolerance_catches_a_wrong_model(folders):
    """A model with one layer's attention scale halved is caught by the f32 bound, and by the bf16 one."""
    want_prefill, _, _ = reference(folders["llama"], torch.float32)
    model = tm.load(folders["llama"], dtype="f32")
    model.config = model.config.__class__(**{**model.config.__dict__, "scale_attn_by_layer": True})
    assert rel(model.logits(PROMPT), want_prefill) > logits_tolerance(torch.bfloat16)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_the_transformers_peer_computes_our_weights(name):
    """bench-model's peers (and the GPU tests' reference) are transformers models built from a Model's own
    weights and config (peers.hf_model, weights.to_hf): the same function, Llama 3's rope scaling included."""
    from dataclasses import replace

    from tilelang.models.config import BUILTIN, llama3_scaling
    from tilelang.models.loading import build, random_weights
    from tilelang.models.peers import hf_model
    config = BUILTIN[name] if name == "tiny-gpt2" else replace(BUILTIN[name], rope_scaling=llama3_scaling())
    model = build(config, {k: v * 5 for k, v in random_weights(config, 1).items()}, dtype=torch.float32,
                  device=torch.device("cpu"), backend=None)
    with torch.no_grad():
        want = hf_model(model)(torch.tensor([PROMPT])).logits[0]
    assert rel(model.logits(PROMPT), want) < logits_tolerance(torch.float32)
