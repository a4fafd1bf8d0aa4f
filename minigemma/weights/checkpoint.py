"""Load an official Gemma checkpoint into `minigemma.Gemma`, checking every tensor's name and shape.

Layouts understood (see layouts.py for their names and configs):
  * Hugging Face directory: config.json + model.safetensors, or shards listed in model.safetensors.index.json;
  * gemma_pytorch / Kaggle `.ckpt` (a weights-only pickle; the config is read off the tensor shapes);
  * `.gguf` (Gemma 3 from llama.cpp), handled in gguf.py.
The model is built on the meta device and each tensor is read once, cast, and assigned: weights are never held twice.
Every problem is a CheckpointError that names the file, and where it applies the tensor and both shapes.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .layouts import (config_from_hf, config_from_shapes, gemma_pytorch_to_hf,  # noqa: F401
                                 hf_to_minigemma_name)
from ..config import GemmaConfig
from ..gemma3 import Gemma3Config
from ..model import Gemma
from .assemble import assemble_model
from .tensor_files import CheckpointError, iter_safetensors, load_pickle_checkpoint

WEIGHT_SUFFIXES = {".gguf": "gguf", ".safetensors": "hf", ".ckpt": "ckpt", ".pt": "ckpt", ".pth": "ckpt",
                   ".bin": "ckpt"}


def read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} should hold a JSON object")
    return data


def shards_from_index(index: Path) -> list[Path]:
    weight_map = read_json(index, "the shard index").get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: no 'weight_map' naming the shard of each tensor")
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (index.parent / s).exists()]
    if missing:
        raise CheckpointError(f"{index.parent}: the index lists shards that are missing: {', '.join(missing)}")
    return [index.parent / s for s in shards]


def find_weights(path: Path) -> tuple[str, list[Path]]:
    """('hf' | 'ckpt' | 'gguf', files) for a checkpoint path, or a clear error."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise CheckpointError(f"{path}: unknown checkpoint type (expected .safetensors, .ckpt or .gguf)")
        return WEIGHT_SUFFIXES[path.suffix], [path]
    if (path / "model.safetensors.index.json").exists():
        return "hf", shards_from_index(path / "model.safetensors.index.json")
    for kind, pattern in (("hf", "*.safetensors"), ("ckpt", "*.ckpt"), ("gguf", "*.gguf")):
        files = sorted(path.glob(pattern))
        if kind != "hf" and len(files) > 1:
            raise CheckpointError(f"{path}: several {pattern} files ({', '.join(f.name for f in files)}); "
                                  "pass the one to load")
        if files:
            return kind, files
    raise CheckpointError(f"{path}: no weights found (looked for *.safetensors with config.json, *.ckpt, *.gguf)")


def read_checkpoint(path) -> tuple[GemmaConfig, object]:
    """(config, iterator of Hugging Face-named tensors) for a HF directory or a gemma_pytorch .ckpt.
    For a HF directory only config.json is read here; tensors are read from disk as the iterator is consumed."""
    path = Path(path)
    kind, files = find_weights(path)
    if kind == "ckpt":
        try:
            state, head_dim, max_len = gemma_pytorch_to_hf(load_pickle_checkpoint(files[0]))
            config = config_from_shapes({n: tuple(t.shape) for n, t in state.items()}, head_dim, max_len)
        except KeyError as err:
            raise CheckpointError(f"{files[0]}: not a gemma_pytorch checkpoint: tensor {err} is missing") from None
        return config, iter(state.items())
    if kind == "gguf":
        raise CheckpointError(f"{files[0]}: a GGUF file; load it with minigemma.load_model")
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{config_file} is missing: a Hugging Face checkpoint needs its config.json")
    try:
        config = config_from_hf(read_json(config_file, "config.json"))
    except KeyError as err:
        raise CheckpointError(f"{config_file}: required key {err} is missing") from None
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{config_file}: {err}") from None
    return config, (item for file in files for item in iter_safetensors(file))


def check_tied_head(path, lm_head: torch.Tensor | None, embedding: torch.Tensor) -> None:
    """Gemma ties its output head to the embedding; a checkpoint with a *different* lm_head is not Gemma."""
    if lm_head is not None and not torch.equal(lm_head.to(embedding.dtype), embedding):
        raise CheckpointError(f"{path}: lm_head.weight differs from the embedding, but Gemma's output head is "
                              "tied to it (minigemma has no separate head)")


def load_model(path, dtype: torch.dtype | None = None, device="cpu", quantized: bool = False) -> Gemma:
    """Build a Gemma from a checkpoint. dtype None keeps the checkpoint's own dtype (that of its embedding).
    quantized=True (GGUF only) keeps the file's quantized blocks instead of dequantizing them."""
    kind, files = find_weights(Path(path))
    if kind == "gguf":                                                 # a .gguf, or a folder holding one
        from .gguf.model import load_gguf_model
        return load_gguf_model(files[0], dtype=dtype, device=device, quantized=quantized)
    if quantized:
        raise ValueError(f"{path}: quantized=True keeps a GGUF's blocks; use minigemma.quantize(model, 'int8') "
                         "on a loaded model instead")
    config, tensors = read_checkpoint(path)
    gemma3 = isinstance(config, Gemma3Config)
    found = {"lm_head": None, "embedding": None}

    def entries():
        for hf_name, tensor in tensors:
            name = hf_to_minigemma_name(hf_name, gemma3)
            if name is None:                                           # the output head: tied, checked below
                found["lm_head"] = tensor
                continue
            if name == "embed.weight":
                found["embedding"] = tensor
            yield hf_name, name, tensor.shape, lambda tensor=tensor: tensor

    model = assemble_model(path, config, entries(), dtype, device)
    check_tied_head(path, found["lm_head"], found["embedding"])
    return model
