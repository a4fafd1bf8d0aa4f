"""Hostile checkpoint files (issue 14): each gives one CheckpointError line naming the file, key or tensor, what was
expected and what was found, within a second; nothing outside the checkpoint folder is opened; valid files still
load (the positive controls show the checks do not refuse good input)."""
import json
import os
import time

import pytest
import torch
from safetensors.torch import save_file

import minigemma as mg
from hostile import (CFG, gemma_pytorch_state, hf_config, join_safetensors, split_safetensors, tiny_state,
                     write_hf)
from minigemma.weights.summary import describe


def refused(call, pattern: str, seconds: float = 5.0) -> str:
    """`call` raises one CheckpointError matching `pattern`, on one line, in well under `seconds` (a generous bound
    for a loaded 2-core CI machine: every case here is a check on a few kB, milliseconds when idle)."""
    started = time.perf_counter()
    with pytest.raises(mg.CheckpointError, match=pattern) as caught:
        call()
    assert "\n" not in str(caught.value)
    assert time.perf_counter() - started < seconds
    return str(caught.value)


@pytest.fixture
def good(tmp_path):
    return write_hf(tmp_path / "ckpt")


def test_the_tiny_checkpoint_loads(good):                   # the positive control for everything below
    model = mg.load_model(good)
    assert model.config == CFG and describe(good)["parameters"] == model.num_parameters()


# ---- nothing outside the checkpoint folder -------------------------------------------------------------------
def write_index(folder, weight_map):
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_shards_outside_the_folder_are_never_opened(tmp_path, where):
    folder, outside = tmp_path / "ckpt", write_hf(tmp_path / "outside")
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config()))
    shard = "../outside/model.safetensors" if where == "relative" else str(outside / "model.safetensors")
    write_index(folder, {name: shard for name in tiny_state()})
    refused(lambda: mg.load_model(folder), r"index\.json|points outside the checkpoint folder")
    refused(lambda: describe(folder), "points outside the checkpoint folder")


def test_a_shard_in_a_subfolder_is_inside(tmp_path):       # control: containment is not "same folder only"
    folder = write_hf(tmp_path / "ckpt")
    (folder / "shards").mkdir()
    (folder / "model.safetensors").rename(folder / "shards" / "a.safetensors")
    write_index(folder, {name: "shards/a.safetensors" for name in tiny_state()})
    assert mg.load_model(folder).config == CFG


def test_symlinks_pointing_out_are_refused_and_inside_followed(tmp_path):
    outside = write_hf(tmp_path / "outside")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config()))
    (folder / "model.safetensors").symlink_to(outside / "model.safetensors")
    refused(lambda: mg.load_model(folder), r"model\.safetensors' points outside the checkpoint folder")
    (folder / "model.safetensors").unlink()
    (outside / "model.safetensors").rename(folder / "real.bin")
    (folder / "model.safetensors").symlink_to("real.bin")            # inside: fine
    assert mg.load_model(folder).config == CFG


@pytest.mark.parametrize("weight_map, message", [
    ({}, "no 'weight_map'"), ({"model.norm.weight": 3}, r"weight_map\['model.norm.weight'\] should be a shard file"),
    ({"model.norm.weight": ["a"]}, "should be a shard file name"), ({"model.norm.weight": "."}, "found a folder"),
    ({"model.norm.weight": ""}, "should be a file name")])
def test_odd_weight_maps(good, weight_map, message):
    write_index(good, weight_map)
    refused(lambda: mg.load_model(good), message)


def test_symlink_loop(good):
    (good / "model.safetensors").unlink()
    (good / "model.safetensors").symlink_to("model.safetensors")
    refused(lambda: mg.load_model(good), "model.safetensors.*(loop|Symlink|resolve)")


def test_model_safetensors_a_directory(good):
    (good / "model.safetensors").unlink()
    (good / "model.safetensors").mkdir()
    refused(lambda: mg.load_model(good), "should be a regular file, found a folder")


def test_fifo_is_never_opened(good):
    (good / "model.safetensors").unlink()
    os.mkfifo(good / "model.safetensors")                            # opening it would block forever
    refused(lambda: mg.load_model(good), "should be a regular file, found a FIFO")
    refused(lambda: mg.load_model(good / "model.safetensors"), "found a FIFO")
    (good / "model.safetensors").unlink()
    save_file(tiny_state(), good / "model.safetensors")
    os.mkfifo(good / "config.json.fifo")
    (good / "config.json").unlink()
    (good / "config.json").symlink_to("config.json.fifo")
    refused(lambda: describe(good), "config.json.*found a FIFO")


