"""Load an official Gemma checkpoint into `minigemma.Gemma`, checking every tensor's name and shape.

Layouts understood (see layouts.py for their names and configs):
  * Hugging Face directory: config.json + model.safetensors, or shards listed in model.safetensors.index.json;
  * gemma_pytorch / Kaggle `.ckpt` (a weights-only pickle; the config is read off the tensor shapes);
  * `.gguf` (Gemma 3 from llama.cpp), handled in gguf.py.
The model is built on the meta device and each tensor is read once, cast, and assigned: weights are never held twice.
Every problem is a CheckpointError that names the file, and where it applies the tensor and both shapes.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .layouts import (config_from_hf, config_from_shapes, gemma_pytorch_to_hf,  # noqa: F401
                                 hf_to_minigemma_name)
from ..config import GemmaConfig
from ..gemma3 import Gemma3Config
from ..model import Gemma
from .assemble import assemble_model
from .guards import bounded_json, check_against_tensors, check_layer_count, check_reals, inside, regular_file
from .tensor_files import SAFETENSORS_DTYPES, CheckpointError, iter_safetensors, load_pickle_checkpoint, \
    read_safetensors_header

WEIGHT_SUFFIXES = {".gguf": "gguf", ".safetensors": "hf", ".ckpt": "ckpt", ".pt": "ckpt", ".pth": "ckpt",
                   ".bin": "ckpt"}


def read_json(path: Path, what: str) -> dict:
    data = bounded_json(regular_file(path, what).read_bytes(), path, what)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} should hold a JSON object")
    return data


def shards_from_index(index: Path) -> list[Path]:
    weight_map = read_json(index, "the shard index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no 'weight_map' naming the shard of each tensor (found {weight_map!r:.60})")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CheckpointError(f"{index}: weight_map[{tensor!r}] should be a shard file name, found {shard!r:.60}")
    missing = sorted(s for s in set(weight_map.values()) if not os.path.lexists(index.parent / s))
    if missing:
        raise CheckpointError(f"{index.parent}: the index lists shards that are missing: {', '.join(missing)}")
    return [inside(index.parent, s, "shard") for s in sorted(set(weight_map.values()))]


def find_weights(path: Path) -> tuple[str, list[Path]]:
    """('hf' | 'ckpt' | 'gguf', files) for a checkpoint path, or a clear error."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise CheckpointError(f"{path}: unknown checkpoint type (expected .safetensors, .ckpt or .gguf)")
        return WEIGHT_SUFFIXES[path.suffix], [regular_file(path, "checkpoint file")]
    if os.path.lexists(path / "model.safetensors.index.json"):
        return "hf", shards_from_index(path / "model.safetensors.index.json")
    for kind, pattern in (("hf", "*.safetensors"), ("ckpt", "*.ckpt"), ("gguf", "*.gguf")):
        files = [inside(path, f.name, "weights file") for f in sorted(path.glob(pattern))]
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
            shapes = {n: tuple(t.shape) for n, t in state.items()}
            config = config_from_shapes(shapes, head_dim, max_len)
            check_against_tensors(files[0], config, {hf_to_minigemma_name(n, False) or n: s for n, s in shapes.items()})
        except KeyError as err:
            raise CheckpointError(f"{files[0]}: not a gemma_pytorch checkpoint: tensor {err} is missing") from None
        except CheckpointError:
            raise
        except (ValueError, TypeError, IndexError, RuntimeError) as err:
            raise CheckpointError(f"{files[0]}: {err}") from None
        return config, iter(state.items())
    if kind == "gguf":
        raise CheckpointError(f"{files[0]}: a GGUF file; load it with minigemma.load_model")
    folder = path if path.is_dir() else path.parent
    config_file = folder / "config.json"
    if not os.path.lexists(config_file):
        raise CheckpointError(f"{config_file} is missing: a Hugging Face checkpoint needs its config.json")
    shapes = header_shapes(files)
    try:
        hf = read_json(inside(folder, "config.json", "config.json"), "config.json")
        text = hf.get("text_config", hf)
        if not isinstance(text, dict):
            raise CheckpointError(f"{config_file}: text_config should be a JSON object, found {text!r:.40}")
        check_layer_count(config_file, "num_hidden_layers", text.get("num_hidden_layers"), shapes)
        config = config_from_hf(hf)
    except KeyError as err:
        raise CheckpointError(f"{config_file}: required key {err} is missing") from None
    except CheckpointError:
        raise
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{config_file}: {err}") from None
    check_reals(config_file, config)
    check_against_tensors(config_file, config, shapes)
    return config, (item for file in files for item in iter_safetensors(file))


def header_shapes(files: list[Path]) -> dict[str, tuple]:
    """{minigemma-style name: shape} from the safetensors headers, every tensor checked to be floating point."""
    shapes = {}
    for file in files:
        for name, info in read_safetensors_header(file)[0].items():
            if not SAFETENSORS_DTYPES[info["dtype"]].is_floating_point:
                raise CheckpointError(f"{file}: tensor {name} has dtype {info['dtype']}; Gemma's weights are "
                                      "floating point (F32, F16 or BF16)")
            shapes[hf_to_minigemma_name(name, False) or name] = tuple(info["shape"])
    return shapes


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
