"""What lets a decode step be captured once in a CUDA graph and replayed at every position: it passes
no kernel a scalar that changes from step to step, and the cache rows it writes (computed on the
device by decode_positions) are the rows prefill writes (computed on the host by cache_slots)."""
from __future__ import annotations

import numpy as np
import pytest

import tilelang.models as tm
from tilelang.models.generation import DecodeState, decode_step
from tilelang.models.model import cache_slots
from tilelang.models.sampling import SamplingParams
from tilelang.models.library import kernels
from tiny_models import write_gpt2, write_llama


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph")
    return [tm.load(write_gpt2(root / "gpt2")), tm.load(write_llama(root / "llama"))]


@pytest.mark.parametrize("which", [0, 1], ids=["gpt2", "llama"])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_steps_at_different_positions_make_identical_calls(models, which, splits):
    model = models[which]
    model.attention_splits = splits
    state = DecodeState(model, 2, 32)
    model.generator.prefill(state, [[5, 6, 7], [8, 9, 10, 11, 12]], SamplingParams())
    traces = []
    for _ in range(3):
        model.lib.trace = []
        decode_step(model, state, SamplingParams(1.0, top_k=5))
        traces.append(model.lib.trace)
    model.lib.trace = None
    assert traces[0] == traces[1] == traces[2]
    assert state.pos.view(-1).tolist() == [6, 8]
    assert any(call.scalars for call in traces[0])  # eps and scales are scalars, the same at every step


def test_cache_rows_of_prefill_are_those_decode_positions_computes():
    config = tm.BUILTIN["tiny-llama"]
    batch, maxs, rows, seq = 4, 40, [1, 3], 6
    host = cache_slots(config, batch, maxs, rows, seq).view(len(rows), seq, config.kv_heads, 2)
    for s in range(seq):
        pos = np.full((batch, 1), s, np.int32)
        slots = np.zeros((batch, 2 * config.kv_heads), np.int64)
        kernels()["decode_positions"](pos, np.zeros_like(pos), np.zeros((2, batch), np.int64), slots, maxs)
        device = slots.reshape(batch, config.kv_heads, 2)[rows]
        assert np.array_equal(host[:, s].numpy(), device)
