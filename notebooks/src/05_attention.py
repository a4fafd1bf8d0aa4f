# Notebook 05: causal self-attention; MHA, MQA and GQA as one code path; K/V memory; SDPA; parity with transformers.

# %% [markdown]
# # 05 · Attention: causal, and MHA / MQA / GQA from one code path
#
# **What you will build.** `minigemma/attention.py`: the causal mask, the explicit ("eager") attention, the same
# maths through PyTorch's fused `scaled_dot_product_attention`, and the `Attention` module with its four
# projections. One code path serves Gemma 7B (16 query heads, 16 key/value heads: *multi-head*, MHA),
# Gemma 2B (8 query heads sharing **one** key/value head: *multi-query*, MQA) and everything in between
# (*grouped-query*, GQA).
#
# **What you need to know.** Matrix products and softmax; tensor shapes `(batch, heads, seq, head_dim)`; RoPE
# from the previous notebook (`minigemma.rope.apply_rope`, `rope_angles`), which rotates queries and keys
# before they meet.
#
# **How we check.** Every step is compared with `torch.testing.assert_close` against a simpler formulation,
# against `minigemma` itself, and finally against the reference: `transformers`' `GemmaAttention` on the same
# weights.

# %%
import torch
import torch.nn.functional as F
from torch import nn
import matplotlib.pyplot as plt

import minigemma as mg
import minigemma.attention as mg_attention
from minigemma.rmsnorm import RMSNorm          # used by Attention for Gemma 3's QK-norm (off in Gemma 1)
from minigemma.rope import apply_rope, rope_angles
from minigemma.kv_cache import KVCache          # only to measure its size in section 4

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

# %%
seq, head_dim = 8, 16
gen = torch.Generator().manual_seed(0)
q = torch.randn(seq, head_dim, generator=gen)          # (seq, head_dim)
k = torch.randn(seq, head_dim, generator=gen)
v = torch.randn(seq, head_dim, generator=gen)

scores = q @ k.T * head_dim ** -0.5                    # (seq, seq): query i against key j
future = torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)   # True where j > i
masked_scores = scores.masked_fill(future, float("-inf"))
probs = masked_scores.softmax(dim=-1)                  # (seq, seq): each row sums to 1
out = probs @ v                                        # (seq, head_dim)

torch.testing.assert_close(probs.sum(dim=-1), torch.ones(seq))
assert (probs[future] == 0).all(), "a token attended to the future"
print("row sums are 1, weights above the diagonal are exactly 0")
print("first token attends only to itself:", probs[0, 0].item() == 1.0)

# %% [markdown]
# **Check: causality.** Changing the last token's value must leave every earlier output untouched.
# And PyTorch's own `scaled_dot_product_attention` with `is_causal=True` must agree.

# %%
v_changed = v.clone()
v_changed[-1] += 100.0
out_changed = masked_scores.softmax(dim=-1) @ v_changed
torch.testing.assert_close(out_changed[:-1], out[:-1], rtol=0, atol=0)   # bit-identical: no leak from the future

reference = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True)[0]
torch.testing.assert_close(out, reference)             # float32, default tolerances (rtol 1.3e-6, atol 1e-5)
print("earlier outputs unchanged; explicit attention == scaled_dot_product_attention")

# %% [markdown]
# A picture of the same head: the raw scores (left, masked entries blank) and the attention weights (right).
# Everything above the diagonal is zero; row $i$ spreads one unit of attention over tokens $0 \dots i$.

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
# so the mask is built from positions rather than from a square: query at position $p_q$ may read key at
# position $p_k$ when $p_k \le p_q$. (The `window` argument is Gemma 3's sliding window; Gemma 1 never sets
# it.) Here is the package's function, which is now yours:

# %% export minigemma.attention.causal_mask

# %%
square = causal_mask(torch.arange(seq), torch.arange(seq))             # (seq, seq) bool
assert torch.equal(square, ~future)

# Two new tokens at positions 6 and 7 looking at 8 keys: the last two rows of the square.
last_two = causal_mask(torch.tensor([6, 7]), torch.arange(seq))
assert torch.equal(last_two, square[6:])
print(last_two.int())

# %% [markdown]
# ## 3. Many heads, fewer key/value heads: MHA, MQA, GQA
#
# A layer runs $H$ heads in parallel, each with its own query projection. The key/value side has
# $H_{kv}$ heads, and each KV head serves a *group* of $H / H_{kv}$ consecutive query heads:
#
# $$\text{query head } i \text{ reads KV head } \left\lfloor i \,/\, (H / H_{kv}) \right\rfloor .$$
#
# | model | $H$ | $H_{kv}$ | name |
# |---|---|---|---|
# | Gemma 7B | 16 | 16 | MHA: one KV head per query head |
# | Gemma 2B | 8 | 1 | MQA: all query heads share one KV head |
# | (e.g. Llama 2 70B) | 64 | 8 | GQA: groups of 8 |
#
# The mapping for 8 query heads:

