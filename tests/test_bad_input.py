"""Bad input gets a clear error that names the problem (file, tensor, shape), and nothing is executed or written."""
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

import minigemma as mg
from reference import reference_model, save_hf

CFG = mg.GemmaConfig.tiny()


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory):
    return save_hf(reference_model(CFG), tmp_path_factory.mktemp("good"))


def copy_of(good_dir, tmp_path):
    return shutil.copytree(good_dir, tmp_path / "ckpt")


def test_missing_path(tmp_path):
    with pytest.raises(mg.CheckpointError, match="checkpoint not found: .*nowhere"):
        mg.load_model(tmp_path / "nowhere")


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(mg.CheckpointError, match="no weights found"):
        mg.load_model(tmp_path)


def test_missing_config_json(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    (directory / "config.json").unlink()
    with pytest.raises(mg.CheckpointError, match="config.json is missing"):
        mg.load_model(directory)


def test_config_does_not_match_weights(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["num_key_value_heads"] = 2                  # the weights are MQA (1 KV head)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(mg.CheckpointError, match=r"k_proj.weight has shape \(16, 64\), but the config expects \(32, 64\)"):
        mg.load_model(directory)


def rewrite_weights(directory, change):
    from safetensors.torch import load_file
    tensors = load_file(directory / "model.safetensors")
    change(tensors)
    save_file(tensors, directory / "model.safetensors")


def test_missing_tensor(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    rewrite_weights(directory, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(mg.CheckpointError, match=r"1 tensors missing.*layers\.1\.mlp\.up_proj\.weight"):
        mg.load_model(directory)


def test_unexpected_tensor(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    rewrite_weights(directory, lambda t: t.update({"model.layers.0.self_attn.q_bias": torch.zeros(64)}))
    with pytest.raises(mg.CheckpointError, match=r"unexpected tensor model\.layers\.0\.self_attn\.q_bias"):
        mg.load_model(directory)


def test_truncated_safetensors(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    with pytest.raises(mg.CheckpointError, match=r"model\.safetensors: truncated file: tensor .* ends at byte"):
        mg.load_model(directory)


def test_corrupt_safetensors_header(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"\xff\xfe garbage"[:8]
    weights.write_bytes(bytes(data))
    with pytest.raises(mg.CheckpointError, match="corrupt safetensors header"):
        mg.load_model(directory)


def test_index_lists_missing_shard(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    index = {"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(mg.CheckpointError, match="missing: model-00002-of-00002.safetensors"):
        mg.load_model(directory)


class RunsCode:
    """Unpickling this calls os.system: exactly what a malicious .ckpt would do."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": {"embedder.weight": torch.zeros(4, 4)}, "payload": RunsCode(marker)},
               tmp_path / "evil.ckpt")
    with pytest.raises(mg.CheckpointError, match=r"evil\.ckpt: refused to load.*weights_only=True"):
        mg.load_model(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_unknown_file_type(tmp_path):
    (tmp_path / "weights.txt").write_text("hello")
    with pytest.raises(mg.CheckpointError, match="unknown checkpoint type"):
        mg.load_model(tmp_path / "weights.txt")


def test_prompt_longer_than_context():
    model = mg.Gemma(CFG)
    with pytest.raises(ValueError, match="exceeds the model's context of 128"):
        mg.generate(model, list(range(2, 100)), max_new_tokens=40)
    with pytest.raises(ValueError, match="exceeds the context of 128"):
        model(torch.zeros(1, 129, dtype=torch.long))


def test_empty_prompt():
    with pytest.raises(ValueError, match="prompt is empty"):
        mg.generate(mg.Gemma(CFG), [], max_new_tokens=4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(temperature=float("nan")), "temperature must be >= 0"),
    (dict(top_k=0), "top_k must be a positive integer"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=-3), "max_new_tokens must be a non-negative integer"),
])
def test_nonsensical_sampling_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mg.generate(mg.Gemma(CFG), [2, 5], **{"max_new_tokens": 4, **kwargs})


def test_token_ids_outside_vocabulary():
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 128\)"):
        mg.Gemma(CFG)(torch.tensor([[2, 500]]))


def test_tokenizer_file_missing(tmp_path):
    with pytest.raises(mg.TokenizerError, match="tokenizer file not found"):
        mg.Tokenizer(tmp_path / "tokenizer.model")


def test_tokenizer_file_not_sentencepiece(tmp_path):
    bogus = tmp_path / "tokenizer.model"
    bogus.write_bytes(b"this is not a protobuf")
    with pytest.raises(mg.TokenizerError, match="is not a SentencePiece model"):
        mg.Tokenizer(bogus)
