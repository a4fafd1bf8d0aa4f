"""GGUF's quantized blocks decoded from their bytes into integer codes and per-group scales, *without* turning
them into floats, so minigemma can keep them quantized (gguf_native.py). Row-major: rows of a weight matrix are
whole numbers of blocks, and each function takes (rows, bytes per row) uint8 and returns per-row arrays.

    Q8_0  32 weights: fp16 d, 32 int8 q                              w = d * q
    Q5_0  32 weights: fp16 d, 4 B of 5th bits, 16 B of nibbles        w = d * (q - 16),     q in 0..31
    Q6_K  256 weights: 128 B low nibbles, 64 B of 2 high bits,        w = d * s_j * (q - 32), 16 groups of 16
          16 int8 group scales s_j, fp16 d
    Q4_K  256 weights: fp16 d, fp16 dmin, 12 B of 6-bit scales and    w = d * s_j * q - dmin * m_j, q in 0..15,
          mins, 128 B of nibbles                                        8 groups of 32
Exactness: every product d * s_j (11-bit fp16 times a 6- or 8-bit integer) and dmin * m_j fits a float32
significand, so the scales below are exact; codes are exact integers.
Not here: the other block types (Q4_0, Q5_1, Q5_K, IQ*: loaded dequantized), writing blocks.
"""
import numpy as np

from gguf.quants import Q4_K

GROUPS = {"Q8_0": 32, "Q5_0": 32, "Q6_K": 16, "Q4_K": 32}     # weights per scale, as minigemma keeps them


def blocks(raw: np.ndarray, block_bytes: int) -> np.ndarray:
    """(rows, bytes) -> (rows, blocks per row, block_bytes)."""
    return raw.reshape(raw.shape[0], -1, block_bytes)


def fp16(b: np.ndarray) -> np.ndarray:
    """(..., 2) bytes -> (...) float32 from little-endian fp16."""
    return np.ascontiguousarray(b).view(np.float16)[..., 0].astype(np.float32)


def decode_q8_0(raw):
    """-> codes (rows, cols) int8, scales (rows, cols // 32) float32."""
    b = blocks(raw, 34)
    return b[..., 2:].view(np.int8).reshape(raw.shape[0], -1), fp16(b[..., :2])


def decode_q5_0(raw):
    """-> codes (rows, cols) int8 in -16..15, scales (rows, cols // 32) float32."""
    b = blocks(raw, 22)
    high_bits = np.ascontiguousarray(b[..., 2:6]).view(np.uint32)                    # (rows, nb, 1)
    fifth = (high_bits >> np.arange(32, dtype=np.uint32)) & 1                          # (rows, nb, 32)
    nibbles = b[..., 6:]                                                               # (rows, nb, 16)
    low = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1)                        # weights 0..15, 16..31
    codes = (low | (fifth.astype(np.uint8) << 4)).astype(np.int8) - np.int8(16)
    return codes.reshape(raw.shape[0], -1), fp16(b[..., :2])


def decode_q6_k(raw):
    """-> codes (rows, cols) int8 in -32..31, scales (rows, cols // 16) float32 (= d * s_j, exact)."""
    b = blocks(raw, 210)
    rows, nb = b.shape[:2]
    low = b[..., :128].reshape(rows, nb, 2, 64)                        # two halves of 128 weights
    high = b[..., 128:192].reshape(rows, nb, 2, 1, 32)
    nibbles = np.stack([low & 15, low >> 4], axis=3).reshape(rows, nb, 2, 4, 32)   # quarter = 32 weights
    two_bits = (high >> np.array([0, 2, 4, 6], dtype=np.uint8)[:, None]) & 3        # (rows, nb, 2, 4, 32)
    codes = (nibbles | (two_bits << 4)).astype(np.int8) - np.int8(32)
    group_scales = b[..., 192:208].view(np.int8).astype(np.float32)                  # (rows, nb, 16)
    scales = fp16(b[..., 208:210])[..., None] * group_scales
    return codes.reshape(rows, -1), scales.reshape(rows, -1)


def decode_q4_k(raw):
    """-> codes (rows, cols) uint8 0..15, scales and mins (rows, cols // 32) float32: w = q * scale - min."""
    b = blocks(raw, 144)
    rows, nb = b.shape[:2]
    d, dmin = fp16(b[..., 0:2]), fp16(b[..., 2:4])                     # (rows, nb)
    sub_scales, sub_mins = Q4_K.get_scale_min(np.ascontiguousarray(b[..., 4:16]).reshape(-1, 12))
    nibbles = b[..., 16:].reshape(rows, nb, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8)[:, None]
    codes = (nibbles & 15).reshape(rows, -1)                           # 64 weights per 32 bytes: low, then high
    scales = d[..., None] * sub_scales.reshape(rows, nb, 8).astype(np.float32)
    mins = dmin[..., None] * sub_mins.reshape(rows, nb, 8).astype(np.float32)
    return codes, scales.reshape(rows, -1), mins.reshape(rows, -1)


DECODERS = {"Q8_0": decode_q8_0, "Q5_0": decode_q5_0, "Q6_K": decode_q6_k, "Q4_K": decode_q4_k}
