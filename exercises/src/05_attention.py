# %% [markdown]
# # Exercise 05 · Attention
#
# Each query scores every key it may see, `q @ k^T / sqrt(head_dim)`, a softmax turns the scores into weights, and
# the output is the weighted sum of the values. *Causal*: a token sees itself and the tokens before it, never the
# ones after. Gemma 2B shares one key/value head among all 8 query heads (MQA); Gemma 7B gives each query head its
# own (MHA); in between is GQA.
#
# Shapes: `q` is `(batch, heads, seq, head_dim)`, `k` and `v` are `(batch, kv_heads, seq, head_dim)`.
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import math

import torch

from minigemma.grading import (check_attention, check_attention_module, check_causal_mask, check_gqa,
                               check_sliding_window_mask)

# %% [markdown]
# ## Task 1 · The causal mask, with a cache (2 points)
#
# Write `causal_mask(q_len, k_len)` returning a boolean `(q_len, k_len)` tensor, `True` where a query may attend a
# key. With a KV cache there can be more keys than queries (`k_len >= q_len`): the queries are then the **last**
# `q_len` positions of the sequence.

# %% solution attention-mask
def causal_mask(q_len, k_len):
    ### BEGIN SOLUTION
    q_positions = torch.arange(k_len - q_len, k_len)
    k_positions = torch.arange(k_len)
    return k_positions[None, :] <= q_positions[:, None]
    ### END SOLUTION

# %% grade attention-mask points=2
check_causal_mask(causal_mask)

# %% [markdown]
# ## Task 2 · Scaled dot-product attention (4 points)
#
# Write `attention(q, k, v)` for multi-head attention (as many KV heads as query heads) with a causal mask; return
# `(batch, heads, seq, head_dim)`. Compute the scores, scale, mask with `-inf`, softmax over the keys, weight the
# values. (No `F.scaled_dot_product_attention`: write it out.)

# %% solution attention-core
def attention(q, k, v):
    ### BEGIN SOLUTION
    seq, head_dim = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)              # (batch, heads, seq, seq)
    allowed = torch.ones(seq, seq, dtype=torch.bool).tril()          # key <= query
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1) @ v
    ### END SOLUTION

# %% grade attention-core points=4
check_attention(attention)

# %% [markdown]
# ## Task 3 · From MQA to GQA (3 points)
#
# Generalise: write `attention_gqa(q, k, v)` where `k` and `v` have `kv_heads` heads, any divisor of `heads`.
# Query heads are split into `kv_heads` consecutive groups; every head of group `g` reads KV head `g`. So query
# head `i` reads KV head `i // (heads // kv_heads)`. Your function must work for MHA (kv_heads = heads) and MQA
# (kv_heads = 1) too.

# %% solution attention-gqa
def attention_gqa(q, k, v):
    ### BEGIN SOLUTION
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)                             # (batch, heads, seq, head_dim)
    v = v.repeat_interleave(group, dim=1)
    seq, head_dim = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    allowed = torch.ones(seq, seq, dtype=torch.bool).tril()
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1) @ v
    ### END SOLUTION

# %% grade attention-gqa points=3
check_gqa(attention_gqa)

# %% [markdown]
# ## Task 4 · Gemma 3's sliding window (2 points)
#
# Gemma 3's "local" layers let each token see only the last `window` tokens, itself included. Write
# `sliding_window_mask(seq_len, window)` returning the boolean `(seq_len, seq_len)` mask: causal *and* local.

# %% solution attention-window
def sliding_window_mask(seq_len, window):
    ### BEGIN SOLUTION
    positions = torch.arange(seq_len)
    distance = positions[:, None] - positions[None, :]                # query minus key
    return (distance >= 0) & (distance < window)
    ### END SOLUTION

# %% grade attention-window points=2
check_sliding_window_mask(sliding_window_mask)

# %% [markdown]
# ## Task 5 · The attention module (4 points)
#
# Now the whole layer, as a Gemma checkpoint stores it. `x` is the residual stream `(batch, seq, hidden)`; four
# linear maps (no bias) hold the weights: `q_proj` to `heads * head_dim`, `k_proj` and `v_proj` to
# `kv_heads * head_dim`, `o_proj` back to `hidden`. The order is **project -> RoPE -> attend -> project back**:
# split each projection into heads, rotate `q` and `k` with the `cos`, `sin` tables `(seq, head_dim // 2)` exactly
# as in exercise 04 (bring your `apply_rope` into this cell), attend causally with your `attention_gqa`, merge the
# heads back and apply `o_proj`. Keep the layer names: the check loads a checkpoint's weights into your module.
# It tries MQA, GQA and MHA.

# %% solution attention-module
class Attention(torch.nn.Module):
    def __init__(self, hidden_size, num_heads, num_kv_heads, head_dim):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = torch.nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = torch.nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = torch.nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = torch.nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def forward(self, x, cos, sin):
        ### BEGIN SOLUTION
        batch, seq, _ = x.shape

        def heads(t, count):                                          # (batch, count, seq, head_dim)
            return t.view(batch, seq, count, self.head_dim).transpose(1, 2)

        def rope(t):                                                  # half-split pairs (i, i + head_dim/2)
            t1, t2 = t[..., : self.head_dim // 2], t[..., self.head_dim // 2:]
            return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1)
        q = rope(heads(self.q_proj(x), self.num_heads))
        k = rope(heads(self.k_proj(x), self.num_kv_heads))
        v = heads(self.v_proj(x), self.num_kv_heads)
        out = attention_gqa(q, k, v)                                  # (batch, heads, seq, head_dim)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))
        ### END SOLUTION

# %% grade attention-module points=4
check_attention_module(Attention)
