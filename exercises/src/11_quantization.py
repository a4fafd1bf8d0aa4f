# %% [markdown]
# # Exercise 11 · Quantization: int8 by hand, GGUF blocks from their bytes
#
# A quantized weight is small integers plus the scales that turn them back into floats. You will write the
# quantizer of notebook 11 (absmax int8, one scale per output channel) and two of llama.cpp's block decoders,
# reading raw bytes exactly as they sit in a `.gguf` file.
#
# Weights follow `nn.Linear`'s layout, `(out_features, in_features)`: an output channel is a **row**.
# Raw blocks arrive as a `torch.uint8` tensor of shape `(n_blocks, bytes_per_block)`.
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch

from minigemma.grading import check_dequantize_q4_k, check_dequantize_q8_0, check_quantize_int8
from minigemma.weights.gguf.packing import q4_k_scales_and_mins

# %% [markdown]
# ## Task 1 · Absmax int8, per output channel (3 points)
#
# Write `quantize_int8(w)` returning `(q, scale)`: `scale` of shape `(out_features, 1)` maps each row's largest
# absolute weight to 127, and `q = round(w / scale)` as `torch.int8`, so that `q * scale` is close to `w`.

# %% solution quant-int8
def quantize_int8(w):
    ### BEGIN SOLUTION
    scale = w.abs().amax(dim=1, keepdim=True) / 127                # (out_features, 1)
    return torch.round(w / scale).to(torch.int8), scale
    ### END SOLUTION

# %% grade quant-int8 points=3
check_quantize_int8(quantize_int8)

# %% [markdown]
# ## Task 2 · A Q8_0 block (2 points)
#
# A Q8_0 block is 34 bytes for 32 weights: a float16 scale `d` (2 bytes, little-endian), then 32 signed bytes `q`.
# Each weight is `d * q`. Write `dequantize_q8_0(blocks)`: `(n_blocks, 34)` uint8 in, `(n_blocks, 32)` float32 out.
# Hint: `tensor.contiguous().view(torch.float16)` reinterprets pairs of bytes as float16 (without converting them).

# %% solution quant-q8-0
def dequantize_q8_0(blocks):
    ### BEGIN SOLUTION
    d = blocks[:, :2].contiguous().view(torch.float16).float()          # (n, 1)
    q = blocks[:, 2:].contiguous().view(torch.int8).float()             # (n, 32)
    return d * q
    ### END SOLUTION

# %% grade quant-q8-0 points=2
check_dequantize_q8_0(dequantize_q8_0)

# %% [markdown]
# ## Task 3 · A Q4_K block (4 points)
#
# A Q4_K block is 144 bytes for 256 weights, in 8 sub-blocks of 32:
#
# | bytes | holds |
# |---|---|
# | 0-1 | `d`, float16: scales the sub-block scales |
# | 2-3 | `dmin`, float16: scales the sub-block mins |
# | 4-15 | 8 six-bit scales and 8 six-bit mins, packed: `q4_k_scales_and_mins(blocks[:, 4:16])` unpacks them for you, two `(n_blocks, 8)` float tensors |
# | 16-143 | 256 four-bit quants `q` (0..15), two per byte |
#
# The 128 quant bytes are 4 chunks of 32 bytes; chunk `c` holds sub-block `2c` in its low nibbles (bits 0-3) and
# sub-block `2c + 1` in its high nibbles (bits 4-7). Weight `i` of sub-block `j` is
# `d * scale_j * q - dmin * min_j`. Write `dequantize_q4_k(blocks)`: `(n_blocks, 144)` uint8 in,
# `(n_blocks, 256)` float32 out, weights in sub-block order.

# %% solution quant-q4-k
def dequantize_q4_k(blocks):
    ### BEGIN SOLUTION
    n = blocks.shape[0]
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()         # (n, 1)
    dmin = blocks[:, 2:4].contiguous().view(torch.float16).float()      # (n, 1)
    scales, mins = q4_k_scales_and_mins(blocks[:, 4:16])                 # (n, 8) each
    chunks = blocks[:, 16:].reshape(n, 4, 32)
    q = torch.stack((chunks & 0x0F, chunks >> 4), dim=2).reshape(n, 8, 32).float()   # (n, sub-block, 32)
    weights = (d * scales).unsqueeze(-1) * q - (dmin * mins).unsqueeze(-1)
    return weights.reshape(n, 256)
    ### END SOLUTION

# %% grade quant-q4-k points=4
check_dequantize_q4_k(dequantize_q4_k)
