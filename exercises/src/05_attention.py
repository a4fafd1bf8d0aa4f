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

from minigemma.grading import check_causal_mask, check_attention, check_gqa, check_sliding_window_mask

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
