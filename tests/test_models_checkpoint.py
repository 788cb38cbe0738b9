"""Loading checkpoints: every format a Hugging Face folder may hold, and for every bad one an error that
names the file (and the tensor, or the JSON line and column) and says what to do."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import tilelang.models as tm
from tilelang import TileError
from tiny_models import write_gpt2, write_llama

PROMPT = [5, 77, 140, 23]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {"gpt2": write_gpt2(root / "gpt2"), "llama": write_llama(root / "llama")}


@pytest.fixture(scope="module")
def expected(bases):
    return {arch: tm.load(folder).logits(PROMPT) for arch, folder in bases.items()}


def copy(bases, arch, tmp_path):
    return shutil.copytree(bases[arch], tmp_path / arch)


def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def edit_tensors(folder, fn):
    tensors = load_file(folder / "model.safetensors")
    fn(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def raises(folder, *fragments, **kwargs):
    with pytest.raises(TileError) as e:
        tm.load(folder, **kwargs)
    for f in fragments:
        assert str(f) in e.value.render(), e.value.render()
    return e.value


# ----------------------------------------------------------------------------- formats that load

def test_sharded_safetensors_with_an_index(bases, expected, tmp_path):
    folder = copy(bases, "llama", tmp_path)
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    assert torch.equal(tm.load(folder).logits(PROMPT), expected["llama"])


def test_pytorch_model_bin_loads_with_weights_only(bases, expected, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert torch.equal(tm.load(folder).logits(PROMPT), expected["gpt2"])


def test_gpt2_checkpoints_without_the_transformer_prefix(bases, expected, tmp_path):
    """openai-community/gpt2's own files name wte.weight, not transformer.wte.weight."""
    folder = copy(bases, "gpt2", tmp_path)
    edit_tensors(folder, lambda t: t.update({k.removeprefix("transformer."): t.pop(k) for k in list(t)}))
    assert torch.equal(tm.load(folder).logits(PROMPT), expected["gpt2"])


# ----------------------------------------------------------------------------- folders and files

def test_missing_folder(tmp_path):
    raises(tmp_path / "nope", "model folder not found", "nope")


def test_missing_config(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    (folder / "config.json").unlink()
    raises(folder, "config.json not found", folder / "config.json")


def test_malformed_config_is_located(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    (folder / "config.json").write_text('{\n  "model_type": "gpt2",\n  "n_embd": 64,,\n}')
    e = raises(folder, "malformed JSON", f"{folder / 'config.json'}:3:")
    assert e.loc.line == 3


def test_unsupported_architecture(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    edit_json(folder / "config.json", lambda c: c.update(model_type="bert", architectures=["BertForMaskedLM"]))
    raises(folder, "unsupported architecture 'bert'", "BertForMaskedLM", "gpt2", "llama")


def test_no_weight_files(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    (folder / "model.safetensors").unlink()
    raises(folder, "no weights in", "model.safetensors.index.json", "pytorch_model.bin")


def test_damaged_safetensors(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:100])
    raises(folder, folder / "model.safetensors")


def test_a_pickle_with_code_is_refused(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    (folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2), "extra": Exception("not a tensor")}, folder / "pytorch_model.bin")
    raises(folder, folder / "pytorch_model.bin", "weights_only")


def test_index_naming_a_missing_shard(bases, tmp_path):
    folder = copy(bases, "llama", tmp_path)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    shards = {"model.norm.weight": "model-00001-of-00002.safetensors",
              "lm_head.weight": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    raises(folder, "model-00002-of-00002.safetensors", "missing")


def test_malformed_index_is_located(bases, tmp_path):
    folder = copy(bases, "llama", tmp_path)
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "b"')
    raises(folder, "malformed JSON", "model.safetensors.index.json:1:")


# ----------------------------------------------------------------------------- tensors

def test_missing_tensor_names_it_and_the_file(bases, tmp_path):
    folder = copy(bases, "llama", tmp_path)
    edit_tensors(folder, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    raises(folder, "'model.layers.1.mlp.up_proj.weight'", "model.safetensors")


def test_wrong_shape_names_tensor_file_and_shapes(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    edit_tensors(folder, lambda t: t.update({"transformer.h.0.attn.c_attn.weight": torch.zeros(64, 190)}))
    raises(folder, "model.safetensors", "'transformer.h.0.attn.c_attn.weight'", "[64, 190]", "[64, 192]",
           "n_embd, 3 * n_embd")


def test_wrong_dtype_names_the_tensor(bases, tmp_path):
    folder = copy(bases, "llama", tmp_path)
    edit_tensors(folder, lambda t: t.update({"model.norm.weight": torch.ones(64, dtype=torch.int32)}))
    raises(folder, "'model.norm.weight'", "int32", "expected a float")


# ----------------------------------------------------------------------------- config contents

@pytest.mark.parametrize("arch,change,fragments", [
    ("llama", dict(hidden_act="gelu"), ["'hidden_act'", "gelu"]),
    ("llama", dict(attention_bias=True), ["'attention_bias'"]),
    ("llama", dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}), ["yarn", "supported"]),
    ("llama", dict(num_key_value_heads=3), ["'num_key_value_heads'", "does not divide"]),
    ("llama", dict(head_dim=24), ["head dim 24"]),
    ("llama", dict(num_hidden_layers="two"), ["'num_hidden_layers'", "'two'"]),
    ("gpt2", dict(activation_function="relu"), ["'activation_function'", "relu"]),
    ("gpt2", dict(n_embd=None), ["'n_embd' is missing"]),
])
def test_unsupported_or_bad_config_values(bases, tmp_path, arch, change, fragments):
    folder = copy(bases, arch, tmp_path)
    edit_json(folder / "config.json", lambda c: c.update(change) or [c.pop(k) for k, v in change.items() if v is None])
    raises(folder, folder / "config.json", *fragments)


def test_tokenizer_missing_or_malformed(bases, tmp_path):
    folder = copy(bases, "gpt2", tmp_path)
    (folder / "tokenizer.json").unlink()
    model = tm.load(folder)
    assert model.generate(PROMPT, 2).tokens  # token ids need no tokenizer
    with pytest.raises(TileError, match="no tokenizer.json"):
        model.generate("some text", 2)
    (folder / "tokenizer.json").write_text("{ nope")
    raises(folder, "malformed JSON", "tokenizer.json:1:")


def test_malformed_generation_config(bases, tmp_path):
    folder = copy(bases, "llama", tmp_path)
    (folder / "generation_config.json").write_text('{"eos_token_id": [2, "x"]}')
    raises(folder, "generation_config.json", "'eos_token_id'")
