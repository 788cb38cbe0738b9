"""Weight-only quantization at load (tilelang/models/quantize.py): specs, the quantized model against the
same model with the dequantized weights (the kernels' exact job) and against the original (the
quantization's error), the per-layer report, perplexity, and a saved quantized folder reloading to the
same model."""
from __future__ import annotations

import math

import pytest
import torch

import tilelang.models as tm
from tilelang import TileError
from tilelang.models.evaluate import perplexity
from tilelang.models.generation import DecodeState, decode_step
from tilelang.models.loading import build, quantized_names
from tilelang.models.quantize import QuantizedWeight, QuantSpec
from tilelang.models.sampling import SamplingParams
from tiny_models import logits_tolerance, rel, write_gpt2, write_llama

PROMPT = [5, 77, 140, 23, 9, 200, 61, 3]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant")
    return {"gpt2": write_gpt2(root / "gpt2", seed=4), "llama": write_llama(root / "llama", seed=5)}


@pytest.mark.parametrize("text,bits,group,zp", [("w4g128", 4, 128, False), ("w8pc", 8, None, False),
                                                ("w3g64zp", 3, 64, True), ("W2G32", 2, 32, False)])
def test_spec_parsing(text, bits, group, zp):
    spec = QuantSpec.parse(text)
    assert (spec.bits, spec.group, spec.zero_point) == (bits, group, zp)
    assert spec.tw == f"{'u' if zp else 'i'}{bits}" and QuantSpec.parse(spec.name) == spec


@pytest.mark.parametrize("text", ["w4", "w9g128", "w1g32", "w4g0", "int4", "w4g128z"])
def test_bad_specs_say_what_is_accepted(text):
    with pytest.raises(TileError, match="w4g128"):
        QuantSpec.parse(text)


def dequantized(model) -> dict:
    """The model's weights with every quantized one replaced by the floats it stands for."""
    return {name: w.dequantize() if isinstance(w, QuantizedWeight) else w for name, w in model.weights.items()}


@pytest.mark.parametrize("arch,spec", [("llama", "w4g32"), ("gpt2", "w8pc"), ("llama", "w3g64zp"),
                                       ("gpt2", "w2g32zp")])
def test_quantized_model_is_the_dense_model_of_its_dequantized_weights(folders, arch, spec):
    """The quantized kernels compute exactly what the dense ones do on the weights the codes stand for:
    the f32 logits agree within the f32 tolerance.  Every linear layer, the LM head included, is
    quantized; the tied embedding keeps its float copy."""
    model = tm.load(folders[arch], quant=spec, dtype="f32")
    assert sorted(model.quantized) == sorted(quantized_names(model.config))
    assert not isinstance(model.weights["embed"], QuantizedWeight)
    dense = build(model.config, dequantized(model), dtype=torch.float32, device=torch.device("cpu"), backend=None)
    assert rel(model.logits(PROMPT), dense.logits(PROMPT)) < logits_tolerance(torch.float32)


@pytest.mark.parametrize("arch,spec", [("llama", "w4g32"), ("llama", "w4g32zp"), ("gpt2", "w3g32")])
def test_quantized_decode_steps_are_the_dense_model_of_its_dequantized_weights(folders, arch, spec):
    """Decode steps run the one-row kernels (Llama with symmetric codes: the norm and the residual fused
    into them, gemv_wNa16_residual, fused_mlp_gate_up_wNa16); they too compute the dequantized model."""
    model = tm.load(folders[arch], quant=spec, dtype="f32")
    dense = build(model.config, dequantized(model), dtype=torch.float32, device=torch.device("cpu"), backend=None)
    logits = []
    for m in (model, dense):
        state = DecodeState(m, 1, 16)
        m.generator.prefill(state, [PROMPT], SamplingParams())
        for t in (7, 99, 3):
            state.tokens[0, state.pos[0, 0]] = t
            decode_step(m, state, SamplingParams())
        logits.append(state.logits[0].clone())
    assert rel(*logits) < logits_tolerance(torch.float32)


@pytest.mark.parametrize("spec,bound", [("w8pc", 0.01), ("w4g32", 0.12), ("w4g32zp", 0.1)])
def test_quantization_error_is_reported_and_bounds_the_logits(folders, spec, bound):
    """Round-to-nearest codes err by at most half a step: for normal weights a relative error of about
    (range / 2^bits) / sqrt(12) / std, under `bound` per layer.  The layers' errors are independent
    perturbations, so the logits' relative error stays near their root-sum-square (measured 1.2 to 1.5
    times it); we allow twice."""
    dense = tm.load(folders["llama"], dtype="f32")
    model = tm.load(folders["llama"], quant=spec, dtype="f32")
    errors = model.quant_errors
    assert sorted(errors) == sorted(quantized_names(model.config)) and 0 < max(errors.values()) < bound
    assert rel(model.logits(PROMPT), dense.logits(PROMPT)) < 2 * math.sqrt(sum(e * e for e in errors.values()))


def test_perplexity_is_exp_of_the_mean_nll_and_grows_with_coarser_codes(folders):
    dense = tm.load(folders["gpt2"], dtype="f32")
    ids = dense.tokenizer.encode("Four score and seven years ago our fathers brought forth on this continent")
    logp = torch.log_softmax(dense.logits(ids).double(), -1)
    want = math.exp(-float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()))
    assert perplexity(dense, ids) == pytest.approx(want, rel=1e-9)
    assert perplexity(dense, ids, window=5) != pytest.approx(want, rel=1e-3)  # windows restart the context
    assert perplexity(tm.load(folders["gpt2"], dtype="f32", quant="w2g32"), ids) > perplexity(dense, ids)


def test_saved_quantized_folder_reloads_to_the_same_model(folders, tmp_path):
    model = tm.load(folders["gpt2"], quant="w4g32zp", dtype="f32")
    out = model.save_quantized(tmp_path / "q")
    assert (out / "tokenizer.json").exists() and (out / "config.json").exists()
    again = tm.load(out, dtype="f32")
    assert sorted(again.quantized) == sorted(model.quantized)
    assert torch.equal(again.logits(PROMPT), model.logits(PROMPT))
    with pytest.raises(TileError, match="already quantized"):
        tm.load(out, quant="w4g32")


def test_saved_quantized_folder_with_a_wrong_code_shape(folders, tmp_path):
    from safetensors.torch import load_file, save_file
    out = tm.load(folders["llama"], quant="w4g32", dtype="f32").save_quantized(tmp_path / "q")
    tensors = load_file(out / "model.safetensors")
    tensors["layers.1.down.qweight"] = tensors["layers.1.down.qweight"][:, :-1].contiguous()
    save_file(tensors, out / "model.safetensors")
    with pytest.raises(TileError, match=r"model.safetensors: tensor 'layers.1.down.qweight'.*expected uint8"):
        tm.load(out)
