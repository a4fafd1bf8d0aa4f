"""Guards for hostile checkpoint files: what every reader checks before it opens, parses, allocates or loops.

* `regular_file`: stat first, and never open a folder, FIFO or device where a file belongs (a FIFO would hang);
* `inside`: a file named by the checkpoint (a shard in weight_map, a globbed *.safetensors that is a symlink)
  must resolve to a regular file inside the checkpoint folder: no `../`, no absolute paths, no symlinks out;
* `bounded_json`: header size and nesting depth are bounded *before* json.loads (no RecursionError, no 1 GB parse);
* `check_against_tensors`: the config's layer count and vocabulary agree with the tensors the file holds, checked
  before a model is built (a 1,000,000-layer config.json cannot make us build 1,000,000 layers);
* `check_weight`: a weight is floating point and finite (int32 or NaN weights would give wrong output, exit 0).
Every failure is a CheckpointError naming the file, key or tensor, what was expected and what was found.
Not here: the formats themselves (tensor_files.py, gguf/file.py).
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np
import torch

MAX_HEADER_BYTES = 100 * 2**20          # real safetensors headers are kB; a 2B GGUF vocabulary ~ 6 MB
MAX_JSON_DEPTH = 32                     # real headers and configs nest 3-4 deep
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
STRING_LITERAL = re.compile(rb'"(?:[^"\\]|\\.)*"')
NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not fit the model; the message says which file/tensor.
    Always one line of at most 1,000 characters, whatever names a hostile file holds."""

    def __init__(self, message: str):
        line = " ".join(str(message).split())
        super().__init__(line if len(line) <= 1000 else line[:997] + "...")


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file(path, what: str = "file") -> Path:
    """`path` if it is a regular file (symlinks followed); else one CheckpointError saying what it is instead."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except OSError as err:                                        # ELOOP (a symlink loop), EACCES, ...
        raise CheckpointError(f"{path}: cannot read the {what} ({err.strerror})") from None
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: the {what} should be a regular file, found {file_kind(mode)}")
    return path


def inside(folder: Path, name, what: str) -> Path:
    """folder / name, checked to resolve to a regular file inside `folder` (refusing ../, absolute, symlinks out)."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{folder}: {what} should be a file name (a string), found {name!r}")
    candidate = folder / name
    try:
        resolved, root = candidate.resolve(strict=True), folder.resolve(strict=True)
    except FileNotFoundError:
        raise CheckpointError(f"{candidate}: the {what} {name!r} is missing") from None
    except (OSError, RuntimeError) as err:                       # a symlink loop
        raise CheckpointError(f"{candidate}: cannot resolve the {what} {name!r} ({err})") from None
    if resolved != root and root not in resolved.parents:
        raise CheckpointError(f"{folder}: the {what} {name!r} points outside the checkpoint folder (to {resolved}); "
                              "only files inside it are read")
    return regular_file(candidate, what)


def json_depth(data: bytes) -> int:
    """Deepest [ / { nesting of JSON text, string contents ignored (a linear scan; json.loads recurses)."""
    brackets = np.frombuffer(STRING_LITERAL.sub(b"", bytes(data)).translate(None, NOT_BRACKETS), np.uint8)
    depth = deepest = 0
    for start in range(0, len(brackets), 1 << 22):               # chunks: a bounded int64 array each
        chunk = brackets[start:start + (1 << 22)]
        running = depth + np.cumsum(np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1))
        depth, deepest = int(running[-1]), max(deepest, int(running.max()))
    return deepest


def bounded_json(data: bytes, path, what: str):
    """json.loads(data) after bounding its size and nesting depth; errors name the file and `what`."""
    if len(data) > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: {what} is {len(data):,} bytes, more than the {MAX_HEADER_BYTES:,} allowed")
    if (depth := json_depth(data)) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: {what} nests {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({err})") from None


def layer_indices(names) -> set[int]:
    return {int(m.group(1)) for n in names if (m := re.match(r"layers\.(\d+)\.", n))}


def check_layer_count(path, key: str, value, names) -> None:
    """A file's layer count (config.json num_hidden_layers, GGUF block_count) is checked against the tensors it
    holds *before* anything loops over it."""
    layers = layer_indices(names)
    if isinstance(value, bool) or not isinstance(value, int) or value != len(layers):
        raise CheckpointError(f"{path}: {key} is {value!r:.40}, but the file holds tensors for {len(layers)} layers")


def check_against_tensors(path, config, shapes: dict[str, tuple]) -> None:
    """The config's num_layers and vocabulary agree with the tensors in the file (minigemma names -> shapes)."""
    layers = layer_indices(shapes)
    if layers != set(range(config.num_layers)):
        found = f"layers {min(layers)}..{max(layers)} ({len(layers)} distinct)" if layers else "no layers"
        raise CheckpointError(f"{path}: the config says num_layers={config.num_layers:,}, the file holds tensors "
                              f"for {found}")
    embedding = shapes.get("embed.weight")
    if embedding is not None and tuple(embedding) != (config.vocab_size, config.hidden_size):
        raise CheckpointError(f"{path}: the config says vocab_size={config.vocab_size:,}, hidden_size="
                              f"{config.hidden_size:,}, but the embedding has shape {tuple(embedding)}")


def check_reals(path, config, names=("rope_theta", "rms_norm_eps", "rope_local_theta", "rope_scaling_factor",
                                     "query_pre_attn_scalar")) -> None:
    """Every float of the config that a file supplied is a finite number > 0 (rms_norm_eps 0: NaN on a zero row)."""
    for name in names:
        value = getattr(config, name, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise CheckpointError(f"{path}: {name} should be a finite number > 0, found {value!r}")


def check_weight(path, name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{path}: tensor {name} has dtype {str(tensor.dtype).replace('torch.', '')}; Gemma's "
                              "weights are floating point (float32, float16 or bfloat16)")
    if not torch.isfinite(tensor).all():
        raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
