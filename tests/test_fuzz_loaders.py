"""Fuzzing the loaders with Hypothesis (issue 14): mutate valid safetensors headers, shard indexes, config.json,
GGUF headers and .ckpt contents, and require that loading either succeeds or raises the documented error
(CheckpointError, one line), within a deadline per example, and never reads outside the checkpoint folder.

Profiles: `ci` (the default: ~300 examples in all, a few seconds) and `thorough` for local runs:
    HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_fuzz_loaders.py -q      (~20x the examples)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigemma as mg
from hostile import gemma_pytorch_state, hf_config, join_safetensors, split_safetensors, tiny_state, write_hf
from minigemma.weights.summary import describe

# The deadline is per example: a tiny checkpoint loads in ~20 ms; 2 s leaves room for a loaded 2-core CI machine,
# and still catches what the issue reported (a 15-minute `info`, a hang on a FIFO).
COMMON = dict(deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
              derandomize=True, database=None)
settings.register_profile("ci", max_examples=50, **COMMON)      # 6 tests: 300 examples
settings.register_profile("thorough", max_examples=1200, **{**COMMON, "derandomize": False, "deadline": 10_000})
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                | st.text(max_size=8) | st.sampled_from(["F32", "I32", "BF16", "../x", "/etc/passwd", "."]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=10)


def loads_or_refuses(path) -> bool:
    """True when the checkpoint loaded (and `info` agrees), False when it was refused with one CheckpointError."""
    try:
        model = mg.load_model(path)
    except mg.CheckpointError as err:
        assert "\n" not in str(err) and str(err)
        return False
    info = describe(Path(path))
    assert info["parameters"] == model.num_parameters()
    return True


SCRATCH: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def scratch_root(tmp_path_factory):
    SCRATCH.append(tmp_path_factory.mktemp("fuzz"))
    yield
    shutil.rmtree(SCRATCH.pop(), ignore_errors=True)


def scratch() -> Path:
    """A fresh folder per example (Hypothesis runs many examples inside one test call)."""
    return Path(tempfile.mkdtemp(dir=SCRATCH[-1]))


# ---- safetensors headers ------------------------------------------------------------------------------------
NAMES = sorted(tiny_state())


@given(name=st.sampled_from(NAMES), field=st.sampled_from(["dtype", "shape", "data_offsets", "__drop__"]),
       value=JSON_VALUES)
def test_fuzz_safetensors_header_fields(name, field, value):
    folder = write_hf(scratch() / "ckpt")
    header, data = split_safetensors(folder / "model.safetensors")
    if field == "__drop__":
        del header[name]
    else:
        header[name][field] = value
    join_safetensors(folder / "model.safetensors", json.dumps(header).encode(), data)
    loads_or_refuses(folder)


@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=4)), min_size=1, max_size=4))
def test_fuzz_safetensors_header_bytes(edits):
    folder = write_hf(scratch() / "ckpt")
    raw = bytearray((folder / "model.safetensors").read_bytes())
    header_end = 8 + int.from_bytes(raw[:8], "little")
    for at, patch in edits:                                          # overwrite bytes of the length or the JSON
        at %= header_end
        raw[at:at + len(patch)] = patch
    (folder / "model.safetensors").write_bytes(bytes(raw))
    loads_or_refuses(folder)


# ---- shard indexes: nothing outside the folder, ever ---------------------------------------------------------
SHARD_NAMES = st.sampled_from(["model.safetensors", "./model.safetensors", "../outside/model.safetensors",
                               "sub/../model.safetensors", "", ".", "..", "/", "missing.safetensors"])


@given(values=st.lists(SHARD_NAMES | JSON_VALUES, min_size=0, max_size=len(NAMES)))
def test_fuzz_index_weight_map(values):
    root = scratch()
    folder, outside = write_hf(root / "ckpt"), write_hf(root / "outside")
    absolute = str(outside / "model.safetensors")
    weight_map = {name: (absolute if value == "/" else value) for name, value in zip(NAMES, values)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if loads_or_refuses(folder):
        for shard in weight_map.values():                            # it loaded: every shard it named was inside
            assert (folder / shard).resolve().parent == folder.resolve()


# ---- config.json --------------------------------------------------------------------------------------------
CONFIG_KEYS = sorted(hf_config()) + ["text_config", "rope_parameters", "layer_types", "sliding_window",
                                     "sliding_window_pattern", "query_pre_attn_scalar", "rope_scaling"]


@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS), JSON_VALUES | st.integers(1, 10**13), max_size=3),
       gemma3=st.booleans())
def test_fuzz_config_json(changes, gemma3):
    config = {**hf_config(), **({"model_type": "gemma3_text"} if gemma3 else {}), **changes}
    folder = write_hf(scratch() / "ckpt", config=config)
    loads_or_refuses(folder)


# ---- gemma_pytorch .ckpt ------------------------------------------------------------------------------------
CKPT_NAMES = sorted(gemma_pytorch_state())
TENSORS = st.one_of(
    st.lists(st.integers(0, 40), max_size=3).map(lambda shape: torch.ones(shape)),
    st.sampled_from([torch.int32, torch.int8, torch.bool, torch.complex64, torch.float16]).map(
        lambda dtype: torch.ones(4, 16).to(dtype)),
    st.just(torch.full((2, 16), float("nan"))))


@given(name=st.sampled_from(CKPT_NAMES + ["model.layers.0.mlp.up_proj.weight_scaler", "model.layers.7.x.weight"]),
       tensor=TENSORS | st.none())
def test_fuzz_ckpt_contents(name, tensor):
    state = gemma_pytorch_state()
    if tensor is None:
        state.pop(name, None)
    else:
        state[name] = tensor
    path = scratch() / "model.ckpt"
    torch.save({"model_state_dict": state}, path)
    loads_or_refuses(path)


# ---- GGUF headers -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("gguf")
    from reference import randomize_, train_tokenizer
    from test_gguf_errors import tiny_gemma3, write_gguf
    folder = tmp_path_factory.mktemp("fuzz-gguf")
    tokenizer = mg.Tokenizer(train_tokenizer(folder))
    model = randomize_(mg.Gemma3(tiny_gemma3(tokenizer.vocab_size)), seed=1).eval()
    path = write_gguf(model, folder / "tiny.gguf", tokenizer.sp)
    from minigemma.weights.gguf.file import read_gguf
    data_start = min(info.start for info in read_gguf(path).tensors.values())
    return GGUFBytes(path.read_bytes(), data_start)


class GGUFBytes:
    """The tiny GGUF's bytes and where its tensor data begins (a short repr for Hypothesis's reports)."""

    def __init__(self, data: bytes, header_end: int):
        self.data, self.header_end = data, header_end

    def __repr__(self):
        return f"GGUFBytes({len(self.data)} bytes, header {self.header_end})"


@given(edits=st.lists(st.tuples(st.integers(0, 10**7), st.binary(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_fuzz_gguf_header_bytes(tiny_gguf, edits):
    data, header_end = tiny_gguf.data, tiny_gguf.header_end
    raw = bytearray(data)
    for at, patch in edits:                                          # anywhere in the header: counts, types, keys
        at %= header_end
        raw[at:at + len(patch)] = patch
    path = scratch() / "tiny.gguf"
    path.write_bytes(bytes(raw))
    loads_or_refuses(path)
    try:                                                             # the vocabulary is read from the same header
        mg.Tokenizer(path)
    except (mg.CheckpointError, mg.TokenizerError) as err:
        assert "\n" not in str(err)
