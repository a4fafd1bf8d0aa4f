"""Checks for exercise 11, quantization: absmax int8 per output channel, and GGUF's Q8_0 and Q4_K blocks decoded
from their bytes. The references are minigemma.quant.ggml_blocks (itself checked against the gguf package) and the
absmax rule below; wrong answers are compared with the classic mistakes (one scale for the whole matrix, a scale
per input column, truncating instead of rounding, unsigned quants, swapped or interleaved nibbles, no zero point).
Not here: int4 groups and NF4 (taught in notebook 11, not graded)."""
import random

import numpy as np
import torch

from ...quant.ggml_blocks import BLOCK_BYTES, dequantize_q4_k, dequantize_q8_0, f16, q4_k_scales_and_mins
from ..compare import diagnose, expect_tensor, fresh_generator, largest_difference, randn
from ..core import Mismatch, check, require_callable


def reference_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = w.abs().amax(dim=1, keepdim=True) / 127                # (out, 1): one per output channel (row)
    return torch.round(w / scale).to(torch.int8), scale


def int8_scale_mistake(scale: torch.Tensor, w: torch.Tensor) -> str | None:
    """Name what a wrongly shaped or valued scale is, or None when it looks like one absmax per row."""
    out_features, in_features = w.shape
    if scale.numel() == 1 or (scale.numel() == out_features and torch.all(scale == scale.flatten()[0])):
        return ("you used one scale for the whole matrix (per-tensor); give each output channel (row) its own "
                "absmax scale, so a row of small weights is not rounded to zeros.")
    if scale.numel() == in_features and tuple(scale.shape) != (out_features, 1):
        return ("your scales run along the input columns; the output channel of an nn.Linear weight "
                "(out_features, in_features) is a row: reduce over dim 1.")
    if tuple(scale.shape) != (out_features, 1):
        return f"scale should have shape ({out_features}, 1), one per row, got {tuple(scale.shape)}."
    ratio = (scale / (w.abs().amax(dim=1, keepdim=True) / 127)).flatten()
    if torch.allclose(ratio, torch.full_like(ratio, 127.0), rtol=1e-4):
        return "your scale is the row's absmax itself; divide it by 127 so the largest weight maps to +-127."
    if torch.allclose(ratio, torch.full_like(ratio, 127 / 255), rtol=1e-4) or \
            torch.allclose(ratio, torch.full_like(ratio, 127 / 128), rtol=1e-4):
        return "int8's symmetric range is -127..127: divide the absmax by 127 (not 128 or 255)."
    return None


@check("quant-int8")
def check_quantize_int8(quantize_int8):
    require_callable(quantize_int8, "quantize_int8")
    gen = fresh_generator()
    rows, cols = random.choice([6, 12]), random.choice([16, 40])
    w = randn(rows, cols, gen=gen) * torch.logspace(-2, 0, rows).unsqueeze(1)     # rows of very different sizes
    out = quantize_int8(w.clone())
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Mismatch("quantize_int8 should return a pair (q, scale).")
    q, scale = (expect_tensor(t, name=f"quantize_int8's {what}") for t, what in zip(out, ("q", "scale")))
    want_q, want_scale = reference_int8(w)
    if q.dtype != torch.int8:
        raise Mismatch(f"q should be torch.int8 (signed, 1 byte each), got {str(q.dtype).replace('torch.', '')}.")
    expect_tensor(q, w.shape, name="quantize_int8's q")
    mistake = int8_scale_mistake(scale.float(), w)
    if mistake:
        raise Mismatch(mistake)
    if torch.equal(q, torch.trunc(w / want_scale).to(torch.int8)) and not torch.equal(q, want_q):
        raise Mismatch("your q truncates toward zero (a plain .to(torch.int8)); round to the nearest integer first.")
    # q may differ by one where w / scale lands within float rounding of .5 (w * (127 / absmax) vs w / scale).
    near_ties = (w / want_scale - (w / want_scale).floor() - 0.5).abs() < 1e-4
    wrong = (q.long() - want_q.long()).abs() > 0
    if torch.any(wrong & ~near_ties):
        raise Mismatch("q differs from round(w / scale) (" + largest_difference(q.float(), want_q.float()) + ").")
    diagnose(scale.float(), want_scale, (), "scale differs from the row's absmax / 127.", rtol=1e-6, atol=0)


