"""The device sampler (tilelang/models/sampling.py): greedy, temperature, top-k, top-p, as transformers
defines them."""
from __future__ import annotations

import pytest
import torch

from tilelang import TileError
from tilelang.models.sampling import SamplingParams, sample

LOGITS = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))


def draws(params, n=4000):
    torch.manual_seed(0)
    return torch.bincount(sample(LOGITS.expand(n, -1).contiguous(), params), minlength=5).float() / n


def test_greedy_is_the_argmax():
    assert sample(torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 4.0]]), SamplingParams()).tolist() == [1, 0]


def test_temperature_one_draws_the_softmax():
    assert torch.allclose(draws(SamplingParams(1.0)), LOGITS.exp()[0], atol=0.03)


def test_top_k_keeps_the_k_most_likely():
    freq = draws(SamplingParams(1.0, top_k=2))
    assert freq[2:].sum() == 0 and torch.allclose(freq[:2], torch.tensor([5 / 7, 2 / 7]), atol=0.03)


def test_top_p_keeps_the_smallest_set_reaching_p():
    """0.5 + 0.2 = 0.7 < 0.8, so the third token (reaching 0.85) is kept too, the rest cut."""
    freq = draws(SamplingParams(1.0, top_p=0.8))
    assert freq[3:].sum() == 0 and freq[2] > 0.1


def test_low_temperature_concentrates():
    assert draws(SamplingParams(0.05))[0] > 0.99


@pytest.mark.parametrize("kwargs", [dict(temperature=-1.0), dict(top_k=-2), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_parameters_are_errors(kwargs):
    with pytest.raises(TileError):
        SamplingParams(**kwargs)


def test_greedy_decoding_runs_the_argmax_kernel():
    """next_tokens: greedy through the library's argmax kernel (torch's ids, ties to the first), the
    rest through torch's sampler; each counted as what it is."""
    from tilelang.models.library import Library
    from tilelang.models.sampling import next_tokens
    lib = Library()
    logits = torch.tensor([[0.1, 3.0, -1.0, 3.0], [5.0, 0.0, 4.0, 5.0], [0.0, float("nan"), 9.0, 1.0]])
    assert next_tokens(lib, logits, SamplingParams()).tolist() == logits.argmax(dim=-1).tolist() == [1, 0, 1]
    assert next_tokens(lib, logits[:, :3].contiguous(), SamplingParams(1.0, top_k=1)).dtype == torch.int64
    torch.manual_seed(0)
    next_tokens(lib, logits[:2], SamplingParams(0.7))
    assert lib.launches == {"argmax": 2, "torch.sample": 1}