# %%
num_heads = 8
for kv_heads in (8, 2, 1):
    group = num_heads // kv_heads
    print(f"kv_heads={kv_heads}:  query head -> KV head", [i // group for i in range(num_heads)])

# %% [markdown]
# The naive implementation copies each KV head `group` times (`repeat_interleave`) so that K and V have $H$
# heads, then runs ordinary multi-head attention. `minigemma` never makes that copy: it views the queries as
# `(batch, kv_heads, group, seq, head_dim)` and gives K/V a size-1 `group` axis, so broadcasting pairs every
# query head in a group with its one KV head. Query head $i$ lands at `[i // group, i % group]` of the view,
# which is exactly the rule above. (A matrix-multiply kernel may still expand K for the duration of one call;
# what matters is that nothing repeated is *stored*: the KV cache of notebook 08 holds only $H_{kv}$ heads.)

# %% export minigemma.attention.attend_eager

# %%
def attend_with_copies(q, k, v, mask, scale):
    """The naive reference: copy each KV head to its group of query heads, then plain multi-head attention."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)                  # (batch, heads, k_len, head_dim): a real copy
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v                      # (batch, heads, q_len, head_dim)


def random_qkv(heads, kv_heads, seq=10, head_dim=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, seq, head_dim, generator=gen)       # (batch, heads, seq, head_dim)
    k = torch.randn(2, kv_heads, seq, head_dim, generator=gen)    # (batch, kv_heads, seq, head_dim)
    v = torch.randn(2, kv_heads, seq, head_dim, generator=gen)
    return q, k, v


mask = causal_mask(torch.arange(10), torch.arange(10))
for kv_heads in (8, 4, 2, 1):                                  # MHA, GQA, GQA, MQA
    q, k, v = random_qkv(8, kv_heads)
    torch.testing.assert_close(attend_eager(q, k, v, mask, 32 ** -0.5),
                               attend_with_copies(q, k, v, mask, 32 ** -0.5))
    print(f"8 query heads, {kv_heads} KV head(s): broadcast == explicit copies")

# %% [markdown]
# **Broadcast, not copied.** Adding a size-1 axis is a *view*: same memory, no new bytes. Even expanding it to
# the full group size only sets a stride of 0. `repeat_interleave` allocates `group` times the memory.

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
# ## 4. Why it matters: K/V memory per token
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
# ## 5. The fused kernel: `scaled_dot_product_attention`
#
# The explicit version materialises a `(q_len, k_len)` score matrix per head. PyTorch's
# `F.scaled_dot_product_attention` computes the same thing with a fused kernel, and with `enable_gqa=True` it
# handles the grouping of query heads onto KV heads itself. `minigemma` uses it by default and keeps the eager version for inspection:

# %% export minigemma.attention.attend_sdpa

# %%
ATTENTION_IMPLEMENTATIONS = {"eager": attend_eager, "sdpa": attend_sdpa}

# %% export minigemma.attention.attend

# %%
for kv_heads in (8, 2, 1):
    q, k, v = random_qkv(8, kv_heads, seed=1)
    torch.testing.assert_close(attend(q, k, v, mask, 32 ** -0.5, impl="sdpa"),
                               attend(q, k, v, mask, 32 ** -0.5, impl="eager"))   # float32, default tolerances
    print(f"8 query heads, {kv_heads} KV head(s): sdpa == eager")

# A query block that starts later (as with a KV cache): 3 new queries over 10 keys.
q, k, v = random_qkv(8, 1, seed=2)
late = causal_mask(torch.arange(7, 10), torch.arange(10))
torch.testing.assert_close(attend_sdpa(q[:, :, 7:], k, v, late, 32 ** -0.5),
                           attend_eager(q, k, v, mask, 32 ** -0.5)[:, :, 7:])
print("3 late queries == the last 3 rows of the full computation")

# %% [markdown]
# ## 6. The `Attention` module
#
# Four bias-free projections: $W_q$ (hidden → $H d_h$), $W_k, W_v$ (hidden → $H_{kv} d_h$) and $W_o$ ($H d_h$ →
# hidden). Note that $H d_h$ need not equal the hidden size: Gemma 7B has $16 \times 256 = 4096$ but a hidden
# size of 3072, so `head_dim` must come from the config, never from `hidden / heads`.
# The forward pass: project, split into heads, rotate q and k with RoPE, (optionally store K/V in the cache),
# attend, merge heads, project out.

# %% export minigemma.attention.Attention

# %%
tiny = mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1)        # hidden 64, head_dim 16, MQA
torch.manual_seed(0)
ours = Attention(tiny)
package = mg_attention.Attention(tiny)
package.load_state_dict(ours.state_dict())

x = torch.randn(2, 12, tiny.hidden_size)                        # (batch, seq, hidden)
rope = rope_angles(torch.arange(12), tiny.head_dim)
square_mask = causal_mask(torch.arange(12), torch.arange(12))
with torch.no_grad():
    assert torch.equal(ours(x, rope, square_mask), package(x, rope, square_mask))
print("notebook Attention == minigemma.attention.Attention, bit for bit; output shape",
      tuple(ours(x, rope, square_mask).shape))

# %% [markdown]
# What does each head look at? We recompute the weights step by step (with explicit copies, which is fine for a
# picture) and check that they reproduce the module's output before plotting them. On random weights the
# patterns are arbitrary (we feed a 4× larger input so that they are sharp enough to see); a trained model shows
# heads that look at the previous token, the first token, and so on.

# %%
def attention_weights(attn, x):
    """Softmax weights (batch, heads, seq, seq) of an Attention module on x (batch, seq, hidden)."""
    seq = x.shape[1]
    cos, sin = rope_angles(torch.arange(seq), attn.head_dim)
    q = apply_rope(attn.split_heads(attn.q_proj(x), attn.num_heads), cos, sin)
    k = apply_rope(attn.split_heads(attn.k_proj(x), attn.num_kv_heads), cos, sin)
    k = k.repeat_interleave(attn.num_heads // attn.num_kv_heads, dim=1)   # (batch, heads, seq, head_dim)
    scores = (q @ k.transpose(-1, -2)) * attn.scale
    return scores.masked_fill(~causal_mask(torch.arange(seq), torch.arange(seq)), float("-inf")).softmax(-1)


picture_input = 4 * x                                                          # (batch, seq, hidden)
with torch.no_grad():
    weights = attention_weights(ours, picture_input)                          # (batch, heads, seq, seq)
    values = ours.split_heads(ours.v_proj(picture_input), ours.num_kv_heads).repeat_interleave(4, dim=1)
    rebuilt = ours.o_proj((weights @ values).transpose(1, 2).reshape(2, 12, -1))
    torch.testing.assert_close(rebuilt, ours(picture_input, rope, square_mask))
print("the plotted weights reproduce the module's output")

fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for head, ax in enumerate(axes):
    ax.imshow(weights[0, head].numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"query head {head} (KV head 0)")
    ax.set_xlabel("key position")
axes[0].set_ylabel("query position")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Against the reference: `transformers`' `GemmaAttention`
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
# and adds a mask; we broadcast and use the fused kernel), so we allow `rtol=1e-5, atol=1e-5`: a few float32
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
    additive = torch.zeros(seq, seq).masked_fill(~causal_mask(positions[0], positions[0]), float("-inf"))
    out, _ = layer(x, position_embeddings=(cos, sin), attention_mask=additive[None, None])
    return out


def compare_with_transformers(cfg, seed=0, seq=12, tweak=None):
    """Seeded reference layer -> same weights in ours -> assert_close. Returns the max |difference|."""
    torch.manual_seed(seed)
    reference = GemmaAttention(hf_config(cfg), layer_idx=0).eval()
    ours = Attention(cfg).eval()
    ours.load_state_dict(reference.state_dict())
    if tweak is not None:
        tweak(ours)
    x = torch.randn(2, seq, cfg.hidden_size)
    with torch.no_grad():
        expected = reference_attention_output(cfg, reference, x)
        actual = ours(x, rope_angles(torch.arange(seq), cfg.head_dim), causal_mask(torch.arange(seq), torch.arange(seq)))
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


ATTENTION_IMPLEMENTATIONS["tiled"] = attend_tiled
use_tiled = lambda attn: setattr(attn, "impl", "tiled")


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
del ATTENTION_IMPLEMENTATIONS["tiled"]

# %% [markdown]
# ## Summary
#
# You built **`minigemma/attention.py`**:
#
# * `causal_mask(q_positions, k_positions)`: who may read whom, by position (ready for the KV cache);
# * `attend_eager`: softmax$(QK^\top/\sqrt{d_h} + M)V$ with query heads grouped by KV head, K/V broadcast and
#   never copied, so MHA (7B), MQA (2B) and GQA are one code path;
# * `attend_sdpa`: the same through PyTorch's fused kernel (checked equal), the default;
# * `Attention`: q/k/v/o projections, RoPE on q and k, attention, output projection, equal to
#   `transformers`' `GemmaAttention` within float32 rounding.
#
# And one number to remember: Gemma 2B keeps 18 KiB of K/V per token, Gemma 7B 448 KiB.
# Next: the feed-forward half of the block, GeGLU (notebook 06).
