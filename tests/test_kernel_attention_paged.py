"""attention_decode_paged (kernels/attention_paged.tile): decode attention over a paged KV cache, a
block table and per-sequence lengths read from tensors, against numpy and against attention_decode_lens
on the same cache laid out contiguously."""
from __future__ import annotations

import numpy as np
import pytest

from kernel_refs import TOL, attention_decode_paged, load, poisoned, rand, rel_err
from library_cases import args_decode_paged, args_decode_split_paged, paged_cache


def _run_paged(args, consts, backend=None):
    load("attention_paged")["attention_decode_paged"](*args, backend=backend, **consts)
    return args[3]


def _reference(args):
    qkv, kc, vc, o, table, lens, scale = args
    g = o.shape[2]
    return attention_decode_paged(qkv[:, :, :g].reshape(qkv.shape[0], -1, qkv.shape[3]), kc, vc, table, lens[:, 0],
                                  scale).reshape(o.shape)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_on_odd_shapes_with_a_page_out_of_the_pool(dt, seed):
    args, consts = args_decode_paged(np.random.default_rng(seed), dt)
    o = _run_paged(args, consts)
    assert rel_err(o, _reference(args)) < TOL
    assert not o[3].any()  # Lens 0: zeros


@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("b,hkv,g,d,pb,maxb,lens", [(3, 2, 4, 13, 8, 6, [41, 1, 48]), (2, 1, 1, 16, 32, 3, [17, 96])])
def test_a_table_mapping_a_contiguous_cache_gives_attention_decode_lens(dt, b, hkv, g, d, pb, maxb, lens):
    rng = np.random.default_rng(b * d + pb)
    qkv = rand(rng, (b, hkv, g + 2, d), dt)
    maxs = maxb * pb
    kc, vc = rand(rng, (b, hkv, maxs, d), dt), rand(rng, (b, hkv, maxs, d), dt)
    # page b * MAXB + j holds the tokens j * PB .. of sequence b
    kp, vp = (x.reshape(b, hkv, maxb, pb, d).transpose(0, 2, 1, 3, 4).reshape(b * maxb, hkv, pb, d) for x in (kc, vc))
    table = np.arange(b * maxb, dtype=np.int32).reshape(b, maxb)
    n = np.array(lens, np.int32).reshape(b, 1)
    o_lens, o_paged = poisoned((b, hkv, g, d), dt), poisoned((b, hkv, g, d), dt)
    load("attention")["attention_decode_lens"](qkv, kc, vc, o_lens, n, d ** -0.5, BG=4, BN=pb, BD=16)
    _run_paged([qkv, np.ascontiguousarray(kp), np.ascontiguousarray(vp), o_paged, table, n, d ** -0.5],
               dict(PB=pb, BG=4, BD=16))
    assert rel_err(o_paged, o_lens) < TOL


def test_a_sequence_with_every_page_out_of_the_pool_writes_zeros():
    rng = np.random.default_rng(3)
    kc, vc, table, n = paged_cache(rng, "f16", 2, 1, 16, 8, 2, [9, 5])
    table[0] = [-1, 1 << 30]
    o = poisoned((2, 1, 2, 16), "f16")
    _run_paged([rand(rng, (2, 1, 2, 16), "f16"), kc, vc, o, table, n, 0.25], dict(PB=8, BG=2, BD=16))
    assert not o[0].any() and np.isfinite(o[1]).all()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_gpu_matches_attention_decode_lens_on_a_shuffled_table(backend, dt):
    """Llama-8B-like decode (8 kv heads of 4 queries, D = 128), pages of 64 in a shuffled pool: the
    paged kernel, and its split form + combine, equal attention_decode_lens on the same cache laid out
    contiguously."""
    import torch
    torch.manual_seed(0)
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dt]
    b, hkv, g, d, pb, maxb = 4, 8, 4, 128, 64, 16
    lens = torch.tensor([[1000], [1], [513], [16]], dtype=torch.int32, device="cuda")
    qkv = torch.randn(b, hkv, g + 2, d, device="cuda", dtype=tdt)
    kc, vc = (torch.randn(b, hkv, maxb * pb, d, device="cuda", dtype=tdt) for _ in range(2))
    perm = torch.randperm(b * maxb, device="cuda")
    table = perm.reshape(b, maxb).to(torch.int32)
    kp, vp = (torch.empty(b * maxb, hkv, pb, d, device="cuda", dtype=tdt) for _ in range(2))
    for x, p in ((kc, kp), (vc, vp)):
        p[perm] = x.reshape(b, hkv, maxb, pb, d).transpose(1, 2).reshape(b * maxb, hkv, pb, d)
    o_lens, o_paged = (torch.full((b, hkv, g, d), float("nan"), device="cuda", dtype=tdt) for _ in range(2))
    load("attention")["attention_decode_lens"](qkv, kc, vc, o_lens, lens, d ** -0.5, BG=16, BN=pb, BD=d,
                                               backend=backend)
    paged = load("attention_paged")
    paged["attention_decode_paged"](qkv, kp, vp, o_paged, table, lens, d ** -0.5, PB=pb, BD=d, backend=backend)
    assert rel_err(o_paged.float().cpu().numpy(), o_lens.float().cpu().numpy()) < TOL
    ns = 5  # runs of 4 pages, the last empty
    parts = [torch.empty(b, hkv, ns, g, d, device="cuda"), torch.empty(b, hkv, ns, g, device="cuda"),
             torch.empty(b, hkv, ns, g, device="cuda")]
    paged["attention_decode_split_paged"](qkv, kp, vp, *parts, table, lens, d ** -0.5, PB=pb, BD=d, backend=backend)
    load("attention")["attention_decode_combine"](*parts, o_paged, BD=d, backend=backend)
    assert rel_err(o_paged.float().cpu().numpy(), o_lens.float().cpu().numpy()) < TOL


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_split_then_combine_matches_numpy_and_an_empty_run_weighs_nothing(dt):
    qkv, kc, vc, op, mp, lp, table, n, scale = (args := args_decode_split_paged(np.random.default_rng(5), dt))[0]
    load("attention_paged")["attention_decode_split_paged"](*args[0], **args[1])
    b, hkv, ns, g, d = op.shape
    o = poisoned((b, hkv, g, d), dt)
    load("attention")["attention_decode_combine"](op, mp, lp, o, BG=4, BD=16)
    ref = attention_decode_paged(qkv[:, :, :g].reshape(b, -1, d), kc, vc, table, n[:, 0], scale).reshape(o.shape)
    assert rel_err(o[:3], ref[:3]) < TOL
    # Lens 0 (sequence 3) and the run past sequence 1's single page: nothing attended
    for s in [(3, slice(None), slice(None)), (1, slice(None), slice(1, None))]:
        assert not op[s].any() and not lp[s].any() and (mp[s] == -1e30).all()
