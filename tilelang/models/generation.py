"""Generation: prefill the prompts, then decode over a preallocated KV cache until max_new_tokens or a
stop token, sampling on the device.

A decode step reads and writes only the device buffers of a `DecodeState` (the token buffer, the
positions, the cache, the logits): `decode_positions` advances the positions, the fed tokens are
gathered from the token buffer, the model runs, the sampled tokens are scattered back.  No step
passes a scalar that changes from step to step, so on a GPU the step is captured once in a CUDA
graph per (batch bucket, cache length, sampling parameters), after a warm-up step has compiled and
autotuned every kernel, and each later step is one graph replay.  Batches are padded to a power of
two there (padding rows decode from an empty prompt and are dropped).  Prompts of different lengths
are prefilled in groups of equal length; their decode steps then run together, each sequence
attending to its own length (attention_decode_lens).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..diagnostics import TileError
from .model import Model, Pass, cache_slots, next_pow2
from .sampling import SamplingParams, next_tokens


CACHE_QUANTUM = 128
"""Cache lengths are rounded up to a multiple of this: a captured step serves every generation that fits,
and captured and eager steps (same length, same split-KV partition) compute the same tokens."""


@dataclass
class Generation:
    """One prompt's result."""
    prompt_tokens: list[int]
    tokens: list[int]  # the generated ids, a stop token included
    finish: str  # "stop" (a stop token) or "length" (max_new_tokens)
    text: str | None = None


@dataclass
class Timing:
    """Wall times of the last generate call (GPU work synchronized), and the launches of one decode step."""
    prefill_s: float = 0.0
    decode_s: float = 0.0
    prompt_tokens: int = 0
    decode_steps: int = 0
    batch: int = 0
    launches_per_step: Counter = field(default_factory=Counter)

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        """Generated tokens per second over the decode steps, all sequences of the batch counted."""
        return self.decode_steps * self.batch / self.decode_s if self.decode_s else 0.0


class DecodeState:
    """The device buffers a decode step reads and writes: what a captured graph replays over."""

    def __init__(self, model: Model, batch: int, maxs: int):
        c, dev = model.config, model.device
        self.batch, self.maxs = batch, maxs
        self.tokens = torch.zeros(batch, maxs, dtype=torch.int64, device=dev)
        self.pos = torch.zeros(batch, 1, dtype=torch.int32, device=dev)
        self.cur = torch.zeros(batch, 1, dtype=torch.int32, device=dev)
        self.tok = torch.zeros(2, batch, dtype=torch.int64, device=dev)
        self.slots = torch.zeros(batch, 2 * c.kv_heads, dtype=torch.int64, device=dev)
        self.cache = model.new_cache(batch, maxs)
        self.logits = torch.empty(batch, c.vocab, dtype=torch.float32, device=dev)


def decode_step(model: Model, state: DecodeState, params: SamplingParams) -> None:
    """One token for every sequence of `state` (see the module docstring)."""
    lib, c = model.lib, model.config
    lib("decode_positions", state.pos, state.cur, state.tok, state.slots, state.maxs)
    ids = model.gather(state.tokens.view(-1), state.tok[0])
    p = Pass(ids, state.cur.view(-1), state.slots.view(state.batch, c.kv_heads, 2), state.batch, 1, lens=state.pos)
    model.forward(p, state.cache, state.logits)
    nxt = next_tokens(lib, state.logits, params)
    lib("scatter_rows", nxt.view(-1, 1), state.tokens.view(-1, 1), state.tok[1])


class CapturedStep:
    """A decode step captured in a CUDA graph, after one eager warm-up step (compiles and autotunes every
    kernel outside the capture); the warm-up's position advance is undone."""

    def __init__(self, model: Model, state: DecodeState, params: SamplingParams):
        saved = state.pos.clone()
        side = torch.cuda.Stream(model.device)
        side.wait_stream(torch.cuda.current_stream(model.device))
        with torch.cuda.stream(side):
            decode_step(model, state, params)
        torch.cuda.current_stream(model.device).wait_stream(side)
        state.pos.copy_(saved)
        before = Counter(model.lib.launches)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            decode_step(model, state, params)
        self.launches = model.lib.launches - before
        state.pos.copy_(saved)

    def __call__(self) -> None:
        self.graph.replay()


