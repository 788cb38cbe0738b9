"""A decoder-only transformer whose forward pass is library kernels: the part GPT-2 and Llama share.

`forward(p, cache)` runs one pass over M = B * S token rows: prefill (S prompt tokens of B
sequences, from position 0) or decode (one token per sequence).  Per layer:

    qkv  = norm1(h) @ Wqkv^T (+ b)           [M, C], grouped per kv head (tilelang/models/weights.py); at
                                             decode one kernel (norm_linear.tile), in prefill two
    rotary_qk(qkv)                           (Llama: queries and keys, rows gathered by position)
    cache[rows of p.slots] = keys, values    (kv_append_slots)
    o    = attention(qkv, cache)             prefill: attention_prefill_qkv; decode: attention_decode(_split)_lens
    h    = h + o @ Wo^T (+ b)                a linear kernel with the residual as its epilogue
    h    = h + mlp(norm2(h))                 (gpt2.py, llama.py)

and at the end `logits = norm(h) @ W_head^T` on the rows asked for; gathers (embedding rows, position
rows, the logit rows) are the embedding kernel.  torch only allocates and views here (Library.torch_op
lists the rest, docs/MODELS.md); the KV cache is
[layers, 2, B, HKV, MAXS, D], one layer's keys and values side by side.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diagnostics import TileError
from .config import ModelConfig
from .layers import DECODE_ROWS, Linear
from .library import Library
from .quantize import QuantizedWeight
from .schedule import FULL, Schedule
from .tokenizer import GenerationDefaults


@dataclass
class Pass:
    """One forward pass over M = batch * seq token rows (row b * seq + s is token s of sequence b)."""
    ids: torch.Tensor  # [M] token ids
    positions: torch.Tensor  # [M] int32: each row's position, for gathering position tables
    slots: torch.Tensor  # [M, HKV, 2] int64: the cache rows its keys and values go to (cache_slots)
    batch: int
    seq: int
    lens: torch.Tensor | None = None  # decode: [batch, 1] int32, each sequence's length after this step
    rope: tuple | None = None  # Llama: the rotary cos, sin rows of the pass's positions, gathered once per pass

    @property
    def decode(self) -> bool:
        return self.lens is not None


def cache_slots(config: ModelConfig, cache_batch: int, maxs: int, rows: list[int], seq: int) -> torch.Tensor:
    """[len(rows) * seq, HKV, 2] int64: the rows of one layer's cache, viewed as [2 * B * HKV * maxs, D],
    that tokens 0..seq-1 of the sequences in cache rows `rows` write their key (0) and value (1) to:
    ((kv * B + b) * HKV + h) * maxs + s.  kernels/kv_cache.tile's decode_positions computes the same
    rows on the device for decode steps (tests/test_models_graph_safety.py holds them together)."""
    b = torch.tensor(rows, dtype=torch.int64).view(-1, 1, 1, 1)
    s = torch.arange(seq, dtype=torch.int64).view(1, -1, 1, 1)
    h = torch.arange(config.kv_heads, dtype=torch.int64).view(1, 1, -1, 1)
    kv = torch.arange(2, dtype=torch.int64).view(1, 1, 1, 2)
    return (((kv * cache_batch + b) * config.kv_heads + h) * maxs + s).reshape(-1, config.kv_heads, 2)


def next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


class Model:
    """Weights on a device, the kernels that run them, and the forward pass (see the module docstring)."""
    position_limit: int | None = None  # the longest sequence it can encode (learned positions), else None

    def __init__(self, config: ModelConfig, weights: dict[str, torch.Tensor | QuantizedWeight], *,
                 dtype: torch.dtype, device: torch.device, backend: str | None = None,
                 schedule: Schedule = FULL, attention_splits: int | None = None):
        self.config, self.dtype, self.device = config, dtype, torch.device(device)
        self.lib = Library(backend)
        self.schedule = schedule
        self.attention_splits = attention_splits  # None: enough splits to fill the GPU (1 on the CPU)
        self.weights = weights
        self.quantized = sorted(k for k, v in weights.items() if isinstance(v, QuantizedWeight))
        self.embed_table = weights["embed"]
        self.qkv = [Linear(weights[f"layers.{i}.qkv.weight"], weights.get(f"layers.{i}.qkv.bias"))
                    for i in range(config.layers)]
        self.out = [Linear(weights[f"layers.{i}.out.weight"], weights.get(f"layers.{i}.out.bias"))
                    for i in range(config.layers)]
        self.head = Linear(weights.get("head.weight", self.embed_table))
        self.random_weights = False
        self.source = None  # the folder the weights came from
        self.tokenizer = None
        self.generation = GenerationDefaults(eos_token_ids=config.eos_token_ids)
        self.quant_errors: dict[str, float] = {}
        self._generator = None

    @property
    def backend(self) -> str:
        """The backend its kernels run on: the one asked for, else TileKernel's choice for the device's arrays."""
        return self.lib.backend or ("triton" if self.device.type == "cuda" else "reference")

    def with_schedule(self, schedule: Schedule) -> "Model":
        """The same model (weights shared) running another schedule: the ablation's variants."""
        other = type(self)(self.config, self.weights, dtype=self.dtype, device=self.device, backend=self.lib.backend,
                           schedule=schedule, attention_splits=self.attention_splits)
        for attr in ("random_weights", "source", "tokenizer", "generation", "quant_errors"):
            setattr(other, attr, getattr(self, attr))
        return other

    @property
    def generator(self):
        """The model's Generator (decode states and captured steps live there)."""
        if self._generator is None:
            from .generation import Generator
            self._generator = Generator(self)
        return self._generator

    def generate(self, prompt, max_new_tokens: int | None = None, *, temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, stop_tokens=None, seed: int | None = None,
                 on_token=None):
        """Generate after `prompt`: text, token ids, or a list of either (a batch, one Generation each).

        Unset arguments take generation_config.json's values (greedy unless it samples; its eos ids stop);
        temperature 0 is greedy.  `on_token(row, token_id)` streams."""
        from .sampling import SamplingParams
        batch = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)
        prompts = [self.encode(p) for p in (prompt if batch else [prompt])]
        g = self.generation
        if temperature is None:
            temperature = g.temperature if g.do_sample else 0.0
        params = SamplingParams(temperature, g.top_k if top_k is None else top_k, g.top_p if top_p is None else top_p)
        stops = tuple(g.eos_token_ids if stop_tokens is None else stop_tokens)
        out = self.generator.generate(prompts, max_new_tokens or g.max_new_tokens or 64, params, stops, on_token, seed)
        if self.tokenizer is not None:
            for r in out:
                r.text = self.tokenizer.decode(r.tokens)
        return out if batch else out[0]

    def logits(self, ids: list[int]) -> torch.Tensor:
        """The logits [len(ids), V] (float32) after every prefix of one sequence: one prefill pass."""
        s = len(ids)
        cache = self.new_cache(1, s)
        out = torch.empty(s, self.config.vocab, dtype=torch.float32, device=self.device)
        self.rope_positions(s)
        p = Pass(torch.tensor(ids, device=self.device), torch.arange(s, dtype=torch.int32, device=self.device),
                 cache_slots(self.config, 1, s, [0], s).to(self.device), 1, s)
        return self.forward(p, cache, out)

    def save_quantized(self, folder):
        """Write this quantized model as a folder `load` reads back (tilelang/models/quantize.py)."""
        from .quantize import save_quantized
        if not self.quantized:
            raise TileError("the model is not quantized", hint="load it with quant=... first")
        dense = {k: v for k, v in self.weights.items() if not isinstance(v, QuantizedWeight)}
        if self.config.tie_embeddings:
            dense.pop("head.weight", None)
        return save_quantized(folder, self.config.to_hf(), dense, {k: self.weights[k] for k in self.quantized},
                              self.source)

    def encode(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise TileError(f"{self.source} has no tokenizer.json to encode text with",
                                hint="pass token ids, or add the model's tokenizer.json")
            return self.tokenizer.encode(prompt)
        return list(prompt)

    # ---------------------------------------------------------------- the architecture's parts
    def embed(self, p: Pass, h: torch.Tensor) -> torch.Tensor | None:
        """h = the token rows' embeddings; returns layer 0's norm1(h) where computing it came for free."""
        raise NotImplementedError

    def norm(self, name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        """y = the norm `name` (e.g. "layers.3.norm1", "norm") of x."""
        raise NotImplementedError

    def norm_linear(self, name: str, linear: Linear, x: torch.Tensor, y: torch.Tensor, gelu: bool = False) -> None:
        """y = linear(norm `name` of x) in one kernel (kernels/norm_linear.tile; see `fuses_norm`)."""
        raise NotImplementedError

    def rope_positions(self, positions: int) -> None:
        """Make the position tables cover `positions` (rotary tables grow on demand; learned ones cannot)."""

    def rotary(self, p: Pass, qkv: torch.Tensor) -> None:
        """Position-dependent rotation of the queries and keys (none for learned positions)."""

    def mlp(self, layer: int, h: torch.Tensor) -> None:
        """h += mlp(norm2(h)), in place."""
        raise NotImplementedError

    def fuses_norm(self, rows: int, linear: Linear) -> bool:
        """Whether the norm before `linear` runs inside its GEMM: decode rows, both the GEMV and the
        reduction classes in their optimized forms, and a fused kernel for the weight (`fused_quantized`
        for a quantized one)."""
        if rows > DECODE_ROWS or not (self.schedule.gemv and self.schedule.reduction):
            return False
        return not isinstance(linear.weight, QuantizedWeight) or self.fused_quantized(rows, linear)

    def fused_quantized(self, rows: int, linear: Linear) -> bool:
        """Whether the architecture has fused one-row kernels for this quantized weight (Llama: symmetric codes)."""
        return False

    def normed(self, name: str, linear: Linear, x: torch.Tensor, y: torch.Tensor, gelu: bool = False) -> None:
        """y = linear(norm `name` of x): fused where `fuses_norm`, else the norm kernel then the linear one."""
        if self.fuses_norm(x.shape[0], linear):
            self.norm_linear(name, linear, x, y, gelu)
            return
        n = torch.empty_like(x)
        self.norm(name, x, n)
        linear(self.lib, self.schedule, n, y, gelu=gelu)

    # ---------------------------------------------------------------- shared
    def new_cache(self, batch: int, maxs: int) -> torch.Tensor:
        c = self.config
        return torch.zeros(c.layers, 2, batch, c.kv_heads, maxs, c.head_dim, dtype=self.dtype, device=self.device)

    def gather(self, table: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows of `table` (an embedding or a position table, the hidden rows, or the elements of a 1-d
        buffer) at the indices `index` holds: the library's embedding kernel (kernels/embedding.tile)."""
        rows = table if table.dim() == 2 else table.view(-1, 1)
        if out is None:
            out = torch.empty(index.shape[0], *table.shape[1:], dtype=table.dtype, device=table.device)
        self.lib("embedding", index, rows, out.view(index.shape[0], rows.shape[1]))
        return out

    def forward(self, p: Pass, cache: torch.Tensor, logits: torch.Tensor,
                logit_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Run the pass, writing its keys and values into `cache` and the logits of `logit_rows`
        (all rows if None) into `logits` [rows, V] (float32)."""
        c, lib, m = self.config, self.lib, p.ids.shape[0]
        h = torch.empty(m, c.hidden, dtype=self.dtype, device=self.device)
        qkv = torch.empty(m, c.qkv_width, dtype=self.dtype, device=self.device)
        o = torch.empty(m, c.heads * c.head_dim, dtype=self.dtype, device=self.device)
        n0 = self.embed(p, h)
        for i in range(c.layers):
            if i == 0 and n0 is not None:
                self.qkv[0](lib, self.schedule, n0, qkv)
            else:
                self.normed(f"layers.{i}.norm1", self.qkv[i], h, qkv)
            self.rotary(p, qkv)
            self.write_cache(cache[i], qkv, p.slots)
            self.attention(i, p, qkv, cache[i], o)
            self.out[i](lib, self.schedule, o, h, residual=h)
            self.mlp(i, h)
        rows = h if logit_rows is None else self.gather(h, logit_rows)
        nf = torch.empty_like(rows)
        self.norm("norm", rows, nf)
        self.head(lib, self.schedule, nf, logits)
        return logits

    def grouped(self, qkv: torch.Tensor) -> torch.Tensor:
        """[M, HKV, G + 2, D]: per token and kv head, its G queries, key and value."""
        c = self.config
        return qkv.view(-1, c.kv_heads, c.group + 2, c.head_dim)

    def write_cache(self, layer_cache: torch.Tensor, qkv: torch.Tensor, slots: torch.Tensor) -> None:
        """The pass's keys and values into their cache rows (kernels/kv_cache.tile's kv_append_slots)."""
        self.lib("kv_append_slots", self.grouped(qkv), layer_cache.view(-1, self.config.head_dim), slots)

    def splits(self, batch: int, maxs: int, bn: int) -> int:
        """Split-KV decode: enough splits of the cache for the (batch, kv head) blocks to fill the GPU."""
        if self.attention_splits is not None:
            return self.attention_splits
        if self.device.type != "cuda":
            return 1
        sms = torch.cuda.get_device_properties(self.device).multi_processor_count
        return max(1, min(-(-sms // (batch * self.config.kv_heads)), -(-maxs // bn)))

    def attention(self, layer: int, p: Pass, qkv: torch.Tensor, layer_cache: torch.Tensor, o: torch.Tensor) -> None:
        c, lib = self.config, self.lib
        scale = c.sm_scale(layer)
        tiles = {} if self.schedule.attention else dict(BM=16, BN=16)
        if not p.decode:
            lib("attention_prefill_qkv", qkv.view(p.batch, p.seq, -1), o.view(p.batch, p.seq, -1), scale,
                D=c.head_dim, **tiles)
            return
        q, k, v = self.grouped(qkv), layer_cache[0], layer_cache[1]
        out = o.view(p.batch, c.kv_heads, c.group, c.head_dim)
        consts = dict(BG=max(16, next_pow2(c.group)), BD=c.head_dim)
        bn = 64 if self.schedule.attention else 16
        ns = self.splits(p.batch, k.shape[2], bn) if self.schedule.attention else 1
        if ns == 1:
            lib("attention_decode_lens", q, k, v, out, p.lens, scale, BN=bn, **consts)
            return
        shape = (p.batch, c.kv_heads, ns, c.group)
        op = torch.empty(*shape, c.head_dim, dtype=torch.float32, device=self.device)
        mp = torch.empty(shape, dtype=torch.float32, device=self.device)
        lp = torch.empty_like(mp)
        lib("attention_decode_split_lens", q, k, v, op, mp, lp, p.lens, scale, BN=bn, **consts)
        lib("attention_decode_combine", op, mp, lp, out, **consts)
