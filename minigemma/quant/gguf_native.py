"""Load a Gemma 3 GGUF keeping its blocks quantized: the model takes about the file's size, not 4x it.

    Q4_K  -> Int4Linear, group 32: scale = d * s_j, zero (the value of code 8) = 8 * scale - dmin * m_j
    Q8_0, Q5_0 -> Int8GroupLinear, group 32, fp16 scales (= the block's d: exact)
    Q6_K  -> Int8GroupLinear, group 16, fp32 scales (= d * s_j: exact)
    F32 (norms) and any other type -> dequantized to float tensors (compute dtype)

What is exact (compute in float32, the default): every code and scale; the only rounding is Q4_K's zero, one
float32 rounding of 8 * scale - dmin * m (<= 2**-24 relative), and the kernels' float32 summation order. In
bfloat16 the scales are rounded to bfloat16 where a kernel needs them (not exact; faster on CPUs with bf16).
Large tensors are decoded a few thousand rows at a time, so loading never holds more than a chunk besides them.
Not here: writing GGUF, the other block types' kernels (Q5_1, Q5_K, IQ*: loaded dequantized).
"""
from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import torch

from ..gemma3 import Gemma3
from ..weights.gguf.file import quant_type, read_gguf
from ..weights.gguf.model import config_from_gguf, minigemma_name
from ..weights.tensor_files import CheckpointError
from .embedding import QuantizedEmbedding
from .ggml_blocks import BLOCK_BYTES, DECODERS, GROUPS
from .int4 import Int4Linear
from .int8_groups import Int8GroupLinear

CHUNK_ROWS = 512            # rows decoded at a time: their temporaries stay a few MB
Q4_K_CHUNK_ROWS = 128        # Q4_K decodes through float32 temporaries ~20x the codes' size: keep them small


LIBC_NAME = ctypes.util.find_library("c")
MALLOC_TRIM = getattr(ctypes.CDLL(LIBC_NAME), "malloc_trim", None) if LIBC_NAME else None   # glibc only


def release_freed_memory() -> None:
    """Hand memory freed by the decoding temporaries back to the OS (glibc keeps it otherwise, and a load's peak
    grew to ~1.5x the file); a no-op where the C library has no malloc_trim."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
EXACT_SCALE_DTYPE = {"Q8_0": torch.float16, "Q5_0": torch.float16, "Q6_K": torch.float32}


def read_rows(gguf, info, start: int, stop: int) -> np.ndarray:
    """Raw bytes of rows start:stop of a tensor, (rows, bytes per row) uint8, read straight from the file."""
    row_bytes = info.nbytes // info.shape[0]
    raw = np.fromfile(gguf.path, dtype=np.uint8, count=(stop - start) * row_bytes, offset=info.start + start * row_bytes)
    return raw.reshape(stop - start, row_bytes)


def decode_rows(kind: str, raw: np.ndarray) -> tuple[torch.Tensor, ...]:
    """(rows, bytes per row) -> codes (rows, cols) and scales [, mins] (rows, cols // group), by ggml_blocks."""
    blocks = torch.from_numpy(raw).reshape(-1, BLOCK_BYTES[kind])         # rows are whole numbers of blocks
    return tuple(t.reshape(raw.shape[0], -1) for t in DECODERS[kind](blocks))


def int8_groups(gguf, info, kind: str) -> Int8GroupLinear:
    rows, cols = info.shape
    group = GROUPS[kind]
    codes = torch.empty(cols // group, rows, group, dtype=torch.int8)      # (groups, rows, group)
    scales = torch.empty(cols // group, rows, dtype=EXACT_SCALE_DTYPE[kind])
    codes_np = codes.numpy()                                              # numpy's strided copy is ~7x faster
    for start in range(0, rows, CHUNK_ROWS):
        stop = min(rows, start + CHUNK_ROWS)
        chunk_codes, chunk_scales = decode_rows(kind, read_rows(gguf, info, start, stop))
        codes_np[:, start:stop] = chunk_codes.numpy().reshape(stop - start, -1, group).transpose(1, 0, 2)
        scales[:, start:stop] = chunk_scales.t()
    return Int8GroupLinear(codes, scales)


def int4_groups(gguf, info, dtype) -> Int4Linear:
    rows = info.shape[0]
    parts = [decode_rows("Q4_K", read_rows(gguf, info, start, min(rows, start + Q4_K_CHUNK_ROWS)))
             for start in range(0, rows, Q4_K_CHUNK_ROWS)]
    codes, scales, mins = (torch.cat(chunks) for chunks in zip(*parts))
    del parts
    zeros = 8 * scales - mins                                           # float32: one rounding at most
    return Int4Linear(codes, scales.to(dtype), zeros.to(dtype), GROUPS["Q4_K"])


def set_module(model, name: str, module) -> None:
    """'layers.3.attn.q_proj.weight' -> replace model.layers[3].attn.q_proj with `module`."""
    *path, leaf, _weight = name.split(".")
    parent = model.get_submodule(".".join(path))
    setattr(parent, leaf, module)


def load_gguf_quantized(path, dtype: torch.dtype = torch.float32) -> Gemma3:
    """A Gemma 3 GGUF as a minigemma Gemma3 whose Q4_K / Q8_0 / Q5_0 / Q6_K tensors stay quantized (CPU)."""
    gguf = read_gguf(path)
    config = config_from_gguf(gguf)
    gguf.metadata.clear()         # the 262,144-token vocabulary as Python objects (~40 MB): not needed from here
    release_freed_memory()
    with torch.device("meta"):
        model = Gemma3(config)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    floats, kept = {}, {}
    for gguf_name, info in gguf.tensors.items():
        name = minigemma_name(gguf_name)
        if expected.get(name) != info.shape:
            raise CheckpointError(f"{path}: tensor {gguf_name} (shape {info.shape}) does not fit a Gemma 3 model "
                                  f"of this config (expected {expected.get(name, 'no such tensor')})")
        kind = quant_type(info).name
        if len(info.shape) == 2 and kind in DECODERS:
            module = int4_groups(gguf, info, dtype) if kind == "Q4_K" else int8_groups(gguf, info, kind)
            kept[name] = kind
            if name == "embed.weight":
                model.embed = QuantizedEmbedding(module, dtype)
            else:
                set_module(model, name, module)
            release_freed_memory()
        else:
            tensor = torch.from_numpy(gguf.dequantize(gguf_name))
            floats[name] = (tensor - 1.0 if name.endswith("norm.weight") else tensor).to(dtype)
    missing = sorted(set(expected) - set(floats) - set(kept))
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensors missing from the GGUF, e.g. {missing[:3]}")
    model.load_state_dict(floats, strict=False, assign=True)
    model.stored_formats = {**{n: kind for n, kind in kept.items()}, **{n: "float" for n in floats}}
    return model.eval()
