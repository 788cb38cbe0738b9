"""Weights stored in the order the layout plan chooses (`W: u4[N, K] @ packed`, `kernel.pack`).

The order itself (every width 1-8, round trips), the plan's choice (the dequantized tile's mma
fragment, runs of whole 16-byte words), the library's `wNa16_packed[_zp]` through the reference
interpreter against numpy for every width and group size on odd shapes, the CUDA backend's code on
the CPU emulator against the interpreter (the pair path, the f32 path, edge tiles, k split over
warp groups), safetensors round trips, and every misuse as a located error. On a GPU (`-m gpu`):
the CUDA backend against the dequantized weight.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import tilelang
from tilelang import TileError
from tilelang.layout import infer_layouts
from tilelang.layout.packing import PackedLayout, pack, packed_layout, unpack
from tilelang.layout.tiling import MmaTiling, mma_fragments
from tilelang.quant import PackedWeight, dequantize, quantize
from tilelang.quant import unpack as unpack_rows

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
NP = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}


def kernels():
    return tilelang.load(KERNELS / "gemm_wNa16.tile")


def problem(rng, m, n, k, bits, group, zp, signed=False, dt="f16"):
    w = rng.standard_normal((n, k)).astype(np.float32)
    plain, scale, zero = quantize(w, bits, group, signed=signed, zero_point=zp)
    q = unpack_rows(plain, bits, k, signed)
    x = rng.standard_normal((m, k)).astype(NP[dt])
    s = scale.astype(NP[dt])
    z = zero.astype(NP[dt]) if zp else None
    ref = x.astype(np.float32) @ dequantize(plain, bits, k, signed, s.astype(np.float32), group,
                                            None if z is None else z.astype(np.float32)).T
    return q, x, s, z, ref


# ----------------------------------------------------------------------------- the order

@pytest.mark.parametrize("bits", range(1, 9))
def test_every_width_round_trips_through_the_order(bits):
    fr = mma_fragments(MmaTiling(32, 8, 1, 1, 2), 256, False, False)
    layout = packed_layout("W", (32, 256), bits, fr.a)
    q = np.random.default_rng(bits).integers(0, 1 << bits, size=(45, 300))
    data = pack(q, layout)
    assert data.shape == (2, 2, 32 * 256 * bits // 8) and data.dtype == np.uint8
    assert (unpack(data, layout, 45, 300, False) == q).all()
    assert layout.run * bits % 8 == 0 and layout.mapping.values_per_thread % layout.run == 0
    assert PackedLayout.from_signature(layout.signature, "W") == layout


def test_each_thread_run_is_one_contiguous_stretch():
    """Run c of thread t starts at field (c * threads + t) * run: a warp's loads of a run are contiguous."""
    fr = mma_fragments(MmaTiling(16, 8, 1, 1), 128, False, False)
    layout = packed_layout("W", (16, 128), 4, fr.a)
    m, order = layout.mapping, layout.order
    assert layout.run == 32 and layout.run_bytes == 16
    for t in range(m.num_threads):
        for v in range(m.values_per_thread):
            assert order[m(t, v)] == ((v // 32) * 32 + t) * 32 + v % 32


def test_replicated_tiles_have_no_packed_order():
    fr = mma_fragments(MmaTiling(16, 16, 1, 2), 64, False, False)  # A replicated over 2 warps
    assert packed_layout("W", (16, 64), 4, fr.a) is None


# ----------------------------------------------------------------------------- the plan

def test_the_plan_reads_the_weight_as_the_mma_operand_from_registers():
    k = kernels()["wNa16_packed"]
    tk = k.lower(TW="u4", BN=16, BK=256, WK=4)
    for target in ("sm_80", "sm_90a"):
        plan = infer_layouts(tk, target)
        g = next(p for p in plan.stmts if type(p).__name__ == "GemmPlan")
        assert g.kind == "mma" and (g.tiling.wm, g.tiling.wn, g.tiling.wk) == (1, 1, 4)
        assert [i.name for i in g.instrs][0] == "mov"  # A from registers
        assert plan.mapping("w") == g.a and "read from registers" in plan.tile("w").origin
        (layout,) = plan.packed
        assert layout.tensor == "W" and layout.block == (16, 256) and layout.run == 32
        assert plan.tile("acc").mapping.num_threads == 128  # replicated over the 4 k groups


# ----------------------------------------------------------------------------- through the interpreter

@pytest.mark.parametrize("bits,group,zp,signed,dt", [
    (4, 128, False, False, "bf16"), (4, 64, True, False, "f16"), (2, 32, False, False, "f16"),
    (3, 64, False, True, "f16"), (8, 128, True, False, "bf16"), (5, None, False, False, "f16"),
    (1, 32, True, False, "f16"), (6, 64, False, True, "bf16"), (7, 128, False, False, "f16"),
])
def test_packed_kernels_match_numpy_through_the_interpreter(bits, group, zp, signed, dt):
    rng = np.random.default_rng(bits * 7 + (group or 0))
    m, n, k = 5, 37, 211
    g = group or k
    q, x, s, z, ref = problem(rng, m, n, k, bits, g, zp, signed, dt)
    kern = kernels()["wNa16_packed_zp" if zp else "wNa16_packed"]
    tw = ("i" if signed else "u") + str(bits)
    pw = kern.pack("W", q, TW=tw, G=g, BN=16, BK=128, WK=2)
    assert pw.shape == (n, k) and pw.dtype == tw and pw.consts == {"BN": 16, "BK": 128, "WK": 2}
    y = np.full((m, n), np.nan, NP[dt])
    kern(x, pw, s, *([z] if zp else []), y, G=g)
    assert np.linalg.norm(y.astype(np.float64) - ref) / np.linalg.norm(ref) < 1e-2


def test_a_weight_saved_and_loaded_runs_the_same(tmp_path):
    rng = np.random.default_rng(3)
    q, x, s, _, ref = problem(rng, 2, 20, 100, 4, 32, False)
    kern = kernels()["wNa16_packed"]
    pw = kern.pack("W", q, TW="u4", G=32, BN=16, BK=128, WK=1)
    pw.save(tmp_path / "w.safetensors")
    back = PackedWeight.load(tmp_path / "w.safetensors")
    assert back.signature == pw.signature and back.consts == pw.consts and (back.values() == q).all()
    y = np.full((2, 20), np.nan, np.float16)
    kern(x, back, s, y, G=32)
    assert np.linalg.norm(y.astype(np.float64) - ref) / np.linalg.norm(ref) < 1e-2


# ----------------------------------------------------------------------------- misuse

def test_misuse_is_a_located_error(tmp_path):
    rng = np.random.default_rng(4)
    q, x, s, _, _ = problem(rng, 2, 20, 100, 4, 32, False)
    kern = kernels()["wNa16_packed"]
    y = np.zeros((2, 20), np.float16)
    with pytest.raises(TileError, match="must be a PackedWeight") as e:
        kern(x, np.zeros((20, 50), np.uint8), s, y, G=32)
    assert "gemm_wNa16.tile" in str(e.value) and "kernel.pack('W'" in e.value.hint
    pw = kern.pack("W", q, TW="u4", G=32, BN=16, BK=128, WK=1)
    with pytest.raises(TileError, match="packed for BK=128, but the call asks BK=256"):
        kern(x, pw, s, y, G=32, BK=256)
    forged = PackedWeight(pw.data, pw.shape, pw.dtype, {}, pw.signature)  # its order, not its constants
    with pytest.raises(TileError, match="packed in another order"):
        kern(x, forged, s, y, G=32)
    with pytest.raises(TileError, match="do not fit u4"):
        kern.pack("W", q + 16, TW="u4", G=32)
    for backend in ("triton", "tvm"):
        with pytest.raises(TileError, match=f"the {backend} backend reads 'W' only in the plain \\[N, K\\] packing"):
            kern(x, pw, s, y, G=32, backend=backend)
    from safetensors.numpy import save_file
    save_file({"weight": pw.data}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(TileError, match="no tilelang packing metadata"):
        PackedWeight.load(tmp_path / "plain.safetensors")


@pytest.mark.parametrize("body,needle", [
    ("w = register(f16[16, 64]); copy(W[0, 0], w);", "only dequant reads it"),
    ("w = shared(f16[16, 64]); dequant(W[0, 0], w, scale=S, group=64);", "is a shared tile"),
    ("w = register(f16[16, 64], layout=replicate(2) * spatial(16, 4) * local(1, 16)); "
     "dequant(W[0, 0], w, scale=S, group=64);", "held by several threads"),
])
def test_a_packed_tensor_is_only_dequantized_into_a_register_tile_held_once(body, needle):
    src = f"""
kernel k(W: u4[N, K] @ packed, S: f16[N, KG], Y: f16[N, K]) grid(1) threads(128)
{{
    {body}
}}
"""
    with pytest.raises(TileError, match=needle) as e:
        infer_layouts(tilelang.loads(src, "k.tile")["k"].lower())
    assert e.value.loc.line >= 4


def test_packed_needs_an_integer_field_type():
    with pytest.raises(TileError, match="packed tensor holds 1-8 bit integers"):
        tilelang.loads("kernel k(W: f16[N, K] @ packed) grid(1) threads(32) { }", "k.tile")
    with pytest.raises(TileError, match="unknown storage order"):
        tilelang.loads("kernel k(W: u4[N, K] @ tiled) grid(1) threads(32) { }", "k.tile")


def test_both_front_ends_spell_packed():
    from tilelang import tile_kernel
    from tilelang.lang import dequant, f16, launch, packed, register, u4  # noqa: F401

    @tile_kernel
    def k(W: u4[N, K] @ packed, S: f16[N, KG]):  # noqa: F821
        launch(grid=(1,), threads=32)
        w = register(f16[16, 64])
        dequant(W[0, 0], w, scale=S, group=64)
    (t,) = tilelang.loads("""
kernel k(W: u4[N, K] @ packed, S: f16[N, KG]) grid(1) threads(32)
{
    w = register(f16[16, 64]);
    dequant(W[0, 0], w, scale=S, group=64);
}""", "k.tile").values()
    assert k.ir.param("W").storage == t.ir.param("W").storage == "packed"


# ----------------------------------------------------------------------------- the CUDA backend's code

needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU emulator needs g++")


@needs_gpp
@pytest.mark.parametrize("m,n,k,bits,group,zp,dt,consts", [
    (3, 37, 700, 4, 128, False, "bf16", dict(BN=16, BK=256, WK=4)),   # pairs, k split, an edge tile in n and k
    (12, 50, 300, 4, 64, True, "f16", dict(BN=32, BK=128, WK=2, BM=16)),  # zero points, two warp rows
    (1, 20, 1000, 8, 128, False, "f16", dict(BN=16, BK=256, WK=4)),  # bytes as f16 pairs
    (2, 33, 150, 3, 64, False, "f16", dict(BN=16, BK=64, WK=1)),  # 3-bit fields: the f32 path
])
def test_cuda_code_matches_the_interpreter_on_the_emulator(m, n, k, bits, group, zp, dt, consts):
    from tilelang.backends.cuda.emulate import Emulated
    from tilelang.runtime.args import bind
    rng = np.random.default_rng(bits + m)
    q, x, s, z, ref = problem(rng, m, n, k, bits, group, zp, False, dt)
    kern = kernels()["wNa16_packed_zp" if zp else "wNa16_packed"]
    pw = kern.pack("W", q, TW=f"u{bits}", G=group, **{c: v for c, v in consts.items() if c != "BM"})
    args = (x, pw, s, *([z] if zp else []))
    extra = {"G": group, **({"BM": consts["BM"]} if "BM" in consts else {})}
    got, want = np.full((m, n), np.nan, NP[dt]), np.full((m, n), np.nan, NP[dt])
    tk = kern.lower(**bind(kern.ir, args + (got,), extra).consts)
    Emulated(tk)(*args, got, **extra)
    kern(*args, want, **extra)
    # the same pairs, scales and sums of products: only the k groups' partial sums are added in another order
    assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max() <= 4 * np.abs(ref).max() * 2.0**-8
    assert np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref) < 1e-2


# ----------------------------------------------------------------------------- on the GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["f16", "bf16"])
@pytest.mark.parametrize("m,n,k,consts", [(1, 4099, 1111, dict(BN=16, BK=512, WK=4)),
                                          (16, 1000, 4096, dict(BN=32, BK=256, WK=2))])
def test_packed_kernel_on_gpu(dt, m, n, k, consts):
    import torch
    rng = np.random.default_rng(m)
    q, x, s, _, ref = problem(rng, m, n, k, 4, 128, zp=False, dt=dt)
    kern = kernels()["wNa16_packed"]
    pw = kern.pack("W", q, TW="u4", G=128, **consts).to("cuda")
    tdt = {"f16": torch.float16, "bf16": torch.bfloat16}[dt]
    xt = torch.from_numpy(x.astype(np.float32)).to(tdt).cuda()
    st = torch.from_numpy(s.astype(np.float32)).to(tdt).cuda()
    y = torch.full((m, n), float("nan"), dtype=tdt, device="cuda")
    kern(xt, pw, st, y, G=128, BM=16 if m > 8 else 8, backend="cuda")
    err = np.linalg.norm(y.float().cpu().numpy() - ref) / np.linalg.norm(ref)
    assert err < 1e-2, err
