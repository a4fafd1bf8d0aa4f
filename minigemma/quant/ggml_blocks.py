"""GGUF's quantized blocks decoded from their bytes: Q8_0, Q5_0, Q4_K and Q6_K, in plain PyTorch. The one place
minigemma reads their bits: gguf_native.py keeps the codes and scales, dequantize() turns them into floats.

llama.cpp stores a weight matrix row by row, each row cut into blocks of 32 (Q8_0, Q5_0) or 256 weights (the
"K-quants"); a block is a few bytes of scales followed by the packed integers. Every decoder here takes the raw
bytes as a uint8 tensor of shape (n_blocks, bytes_per_block) and returns integer codes (n_blocks, weights) and
float32 scales (n_blocks, groups), one per group of GROUPS[kind] weights (Q4_K also mins, same shape):

    Q8_0   34 bytes / 32:  d (f16) | 32 x int8 q                          w = d * q
    Q5_0   22 bytes / 32:  d (f16) | 32 high bits (u32) | 16 bytes of low nibbles      w = d * (q - 16)
    Q4_K  144 bytes / 256: d, dmin (f16) | 12 bytes: 8 six-bit scales and 8 six-bit mins | 128 bytes of nibbles
                           8 sub-blocks of 32:  w = d * scale_j * q - dmin * min_j
    Q6_K  210 bytes / 256: 128 bytes low nibbles | 64 bytes of 2-bit high parts | 16 x int8 scales | d (f16)
                           16 sub-blocks of 16: w = d * scale_j * (q - 32)

Exact: codes are integers; every scale d * scale_j (an 11-bit f16 significand times a 6- or 8-bit integer) and
min dmin * min_j fits float32's 24 bits. Checked against `gguf.quants.dequantize` (tests/test_ggml_blocks.py).
Not here: quantizing to these formats, other block types (Q2_K, Q3_K, Q5_K, IQ*), matmuls on packed blocks.
"""
from __future__ import annotations

import numpy as np
import torch

from ..weights.gguf.packing import q4_k_scales_and_mins  # noqa: F401  (the 6-bit scale packing, shared)

BLOCK_BYTES = {"Q8_0": 34, "Q5_0": 22, "Q4_K": 144, "Q6_K": 210}
GROUPS = {"Q8_0": 32, "Q5_0": 32, "Q4_K": 32, "Q6_K": 16}               # weights per scale
GGML_TYPE_NAMES = {8: "Q8_0", 6: "Q5_0", 12: "Q4_K", 14: "Q6_K"}       # gguf.GGMLQuantizationType values


def f16(two_bytes: torch.Tensor) -> torch.Tensor:
    """(n, 2) little-endian bytes -> (n, 1) float32 (x86 and ARM are little-endian, so a view suffices)."""
    return two_bytes.contiguous().view(torch.float16).float()


def low_high_nibbles(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each byte holds two 4-bit numbers: the low nibble (bits 0-3) and the high nibble (bits 4-7)."""
    return packed & 0x0F, packed >> 4


def decode_q8_0(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = blocks[:, 2:].contiguous().view(torch.int8)                # (n, 32) signed codes
    return q, f16(blocks[:, :2])                                   # (n, 1) one scale per 32 weights


def decode_q5_0(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    high_bits = blocks[:, 2:6]                                      # (n, 4) bytes of one little-endian u32
    bit = torch.arange(32)
    fifth = (high_bits[:, bit // 8] >> (bit % 8).to(torch.uint8)) & 1   # (n, 32) bit i of the u32: weight i
    low, high = low_high_nibbles(blocks[:, 6:])                    # (n, 16) each: weights 0-15 and 16-31
    q = torch.cat((low, high), dim=1) | (fifth << 4)                # (n, 32) unsigned 0..31
    return q.to(torch.int8) - 16, f16(blocks[:, :2])                # codes -16..15, (n, 1) scale


def decode_q4_k(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = blocks.shape[0]
    d, dmin = f16(blocks[:, 0:2]), f16(blocks[:, 2:4])               # (n, 1) each: super-block scales
    scales, mins = q4_k_scales_and_mins(blocks[:, 4:16])            # (n, 8) each
    low, high = low_high_nibbles(blocks[:, 16:].reshape(n, 4, 32))  # 4 chunks of 32 bytes = 64 weights each
    q = torch.stack((low, high), dim=2).reshape(n, 256)             # sub-block 2c: low nibbles, 2c+1: high
    return q, d * scales, dmin * mins                               # uint8 0..15, (n, 8), (n, 8)


def decode_q6_k(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = blocks.shape[0]
    low = blocks[:, 0:128].reshape(n, 2, 2, 32)                     # (n, half, 32-byte row, 32)
    high = blocks[:, 128:192].reshape(n, 2, 1, 32)                  # (n, half, 1, 32): four 2-bit parts a byte
    low4 = torch.stack(low_high_nibbles(low), dim=2).reshape(n, 2, 4, 32)   # quarter k: row k % 2, nibble k // 2
    shift = torch.tensor([0, 2, 4, 6], dtype=torch.uint8).reshape(1, 1, 4, 1)   # quarter k: bits 2k, 2k+1
    high2 = (high >> shift) & 3                                     # (n, half, 4, 32)
    q = (low4 | (high2 << 4)).to(torch.int8) - 32                   # (n, half, 4, 32) signed -32..31
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()   # (n, 16) one per 16 weights
    return q.reshape(n, 256), f16(blocks[:, 208:210]) * scales      # (n, 16): d * scale_j


DECODERS = {"Q8_0": decode_q8_0, "Q5_0": decode_q5_0, "Q4_K": decode_q4_k, "Q6_K": decode_q6_k}


def dequantize(kind: str, blocks: torch.Tensor) -> torch.Tensor:
    """(n_blocks, bytes per block) uint8 -> (n_blocks, weights) float32: codes * scales (- mins), per group."""
    codes, scales, *mins = DECODERS[kind](blocks)
    n, groups = scales.shape
    weights = codes.reshape(n, groups, -1).float() * scales.unsqueeze(-1)   # (n, groups, group size)
    if mins:
        weights = weights - mins[0].unsqueeze(-1)
    return weights.reshape(n, -1)


def tensor_blocks(gguf, name: str) -> tuple[str, torch.Tensor]:
    """(format, raw bytes as (n_blocks, bytes_per_block) uint8) of tensor `name` in a read_gguf() file."""
    info = gguf.tensors[name]
    kind = GGML_TYPE_NAMES.get(info.ggml_type)
    if kind is None:
        raise ValueError(f"{gguf.path}: tensor {name} has ggml type {info.ggml_type}; ggml_blocks decodes "
                         f"{', '.join(f'{v} ({k})' for k, v in GGML_TYPE_NAMES.items())}")
    raw = np.fromfile(gguf.path, dtype=np.uint8, count=info.nbytes, offset=info.start)
    return kind, torch.from_numpy(raw).reshape(-1, BLOCK_BYTES[kind])


def dequantize_tensor(gguf, name: str) -> torch.Tensor:
    """Tensor `name` decoded by the functions above, float32 in torch order (rows, columns)."""
    kind, blocks = tensor_blocks(gguf, name)
    return dequantize(kind, blocks).reshape(gguf.tensors[name].shape)
