"""Tiny random GPT-2 and Llama checkpoints written by transformers (save_pretrained, safetensors), and a
small byte-level BPE tokenizer trained with `tokenizers`, for the model tests; and the tolerance our
logits keep from transformers'.

Sizes: hidden 64, 4 query heads of 16 (Llama: 2 kv heads, so G = 2), MLP 128, 2 layers, ~300 tokens.
Weights are drawn with a wide init (std 0.2) so that logits are far from uniform: greedy choices are
then decided by clear margins, not by the last bits of a sum.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch

CORPUS = ["Four score and seven years ago our fathers brought forth on this continent, a new nation, "
          "conceived in Liberty, and dedicated to the proposition that all men are created equal.",
          "Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived "
          "and so dedicated, can long endure.", "The quick brown fox jumps over the lazy dog. " * 3,
          "tilelang writes kernels over tiles; the models run on them."] * 4
EOS = "<|endoftext|>"
LAYERS, HIDDEN, HEADS, KV_HEADS, MLP = 2, 64, 4, 2, 128
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


@lru_cache(maxsize=1)
def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=[EOS],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def _save(model, tok, folder: Path) -> Path:
    folder = Path(folder)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
            elif "norm" in name or "ln" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.1)
    model.save_pretrained(folder)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def write_gpt2(folder: Path, seed: int = 0, **overrides) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    tok = train_tokenizer()
    eos = tok.token_to_id(EOS)
    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=128, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                        n_inner=MLP, bos_token_id=eos, eos_token_id=eos, **overrides)
    return _save(GPT2LMHeadModel(config), tok, folder)


def write_llama(folder: Path, seed: int = 0, **overrides) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    tok = train_tokenizer()
    eos = tok.token_to_id(EOS)
    args = dict(vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, intermediate_size=MLP, num_hidden_layers=LAYERS,
                num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
                rms_norm_eps=1e-5, bos_token_id=eos, eos_token_id=eos,
                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 16})
    args.update(overrides)
    return _save(LlamaForCausalLM(LlamaConfig(**args)), tok, folder)


def hf_model(folder: Path, dtype=torch.float32):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()


def logits_tolerance(dtype: torch.dtype) -> float:
    """The largest ||ours - exact|| / ||exact|| we accept on a logits row.

    Both computations start from the same weights.  In a narrow dtype each layer rounds, relative u_T
    each time, the weights it multiplies, the QKV, attention and MLP activations, and the residual
    stream about six times, plus the embedding and the final norm: R = 6 * layers + 2 roundings, which
    the norms keep from growing; we allow twice their sum.  The f32 sums (up to the MLP width, n terms)
    add n * u_f32 each."""
    roundings = 6 * LAYERS + 2
    return 2 * (roundings * UNIT_ROUNDOFF[dtype] + MLP * UNIT_ROUNDOFF[torch.float32])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-30)) if torch.isfinite(a).all() else math.inf
