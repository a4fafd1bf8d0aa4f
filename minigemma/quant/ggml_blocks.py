"""GGUF's quantized blocks decoded from their bytes: Q8_0, Q5_0, Q4_K and Q6_K, in plain PyTorch.

llama.cpp stores a weight matrix row by row, each row cut into blocks of 32 (Q8_0, Q5_0) or 256 weights (the
"K-quants"); a block is a few bytes of scales followed by the packed integers. Every decoder here takes the raw
bytes as a uint8 tensor of shape (n_blocks, bytes_per_block) and returns float32 of shape (n_blocks, weights):

    Q8_0   34 bytes / 32:  d (f16) | 32 x int8 q                          w = d * q
    Q5_0   22 bytes / 32:  d (f16) | 32 high bits (u32) | 16 bytes of low nibbles      w = d * (q - 16)
    Q4_K  144 bytes / 256: d, dmin (f16) | 12 bytes: 8 six-bit scales and 8 six-bit mins | 128 bytes of nibbles
                           8 sub-blocks of 32:  w = d * scale_j * q - dmin * min_j
    Q6_K  210 bytes / 256: 128 bytes low nibbles | 64 bytes of 2-bit high parts | 16 x int8 scales | d (f16)
                           16 sub-blocks of 16: w = d * scale_j * (q - 32)

Checked against the `gguf` package's `gguf.quants.dequantize` (tests/test_ggml_blocks.py).
Not here: quantizing to these formats, other block types (Q2_K, Q3_K, Q5_K, IQ*), matmuls on packed blocks.
"""
from __future__ import annotations

import numpy as np
import torch

BLOCK_BYTES = {"Q8_0": 34, "Q5_0": 22, "Q4_K": 144, "Q6_K": 210}
GGML_TYPE_NAMES = {8: "Q8_0", 6: "Q5_0", 12: "Q4_K", 14: "Q6_K"}       # gguf.GGMLQuantizationType values


def f16(two_bytes: torch.Tensor) -> torch.Tensor:
    """(n, 2) little-endian bytes -> (n, 1) float32 (x86 and ARM are little-endian, so a view suffices)."""
    return two_bytes.contiguous().view(torch.float16).float()


def low_high_nibbles(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each byte holds two 4-bit numbers: the low nibble (bits 0-3) and the high nibble (bits 4-7)."""
    return packed & 0x0F, packed >> 4


def dequantize_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = f16(blocks[:, :2])                                         # (n, 1) one scale per 32 weights
    q = blocks[:, 2:].contiguous().view(torch.int8).float()        # (n, 32) signed
    return d * q


def dequantize_q5_0(blocks: torch.Tensor) -> torch.Tensor:
    d = f16(blocks[:, :2])                                          # (n, 1)
    high_bits = blocks[:, 2:6].long()                               # (n, 4) bytes of one little-endian u32
    bit = torch.arange(32)
    fifth = (high_bits[:, bit // 8] >> (bit % 8)) & 1               # (n, 32) bit i of the u32 belongs to weight i
    low, high = low_high_nibbles(blocks[:, 6:])                    # (n, 16) each: weights 0-15 and 16-31
    q = torch.cat((low, high), dim=1).long() | (fifth << 4)         # (n, 32) unsigned 0..31
    return d * (q - 16).float()


def q4_k_scales_and_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """12 bytes -> 8 six-bit scales and 8 six-bit mins, one each per 32-weight sub-block.

    Bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits; bytes 8-11 hold the low 4 bits of
    scale j+4 (low nibble) and min j+4 (high nibble), whose top 2 bits sit in bits 6-7 of bytes j and j+4.
    """
    p = packed.long()                                               # (n, 12)
    scales = torch.cat((p[:, 0:4] & 63, (p[:, 8:12] & 0x0F) | ((p[:, 0:4] >> 6) << 4)), dim=1)   # (n, 8)
    mins = torch.cat((p[:, 4:8] & 63, (p[:, 8:12] >> 4) | ((p[:, 4:8] >> 6) << 4)), dim=1)       # (n, 8)
    return scales.float(), mins.float()


def dequantize_q4_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d, dmin = f16(blocks[:, 0:2]), f16(blocks[:, 2:4])               # (n, 1) each: super-block scales
    scales, mins = q4_k_scales_and_mins(blocks[:, 4:16])            # (n, 8) each
    low, high = low_high_nibbles(blocks[:, 16:].reshape(n, 4, 32))  # 4 chunks of 32 bytes = 64 weights each
    q = torch.stack((low, high), dim=2).reshape(n, 8, 32).float()   # sub-block 2c: low nibbles, 2c+1: high
    weights = (d * scales).unsqueeze(-1) * q - (dmin * mins).unsqueeze(-1)   # (n, 8, 32)
    return weights.reshape(n, 256)


def dequantize_q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    low = blocks[:, 0:128].reshape(n, 2, 2, 32)                     # (n, half, 32-byte row, 32)
    high = blocks[:, 128:192].reshape(n, 2, 1, 32)                  # (n, half, 1, 32): four 2-bit parts a byte
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()   # (n, 16) one per 16 weights
    d = f16(blocks[:, 208:210])                                     # (n, 1)
    low_nibbles = torch.stack(low_high_nibbles(low), dim=2)         # (n, half, nibble, row, 32) -> quarters 0..3
    low4 = low_nibbles.reshape(n, 2, 4, 32).long()                  # quarter k: row k % 2, nibble k // 2
    shift = torch.tensor([0, 2, 4, 6]).reshape(1, 1, 4, 1)          # quarter k takes bits 2k, 2k+1 of qh
    high2 = (high.long() >> shift) & 3                              # (n, half, 4, 32)
    q = (low4 | (high2 << 4)) - 32                                  # (n, half, 4, 32) signed -32..31
    weights = d.reshape(n, 1, 1, 1, 1) * scales.reshape(n, 2, 4, 2, 1) * q.reshape(n, 2, 4, 2, 16).float()
    return weights.reshape(n, 256)


DECODERS = {"Q8_0": dequantize_q8_0, "Q5_0": dequantize_q5_0, "Q4_K": dequantize_q4_k, "Q6_K": dequantize_q6_k}


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
    return DECODERS[kind](blocks).reshape(gguf.tensors[name].shape)