# ---- huge configs: checked against the tensors before anything is built -------------------------------------
@pytest.mark.parametrize("change, message", [
    (dict(num_hidden_layers=1_000_000), "num_hidden_layers is 1000000, but the file holds tensors for 2 layers"),
    (dict(num_hidden_layers=10**12), "num_hidden_layers is 1000000000000"),
    (dict(vocab_size=10**12), r"vocab_size=1,000,000,000,000.*embedding has shape \(32, 16\)"),
    (dict(vocab_size=True), "vocab_size must be a positive integer, got True"),
    (dict(text_config="gemma"), "text_config should be a JSON object"),
    (dict(rope_parameters=[1, 2]), "rope_parameters should be a JSON object"),
    (dict(rms_norm_eps="abc"), "rms_norm_eps must be a finite number > 0, got 'abc'"),
    (dict(rms_norm_eps=-1), "rms_norm_eps must be a finite number > 0"),
    (dict(rope_theta=0), "rope_theta must be a finite number > 0"),
    (dict(rope_theta="x"), "rope_theta should be a number"),
    (dict(model_type="gemma3_text", sliding_window_pattern=0), "sliding_window_pattern should be a positive"),
])
def test_config_json_values(good, change, message):
    (good / "config.json").write_text(json.dumps({**hf_config(), **change}))
    refused(lambda: mg.load_model(good), message)
    refused(lambda: describe(good), message)                         # `minigemma info` says the same


def test_config_too_deep_or_too_big(good):
    (good / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(lambda: mg.load_model(good), "config.json nests 100000 levels deep, more than the 32 allowed")


# ---- safetensors headers ------------------------------------------------------------------------------------
def rewrite_header(folder, change):
    path = folder / "model.safetensors"
    header, data = split_safetensors(path)
    text = change(header)
    join_safetensors(path, text if isinstance(text, bytes) else json.dumps(header).encode(), data)


@pytest.mark.parametrize("shape, message", [([0, 10**30], "shape"), ([True], r"shape \[True\]"),
                                            ([16.0], "shape"), ([-1], "shape")])
def test_odd_shapes(good, shape, message):
    def change(header):
        header["model.norm.weight"]["shape"] = shape
    rewrite_header(good, change)
    refused(lambda: mg.load_model(good), message)


def test_deeply_nested_header(good):
    rewrite_header(good, lambda header: b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    refused(lambda: mg.load_model(good), "safetensors header nests 100001 levels deep")


def test_header_claiming_100_mb(good):
    path = good / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes((200 * 2**20).to_bytes(8, "little") + data[8:])
    refused(lambda: mg.load_model(good), "truncated or corrupt safetensors|more than the")


def test_int32_tensors_are_refused(good):
    save_file({n: (t * 100).to(torch.int32) for n, t in tiny_state().items()}, good / "model.safetensors")
    refused(lambda: mg.load_model(good), "has dtype I32; Gemma's weights are floating point")
    refused(lambda: describe(good), "has dtype I32")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(good, bad):
    state = tiny_state()
    state["model.layers.1.mlp.up_proj.weight"][3, 4] = bad
    save_file(state, good / "model.safetensors")
    refused(lambda: mg.load_model(good), r"tensor model\.layers\.1\.mlp\.up_proj\.weight holds NaN or infinite")


# ---- gemma_pytorch .ckpt ------------------------------------------------------------------------------------
def test_legacy_torch_save_loads(tmp_path):
    torch.save({"model_state_dict": gemma_pytorch_state()}, tmp_path / "legacy.ckpt",
               _use_new_zipfile_serialization=False)                 # not a zip: cannot be memory-mapped
    assert mg.load_model(tmp_path / "legacy.ckpt").config == CFG


def test_legacy_torch_save_with_code_is_refused(tmp_path):
    from test_bad_input import RunsCode
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": gemma_pytorch_state(), "x": RunsCode(marker)}, tmp_path / "evil.ckpt",
               _use_new_zipfile_serialization=False)
    refused(lambda: mg.load_model(tmp_path / "evil.ckpt"), "holds code or objects other than tensors")
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(freqs_cis=torch.ones(8)), r"freqs_cis has shape \(8,\), expected"),
    (lambda s: s.update({"model.layers.0.self_attn.qkv_proj.weight": torch.ones(17, 16)}), "qkv_proj.weight has shape"),
    (lambda s: s.update({"model.layers.0.mlp.up_proj.weight_scaler": torch.ones(3)}), "weight_scaler has shape"),
    (lambda s: s.update({"model.layers.999999.mlp.up_proj.weight": torch.ones(1)}), "num_layers=1,000,000"),
])
def test_odd_ckpt_contents(tmp_path, change, message):
    state = gemma_pytorch_state()
    change(state)
    torch.save({"model_state_dict": state}, tmp_path / "odd.ckpt")
    refused(lambda: mg.load_model(tmp_path / "odd.ckpt"), message)