def random_blocks(kind: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """n blocks of random bytes, the f16 super-block scales set to finite values in (-2, 2)."""
    blocks = torch.randint(0, 256, (n, BLOCK_BYTES[kind]), generator=gen, dtype=torch.uint8)
    for at in ((0,) if kind == "Q8_0" else (0, 2)):
        scale = (torch.rand(n, 1, generator=gen) * 4 - 2).half().numpy()
        blocks[:, at:at + 2] = torch.from_numpy(scale.view(np.uint8).copy())
    return blocks


def call_decoder(decoder, blocks: torch.Tensor, weights: int, name: str) -> torch.Tensor:
    out = decoder(blocks.clone())
    return expect_tensor(out, (blocks.shape[0], weights), torch.float32, name=name)


@check("quant-q8-0")
def check_dequantize_q8_0(dequantize_q8_0_blocks):
    require_callable(dequantize_q8_0_blocks, "dequantize_q8_0")
    blocks = random_blocks("Q8_0", random.randint(3, 9), fresh_generator())
    out = call_decoder(dequantize_q8_0_blocks, blocks, 32, "dequantize_q8_0")
    d = f16(blocks[:, :2])
    diagnose(out, dequantize_q8_0(blocks), [
        (d * blocks[:, 2:].float(), "the 32 quants are signed bytes (int8, -128..127); you read them as unsigned."),
        (blocks[:, 2:].contiguous().view(torch.int8).float(), "the quants are multiplied by the block's scale d."),
        (f16(blocks[:, :2].flip(1)) * blocks[:, 2:].contiguous().view(torch.int8).float(),
         "the f16 scale is little-endian: byte 0 is its low byte."),
        (f16(blocks[:, 32:]) * blocks[:, :32].contiguous().view(torch.int8).float(),
         "the block starts with its scale (2 bytes), then the 32 quants.")],
        "the decoded weights differ from Q8_0's d * q.", rtol=1e-5, atol=1e-6)


def q4_k_variants(blocks: torch.Tensor) -> list:
    n = blocks.shape[0]
    d, dmin = f16(blocks[:, 0:2]), f16(blocks[:, 2:4])
    scales, mins = q4_k_scales_and_mins(blocks[:, 4:16])             # (n, 8) each

    def combine(q, zero_sign=-1.0, min_scale=dmin):                  # q: (n, 8, 32)
        return ((d * scales).unsqueeze(-1) * q + zero_sign * (min_scale * mins).unsqueeze(-1)).reshape(n, 256)

    packed = blocks[:, 16:].reshape(n, 4, 32)
    low, high = (packed & 0x0F).float(), (packed >> 4).float()       # (n, 4, 32) each
    right = torch.stack((low, high), dim=2).reshape(n, 8, 32)
    interleaved = torch.stack((low, high), dim=-1).reshape(n, 8, 32)   # byte i -> weights 2i, 2i+1
    swapped = torch.stack((high, low), dim=2).reshape(n, 8, 32)
    return [(combine(interleaved), "wrong nibble order: within each 32-byte chunk the low nibbles are 32 weights "
                                   "in a row and the high nibbles the next 32; you interleaved them."),
            (combine(swapped), "wrong nibble order: the low nibbles (bits 0-3) come first, then the high nibbles."),
            (combine(right, zero_sign=0.0), "you forgot the zero point: each sub-block subtracts dmin * min_j."),
            (combine(right, zero_sign=1.0), "the zero point is subtracted (w = d*scale*q - dmin*min), not added."),
            (combine(right, min_scale=d), "the mins are scaled by dmin (bytes 2-3), not by d.")]


@check("quant-q4-k")
def check_dequantize_q4_k(dequantize_q4_k_blocks):
    require_callable(dequantize_q4_k_blocks, "dequantize_q4_k")
    blocks = random_blocks("Q4_K", random.randint(2, 5), fresh_generator())
    out = call_decoder(dequantize_q4_k_blocks, blocks, 256, "dequantize_q4_k")
    # Tolerance: d * scale * q may be grouped differently (float32 rounding, ~1e-7 relative); values reach ~2000.
    diagnose(out, dequantize_q4_k(blocks), q4_k_variants(blocks), "the decoded weights differ from Q4_K's "
             "d * scale_j * q - dmin * min_j.", rtol=1e-5, atol=1e-4)
