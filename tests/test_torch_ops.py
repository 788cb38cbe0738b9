"""The kernel library as torch operators (`tilelang.ops`): signatures derived from the kernels,
allocating functional calls, fake implementations on symbolic shapes under
`torch.compile(fullgraph=True)`, and a clear error for gradients."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tilelang  # noqa: E402
import tilelang.ops as ops  # noqa: E402
from kernel_refs import TOL, rel_err  # noqa: E402
from tilelang.diagnostics import TileError  # noqa: E402
from tilelang.ops import OpSignature  # noqa: E402


def test_every_library_kernel_is_an_operator_whose_schema_comes_from_its_signature():
    assert set(tilelang.kernels.names()) <= set(dir(torch.ops.tilelang))
    schema = {n: OpSignature.of(tilelang.kernels.load(n).ir).schema() for n in ("rmsnorm", "add_rmsnorm",
                                                                                  "attention_decode_split")}
    assert schema["rmsnorm"].startswith("(Tensor X, Tensor W, float eps, *, str? T=None") and \
        schema["rmsnorm"].endswith("-> Tensor")
    assert schema["add_rmsnorm"].endswith("-> (Tensor, Tensor)")  # R updated (returned), Y written
    assert "int? NS=None" in schema["attention_decode_split"]  # a dim only outputs have


def test_functional_calls_allocate_outputs_of_the_derived_shape_and_dtype():
    torch.manual_seed(0)
    x, w = torch.randn(3, 96, dtype=torch.bfloat16), torch.randn(96, dtype=torch.bfloat16)
    y = ops.rmsnorm(x, w, 1e-6)
    assert y.shape == x.shape and y.dtype == torch.bfloat16  # TY follows T: same default
    assert rel_err(y.float(), F.rms_norm(x.float(), (96,), w.float(), 1e-6)) < TOL
    assert ops.rmsnorm(x, w, 1e-6, TY="f32").dtype == torch.float32
    r = torch.randn(3, 96, dtype=torch.bfloat16)
    r_before = r.clone()
    r_new, y = ops.add_rmsnorm(x, r, w, 1e-6)
    assert torch.equal(r, r_before) and rel_err(r_new.float(), (x.float() + r.float())) < TOL
    with pytest.raises(TileError, match="'NS' is not given by any input"):
        q = torch.randn(1, 2, 4, 64, dtype=torch.float16)
        ops.attention_decode_split(q, q, q, 1, 0.125)


def _block(x, wn, wg, wu):
    """rmsnorm -> two linears -> silu_mul: an MLP's first half, in tilelang operators only."""
    n = ops.rmsnorm(x, wn, 1e-6)
    return ops.silu_mul(ops.linear(n, wg), ops.linear(n, wu))


def _reference(x, wn, wg, wu):
    n = F.rms_norm(x.float(), (x.shape[1],), wn.float(), 1e-6).to(x.dtype).float()
    return F.silu(n @ wg.float().t()) * (n @ wu.float().t())


def test_torch_compile_fullgraph_with_dynamic_shapes_runs_the_operators():
    from torch._dynamo.testing import CompileCounterWithBackend
    torch.manual_seed(1)
    h, i = 64, 32
    wn, wg, wu = (torch.randn(*s, dtype=torch.float16) * 0.2 for s in ((h,), (i, h), (i, h)))
    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(_block, backend=counter, fullgraph=True, dynamic=True)
    for m in (3, 5):  # one graph for both: the fake implementations run on a symbolic M
        x = torch.randn(m, h, dtype=torch.float16)
        y = compiled(x, wn, wg, wu)
        assert y.shape == (m, i) and y.dtype == torch.float16
        assert rel_err(y.float(), _reference(x, wn, wg, wu)) < TOL
    assert counter.frame_count == 1


def test_a_gradient_through_an_operator_is_a_clear_error():
    x = torch.randn(2, 32, requires_grad=True)
    y = ops.softmax(x)  # forward is fine: inference code need not say no_grad
    with pytest.raises(TileError, match="torch.ops.tilelang.softmax has no backward"):
        y.sum().backward()


@pytest.mark.gpu
def test_gpu_operators_under_cuda_graph_capture_and_torch_compile():
    """On CUDA tensors the operators run Triton kernels on torch's stream: a captured graph replays
    them on new inputs, and torch.compile(fullgraph=True) traces them."""
    torch.manual_seed(2)
    h, i = 1024, 512
    wn, wg, wu = (torch.randn(*s, dtype=torch.float16, device="cuda") * 0.05 for s in ((h,), (i, h), (i, h)))
    x = torch.randn(16, h, dtype=torch.float16, device="cuda")
    _block(x, wn, wg, wu)  # compiles and tunes before capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = _block(x, wn, wg, wu)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(y.float(), _reference(x, wn, wg, wu)) < TOL
    compiled = torch.compile(_block, fullgraph=True, dynamic=True)
    for m in (1, 7):
        x = torch.randn(m, h, dtype=torch.float16, device="cuda")
        assert rel_err(compiled(x, wn, wg, wu).float(), _reference(x, wn, wg, wu)) < TOL


def test_a_tensor_written_at_positions_read_from_tensors_is_returned_updated():
    """kv_append writes only the new rows, at positions held in Pos: the caches come in and go out updated."""
    from kernel_refs import kv_append
    torch.manual_seed(2)
    k, v = (torch.randn(2, 3, 5, 20, dtype=torch.float16) for _ in range(2))
    kc, vc = (torch.randn(2, 3, 30, 20, dtype=torch.float16) for _ in range(2))
    pos = torch.tensor([4, 27], dtype=torch.int32)  # the second runs past the cache's end
    schema = OpSignature.of(tilelang.kernels.load("kv_append").ir).schema()
    assert schema.startswith("(Tensor K, Tensor V, Tensor Kc, Tensor Vc, Tensor Pos") and schema.endswith(
        "-> (Tensor, Tensor)")
    before = kc.clone()
    kc_new, vc_new = ops.kv_append(k, v, kc, vc, pos)
    want = kv_append(*(t.numpy() for t in (k, v, kc, vc, pos)))
    assert torch.equal(kc, before)
    assert torch.equal(kc_new, torch.from_numpy(want[2])) and torch.equal(vc_new, torch.from_numpy(want[3]))
    ids = torch.tensor([3, -1, 9], dtype=torch.int64)
    assert torch.equal(ops.embedding(ids, kc[0, 0])[1], torch.zeros(20, dtype=torch.float16))  # out of range: 0
