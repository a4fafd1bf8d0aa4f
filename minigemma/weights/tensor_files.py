"""Reading tensors from checkpoint files, one tensor at a time, with clear errors.

* safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then raw
  little-endian bytes. We parse the header ourselves and read each tensor straight into its final buffer (no mmap,
  no second copy), checking that every tensor lies inside the file, so truncation is caught by name.
* PyTorch pickles (.ckpt / .pt / .bin): `torch.load(..., weights_only=True)`, which refuses to run pickled code.
Not here: what the tensor names mean (checkpoint.py).
"""
from __future__ import annotations

import math
import pickle
import struct
import zipfile
from pathlib import Path

import torch

from .guards import MAX_HEADER_BYTES, CheckpointError, bounded_json, regular_file

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}
MAX_DIM = 2**40                          # no real tensor dimension comes near; torch overflows on larger ones


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)      # JSON true is not a size


def check_entry(path: Path, name: str, info, data_size: int) -> None:
    """One header entry: a known dtype, a shape, and a byte range inside the data section that fits the shape."""
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise CheckpointError(f"{path}: corrupt safetensors header: entry {name} lacks dtype/shape/data_offsets")
    if not isinstance(info["dtype"], str) or info["dtype"] not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info['dtype']!r}")
    offsets, shape = info["data_offsets"], info["shape"]
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] or not isinstance(shape, list)
            or not all(is_int(d) and 0 <= d <= MAX_DIM for d in shape)):
        raise CheckpointError(f"{path}: corrupt safetensors header: tensor {name} has offsets {offsets!r}, "
                              f"shape {shape!r}")
    begin, end = offsets
    itemsize = SAFETENSORS_DTYPES[info["dtype"]].itemsize
    if end - begin != math.prod(shape) * itemsize:
        raise CheckpointError(f"{path}: tensor {name} has {end - begin} bytes for shape {shape}")
    if end > data_size:
        raise CheckpointError(f"{path}: truncated file: tensor {name} ends at byte {end} of the data section, "
                              f"which has {data_size}")


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """Return ({name: info}, offset of the data section). Metadata entries are dropped."""
    size = regular_file(path, "safetensors file").stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise CheckpointError(f"{path}: truncated or corrupt safetensors (header of {header_len} bytes, "
                                  f"file of {size})")
        if header_len > MAX_HEADER_BYTES:                                # checked before reading it
            raise CheckpointError(f"{path}: safetensors header of {header_len:,} bytes, more than the "
                                  f"{MAX_HEADER_BYTES:,} allowed")
        header = bounded_json(f.read(header_len), path, "the safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    data_start = 8 + header_len
    for name, info in header.items():
        check_entry(path, name, info, size - data_start)
    return header, data_start


def iter_safetensors(path: Path):
    """Yield (name, tensor) for each tensor in a .safetensors file, each read into fresh memory once."""
    header, data_start = read_safetensors_header(path)
    with open(path, "rb") as f:
        for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            tensor = torch.empty(info["shape"], dtype=SAFETENSORS_DTYPES[info["dtype"]])
            f.seek(data_start + info["data_offsets"][0])
            if tensor.numel():
                f.readinto(memoryview(tensor.view(-1).view(torch.uint8).numpy()))
            yield name, tensor


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    header, _ = read_safetensors_header(path)
    return {name: tuple(info["shape"]) for name, info in header.items()}


def load_pickle_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A gemma_pytorch / Kaggle .ckpt: {"model_state_dict": {...}} (or a bare state dict), tensors only."""
    mmap = zipfile.is_zipfile(regular_file(path, "checkpoint file"))  # legacy (non-zip) torch.save: no mmap
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        lines = [line for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        found = lines[0].strip() if lines else type(err).__name__
        raise CheckpointError(f"{path}: refused to load: the file holds code or objects other than tensors and "
                              "plain containers, and minigemma never runs pickled code "
                              f"(weights_only=True refused {found})") from None
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None
    state = obj.get("model_state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (optionally under 'model_state_dict')")
    return state
