"""The models on a GPU (`-m gpu`), at GPT-2-medium and Llama-1B shapes with random weights (the GPU machine
has no network): fp16 logits against transformers on the same weights, computed in f32 (the exact
result of those fp16 weights), over a prefill and 64 teacher-forced greedy decode steps; the decode
step replayed from its CUDA graph gives the tokens of the eager step; W4A16 against the dense model of
its dequantized weights; the CUDA backend against the Triton one."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

pytestmark = pytest.mark.gpu

STEPS = 64
U = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


def tolerance(config, dtype) -> float:
    """||ours - exact|| / ||exact|| on a logits row: R = 6 * layers + 2 roundings of relative u_T (see
    tests/tiny_models.py), independent, so adding in quadrature; four times their root-sum-square."""
    return 4 * math.sqrt(6 * config.layers + 2) * U[dtype]


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", ["gpt2-medium", "llama-1b"])
def test_fp16_logits_and_greedy_choices_match_transformers(name):
    _cuda()
    import tilelang.models as tm
    from tilelang.models.generation import DecodeState, decode_step
    from tilelang.models.peers import hf_model
    from tilelang.models.sampling import SamplingParams
    model = tm.from_builtin(name, dtype="f16", device="cuda")
    hf = hf_model(model).float()  # the exact computation of the same fp16 weights
    prompt = torch.randint(0, model.config.vocab, (1, 100), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        out = hf(prompt, use_cache=True)
        want, cache, tokens = [out.logits[0, -1]], out.past_key_values, []
        for _ in range(STEPS):
            tokens.append(int(want[-1].argmax()))
            out = hf(torch.tensor([[tokens[-1]]], device="cuda"), past_key_values=cache, use_cache=True)
            want.append(out.logits[0, -1])
            cache = out.past_key_values
    state = DecodeState(model, 1, 256)
    model.generator.prefill(state, [prompt[0].tolist()], SamplingParams())
    got = [state.logits[0].clone()]
    for i, t in enumerate(tokens):
        state.tokens[0, 100 + i] = t
        decode_step(model, state, SamplingParams())
        got.append(state.logits[0].clone())
    errors = [rel(g, w) for g, w in zip(got, want)]
    agree = sum(int(g.argmax()) == int(w.argmax()) for g, w in zip(got, want)) / len(got)
    tol = tolerance(model.config, torch.float16)
    assert max(errors) < tol, f"worst logits error {max(errors):.3g} (tolerance {tol:.3g})"
    # random weights give near-ties: the top two logits of 50k-128k normal draws sit ~0.2 std apart, so a
    # few percent of rows may flip within the tolerance
    assert agree >= 0.9, f"top-1 agreement {agree:.2%} over {len(got)} rows"


@pytest.mark.parametrize("name", ["gpt2-medium", "llama-1b"])
def test_captured_decode_gives_the_eager_tokens(name):
    _cuda()
    import tilelang.models as tm
    from tilelang.models.generation import Generator
    model = tm.from_builtin(name, dtype="f16", device="cuda")
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12]]
    captured = Generator(model, graphs=True).generate(prompts, 24)
    eager = Generator(model, graphs=False).generate(prompts, 24)
    assert [r.tokens for r in captured] == [r.tokens for r in eager]


def test_w4a16_is_the_dense_model_of_its_dequantized_weights():
    _cuda()
    from tilelang.models.config import builtin
    from tilelang.models.loading import build, random_weights
    from tilelang.models.quantize import QuantizedWeight, QuantSpec
    config = replace(builtin("llama-1b"), layers=2)
    weights = random_weights(config, 0, "cpu")
    q = build(config, weights, dtype=torch.float16, device=torch.device("cuda"), backend=None,
              quant=QuantSpec.parse("w4g128"))
    dequantized = {k: w.dequantize() if isinstance(w, QuantizedWeight) else w for k, w in q.weights.items()}
    dense = build(config, dequantized, dtype=torch.float16, device=torch.device("cuda"), backend=None)
    ids = list(range(1, 60))
    assert rel(q.logits(ids), dense.logits(ids)) < tolerance(config, torch.float16)
    assert q.generate(ids, 16, temperature=0, stop_tokens=()).tokens  # quantized decode runs, captured


def test_cuda_backend_agrees_with_triton(monkeypatch):
    _cuda()
    pytest.importorskip("cupy")
    monkeypatch.setenv("TILELANG_AUTOTUNE", "0")  # correctness only: the defaults compile once per kernel
    import tilelang.models as tm
    ids = list(range(3, 40))
    triton = tm.from_builtin("llama-1b", dtype="f16", device="cuda")
    cuda = tm.from_builtin("llama-1b", dtype="f16", device="cuda", backend="cuda")
    assert rel(cuda.logits(ids), triton.logits(ids)) < tolerance(triton.config, torch.float16)
    assert len(cuda.generate(ids, 8, temperature=0, stop_tokens=()).tokens) == 8