class Generator:
    """Generation for one model: owns its decode states and captured steps."""

    def __init__(self, model: Model, graphs: bool | None = None):
        self.model = model
        self.graphs = model.device.type == "cuda" and model.lib.backend != "reference" if graphs is None else graphs
        self._states: dict[tuple, tuple[DecodeState, CapturedStep | None]] = {}
        self.timing = Timing()

    def _state(self, batch: int, maxs: int, params: SamplingParams) -> tuple[DecodeState, CapturedStep | None]:
        key = (batch, maxs, params) if self.graphs else (batch, maxs)
        if key not in self._states:
            self._states[key] = (DecodeState(self.model, batch, maxs), None)
        return self._states[key]

    def generate(self, prompts: list[list[int]], max_new_tokens: int, params: SamplingParams = SamplingParams(),
                 stop_tokens: tuple[int, ...] = (), on_token: Callable[[int, int], None] | None = None,
                 seed: int | None = None) -> list[Generation]:
        """Generate up to `max_new_tokens` tokens after each prompt (token ids).  `on_token(row, id)` is
        called for every token as it is produced (streaming); it stops at one of `stop_tokens`."""
        model = self.model
        self._check(prompts, max_new_tokens)
        if seed is not None:
            torch.manual_seed(seed)
        batch = len(prompts)
        rows = next_pow2(batch) if self.graphs else batch
        longest = max(map(len, prompts)) + max_new_tokens
        state, step = self._state(rows, -(-longest // CACHE_QUANTUM) * CACHE_QUANTUM, params)
        model.rope_positions(state.maxs)
        self._sync()
        t0 = time.perf_counter()
        first = self.prefill(state, prompts, params)
        self._sync()
        t1 = time.perf_counter()
        done = [False] * batch
        for b in range(batch):
            done[b] = first[b] in stop_tokens
            if on_token:
                on_token(b, first[b])
        if self.graphs and step is None and max_new_tokens > 1 and not all(done):
            step = CapturedStep(model, state, params)  # warm-up and capture: not part of the timed steps
            self._states[(rows, state.maxs, params)] = (state, step)
        self._sync()
        t2 = time.perf_counter()
        steps = 0
        before = Counter(model.lib.launches)
        while steps < max_new_tokens - 1 and not all(done):
            step() if step is not None else decode_step(model, state, params)
            steps += 1
            if on_token or (stop_tokens and steps % 32 == 0):  # a host sync: only to stream or to stop early
                new = state.tokens[torch.arange(batch, device=model.device),
                                   torch.tensor([len(p) + steps for p in prompts], device=model.device)].tolist()
                for b in range(batch):
                    if not done[b]:
                        done[b] = new[b] in stop_tokens
                        if on_token:
                            on_token(b, new[b])
        self._sync()
        t3 = time.perf_counter()
        launches = step.launches if step is not None else Counter(
            {k: v // max(steps, 1) for k, v in (model.lib.launches - before).items()})
        self.timing = Timing(t1 - t0, t3 - t2, sum(map(len, prompts)), steps, batch, launches)
        return self._results(state, prompts, steps + 1, stop_tokens)

    def _check(self, prompts: list[list[int]], max_new_tokens: int) -> None:
        c = self.model.config
        if not prompts or any(not p for p in prompts):
            raise TileError("every prompt needs at least one token")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise TileError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        for i, p in enumerate(prompts):
            bad = [t for t in p if not 0 <= t < c.vocab]
            if bad:
                raise TileError(f"prompt {i} has token id {bad[0]} outside the vocabulary of {c.vocab}")
        longest, limit = max(map(len, prompts)) + max_new_tokens, self.model.position_limit
        if limit is not None and longest > limit:
            raise TileError(f"{longest} positions (prompt + max_new_tokens) exceed the model's {limit}",
                            hint="its learned position table ends there: shorten the prompt or generate fewer tokens")

    def prefill(self, state: DecodeState, prompts: list[list[int]], params: SamplingParams) -> list[int]:
        """Prefill every prompt (grouped by length) into its cache row, its last token's logits into its row
        of state.logits; sample each one's first token, and leave the token buffer and positions ready for
        the first decode step."""
        model, dev = self.model, self.model.device
        tokens = torch.zeros(state.batch, state.maxs, dtype=torch.int64)
        pos = torch.zeros(state.batch, 1, dtype=torch.int32)
        first = [0] * len(prompts)
        by_len: dict[int, list[int]] = {}
        for b, p in enumerate(prompts):
            by_len.setdefault(len(p), []).append(b)
            tokens[b, :len(p)] = torch.tensor(p)
            pos[b, 0] = len(p)
        for s, rows in by_len.items():
            ids = tokens[rows, :s].reshape(-1).to(dev)
            positions = torch.arange(s, dtype=torch.int32).repeat(len(rows)).to(dev)
            slots = cache_slots(model.config, state.batch, state.maxs, rows, s).to(dev)
            last = torch.arange(len(rows), device=dev) * s + (s - 1)
            logits = torch.empty(len(rows), model.config.vocab, dtype=torch.float32, device=dev)
            model.forward(Pass(ids, positions, slots, len(rows), s), state.cache, logits, last)
            state.logits[rows] = logits
            for b, t in zip(rows, next_tokens(model.lib, logits, params).tolist()):
                first[b] = t
                tokens[b, s] = t
        state.tokens.copy_(tokens.to(dev))
        state.pos.copy_(pos.to(dev))
        return first

    def _results(self, state: DecodeState, prompts: list[list[int]], produced: int,
                 stop_tokens: tuple[int, ...]) -> list[Generation]:
        tokens = state.tokens.cpu()
        out = []
        for b, p in enumerate(prompts):
            gen = tokens[b, len(p):len(p) + produced].tolist()
            stop = next((i for i, t in enumerate(gen) if t in stop_tokens), None)
            out.append(Generation(list(p), gen if stop is None else gen[:stop + 1], "length" if stop is None
                                  else "stop"))
        return out

    def _sync(self) -> None:
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
