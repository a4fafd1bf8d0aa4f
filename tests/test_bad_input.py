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
    with pytest.raises(mg.CheckpointError, match="safetensors header is not valid JSON"):
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
        mg.generate(model, [2] * 129, max_new_tokens=1)              # the prompt alone is too long
    with pytest.raises(ValueError, match="exceeds the model's context of 128"):
        mg.generate(model, list(range(2, 100)), max_new_tokens=40)   # prompt + continuation too long
    assert len(mg.generate(model, [2] * 128, max_new_tokens=1, stop_ids=())) == 1   # exactly fits
    with pytest.raises(ValueError, match="exceeds the context of 128"):
        model(torch.zeros(1, 129, dtype=torch.long))


def test_empty_prompt():
    with pytest.raises(ValueError, match="prompt is empty"):
        mg.generate(mg.Gemma(CFG), [], max_new_tokens=4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature must be a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
    (dict(top_k=0), "top_k must be a positive integer"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(max_new_tokens=-3), "max_new_tokens must be a non-negative integer"),
    (dict(temperature=float("inf")), "temperature must be a finite number"),
    (dict(top_k=True), "top_k must be a positive integer"),
    (dict(seed="42"), "seed must be an integer"),
])
def test_nonsensical_sampling_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mg.generate(mg.Gemma(CFG), [2, 5], **{"max_new_tokens": 4, **kwargs})


def test_float_token_ids_are_refused():
    with pytest.raises(ValueError, match="token ids must be integers"):
        mg.generate(mg.Gemma(CFG), [2.5, 3.7], max_new_tokens=2)


def write_json(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("num_attention_heads"), "required key 'num_attention_heads' is missing"),
    (lambda c: c.update(model_type="gemma2"), "model_type 'gemma2' is not supported"),
    ("{not json", "config.json is not valid JSON"),
])
def test_broken_config_json(good_dir, tmp_path, change, message):
    directory = copy_of(good_dir, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    if isinstance(change, str):
        config = change
    else:
        change(config)
    write_json(directory / "config.json", config)
    with pytest.raises(mg.CheckpointError, match=f"config.json: .*{message}|{message}"):
        mg.load_model(directory)


def rewrite_header(weights, change):
    """Rewrite a safetensors file's JSON header (keeping the data) after `change(header)`."""
    import struct
    data = weights.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = change(json.loads(data[8:8 + n]))
    raw = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


@pytest.mark.parametrize("change, message", [
    (lambda h: [h], r"not a JSON object"),
    (lambda h: {k: {kk: vv for kk, vv in v.items() if kk != "data_offsets"} if k != "__metadata__" else v
                for k, v in h.items()}, "lacks dtype/shape/data_offsets"),
    (lambda h: {k: {**v, "data_offsets": [-8, v["data_offsets"][1] - 8]} if k != "__metadata__" else v
                for k, v in h.items()}, "has offsets"),
])
def test_malformed_safetensors_header(good_dir, tmp_path, change, message):
    directory = copy_of(good_dir, tmp_path)
    rewrite_header(directory / "model.safetensors", change)
    with pytest.raises(mg.CheckpointError, match=message):
        mg.load_model(directory)


def test_index_without_weight_map(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    write_json(directory / "model.safetensors.index.json", {"metadata": {}})
    with pytest.raises(mg.CheckpointError, match="no 'weight_map'"):
        mg.load_model(directory)


def test_ckpt_that_is_not_gemma_pytorch(tmp_path):
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(2, 2)}}, tmp_path / "other.ckpt")
    with pytest.raises(mg.CheckpointError, match=r"other\.ckpt: not a gemma_pytorch checkpoint: tensor .* missing"):
        mg.load_model(tmp_path / "other.ckpt")


def test_several_ckpt_files_are_ambiguous(tmp_path):
    for name in ("a.ckpt", "b.ckpt"):
        torch.save({"model_state_dict": {}}, tmp_path / name)
    with pytest.raises(mg.CheckpointError, match="several \\*.ckpt files"):
        mg.load_model(tmp_path)


def test_untied_output_head_is_refused(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    rewrite_weights(directory, lambda t: t.update({"lm_head.weight": torch.randn(CFG.vocab_size, CFG.hidden_size)}))
    with pytest.raises(mg.CheckpointError, match="lm_head.weight differs from the embedding"):
        mg.load_model(directory)


def test_tied_head_copy_is_accepted(good_dir, tmp_path):
    directory = copy_of(good_dir, tmp_path)
    rewrite_weights(directory, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"].clone()}))
    assert mg.load_model(directory).num_parameters() == mg.Gemma(CFG).num_parameters()


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
