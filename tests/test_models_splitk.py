"""The models' decode matmuls split over K (tilelang.splitk) where the plan says so: on CPU there is no
GPU to fill, so the plan is forced here; the logits still match transformers, and the split kernels ran."""
from __future__ import annotations

import pytest
import torch

from test_models_logits import NARROW_STEPS, ours, reference
from tilelang import splitk
from tiny_models import logits_tolerance, rel, write_gpt2, write_llama

pytestmark = pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"gpt2": write_gpt2(root / "gpt2"), "llama": write_llama(root / "llama")}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_split_k_decode_matches_transformers(folders, arch, monkeypatch):
    runs = []
    real = splitk.linear

    def counted(*args, **kwargs):
        runs.append((kwargs["bias"] is not None, kwargs["residual"] is not None))
        return real(*args, **kwargs)

    monkeypatch.setattr(splitk, "plan", lambda m, n, k, **_: 3)
    monkeypatch.setattr(splitk, "linear", counted)
    want_prefill, want_steps, tokens = reference(folders[arch], torch.float32, NARROW_STEPS)
    got_prefill, got_steps = ours(folders[arch], "f32", tokens)
    tol = logits_tolerance(torch.float32)
    assert rel(got_prefill, want_prefill) < tol
    assert max(rel(got_steps[i], want_steps[i]) for i in range(NARROW_STEPS)) < tol
    # (bias, residual): GPT-2's attention and MLP outputs (both) and LM head (neither; its qkv and MLP
    # input run fused with the layernorm); Llama's qkv and LM head (neither), attention and MLP outputs
    # (residual)
    want = {(True, True), (False, False)} if arch == "gpt2" else {(False, False), (False, True)}
    assert set(runs) == want
