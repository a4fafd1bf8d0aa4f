# %% [markdown]
# # Exercise 08 · The KV cache and sampling
#
# Generating one token at a time, the model would recompute the keys and values of the whole prefix at every step.
# A **KV cache** keeps them: each step runs only the new token, appends its keys and values, and attends over
# everything stored. Then a **sampler** turns the last position's logits into the next token.
#
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch

import minigemma as mg
from minigemma.rmsnorm import RMSNorm
from minigemma.rope import rope_angles
from minigemma.attention import causal_mask
from minigemma.block import DecoderBlock
from minigemma.embedding import Embedding
from minigemma.grading import (check_greedy_generate, check_kv_cache, check_rolling_kv_cache,
                               check_temperature_top_k, check_top_p)

# %% [markdown]
# ## Task 1 · Complete the cache (3 points)
#
# The class below pre-allocates room for `max_len` positions per layer. minigemma's model calls
# `cache.update(layer, k, v)` in every layer with the new keys and values `(batch, kv_heads, seq, head_dim)`, uses
# `cache.length` (positions already stored) as the position of the first new token, and calls `cache.advance(seq)`
# once all layers are done.
#
# Write `update`: store `k` and `v` in this layer's slice at positions `length .. length + seq - 1` and return
# `(keys, values)` holding every position stored so far for this layer, `(batch, kv_heads, length + seq, head_dim)`.
# The check decodes with your cache inside a tiny Gemma and compares with running the whole sequence at once.

# %% solution kv-cache
class KVCache:
    def __init__(self, config, batch_size, max_len, dtype=torch.float32):
        shape = (config.num_layers, batch_size, config.num_kv_heads, max_len, config.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype)
        self.values = torch.zeros(shape, dtype=dtype)
        self.length = 0                                    # positions stored so far

    def update(self, layer, k, v):
        ### BEGIN SOLUTION
        start, end = self.length, self.length + k.shape[2]
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]
        ### END SOLUTION

    def advance(self, seq_len):
        self.length += seq_len

# %% grade kv-cache points=3
check_kv_cache(KVCache)

# %% [markdown]
# ## Task 2 · A rolling cache (3 points)
#
# Gemma 3's local layers only look at the last `window` tokens, so their cache never needs more than `window` slots:
# token number `t` (counting from 0) goes into slot `t % window`, overwriting the token `window` steps older.
#
# Complete `append(k, v)`, called once per generated token with `k`, `v` of shape `(batch, kv_heads, 1, head_dim)`.
# It must return `(keys, values)` for the last `min(tokens seen, window)` tokens **in time order, oldest first**
# (after the buffer wraps, storage order is no longer time order).

# %% solution kv-rolling
class RollingKVCache:
    def __init__(self, window, batch_size, kv_heads, head_dim):
        self.window = window
        self.keys = torch.zeros(batch_size, kv_heads, window, head_dim)
        self.values = torch.zeros(batch_size, kv_heads, window, head_dim)
        self.length = 0                                    # tokens seen so far

    def append(self, k, v):
        ### BEGIN SOLUTION
        slot = self.length % self.window
        self.keys[:, :, slot] = k[:, :, 0]
        self.values[:, :, slot] = v[:, :, 0]
        self.length += 1
        if self.length <= self.window:
            return self.keys[:, :, :self.length], self.values[:, :, :self.length]
        order = [(self.length + i) % self.window for i in range(self.window)]   # oldest slot first
        return self.keys[:, :, order], self.values[:, :, order]
        ### END SOLUTION

# %% grade kv-rolling points=3
check_rolling_kv_cache(RollingKVCache)

# %% [markdown]
# ## Task 3 · Temperature and top-k (2 points)
#
# Write `next_token_probs(logits, temperature, top_k=None)`: `logits` is `(batch, vocab)`, `temperature > 0`.
# Return the probabilities `(batch, vocab)` to sample from: the softmax of the logits divided by the temperature,
# restricted (when `top_k` is given) to the `top_k` largest logits, every other token getting probability 0.

# %% solution sampling-temperature
def next_token_probs(logits, temperature, top_k=None):
    ### BEGIN SOLUTION
    scaled = logits / temperature
    if top_k is not None:
        kth_largest = scaled.topk(top_k, dim=-1).values[:, -1:]          # (batch, 1)
        scaled = scaled.masked_fill(scaled < kth_largest, float("-inf"))
    return scaled.softmax(dim=-1)
    ### END SOLUTION

# %% grade sampling-temperature points=2
check_temperature_top_k(next_token_probs)

# %% [markdown]
# ## Task 4 · Nucleus (top-p) filtering (3 points)
#
# Top-p keeps the **smallest** set of most likely tokens whose probabilities add up to at least `top_p`. Write
# `top_p_filter(logits, top_p)` returning a copy of `logits` `(batch, vocab)` with every token outside that set
# set to `-inf` (the kept logits unchanged). Careful with the token that takes the running total past `top_p`:
# is it in the set?

# %% solution sampling-top-p
def top_p_filter(logits, top_p):
    ### BEGIN SOLUTION
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs                        # probability of the better tokens
    drop_sorted = mass_before >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)               # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))
    ### END SOLUTION

# %% grade sampling-top-p points=3
check_top_p(top_p_filter)

# %% [markdown]
# ## Task 5 · The generation loop (4 points)
#
# Put it together: greedy decoding with your `KVCache` from task 1. `TinyGemma` below (given; minigemma's blocks)
# runs `model(ids, cache)`: `ids` `(1, seq)` are the *new* tokens, placed after the `cache.length` tokens already
# cached; it returns logits `(1, seq, vocab)` and advances the cache.
#
# Write `generate(model, prompt_ids, max_new_tokens, stop_ids)` returning the list of new ids: run the prompt once,
# then feed back only the token just chosen, at most `max_new_tokens` times. Greedy means the most likely next
# token. When the token chosen is one of `stop_ids`, keep it in the result and stop.

# %%
class TinyGemma(torch.nn.Module):
    """A tiny Gemma from minigemma's blocks: forward(ids, cache) runs the new ids after the cached ones."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed = Embedding(config.vocab_size, config.hidden_size)
        self.layers = torch.nn.ModuleList(DecoderBlock(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.fed = []                                                 # ids per call (the check reads it)

    def forward(self, ids, cache):
        self.fed.append(ids.shape[1])
        positions = torch.arange(cache.length, cache.length + ids.shape[1])
        rope = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
        mask = causal_mask(positions, torch.arange(cache.length + ids.shape[1]))
        h = self.embed(ids)                                           # (1, seq, hidden)
        for block in self.layers:
            h = block(h, rope, mask, cache)
        cache.advance(ids.shape[1])
        return self.embed.logits(self.norm(h))                        # (1, seq, vocab)

# %% solution generate-greedy
def generate(model, prompt_ids, max_new_tokens, stop_ids):
    ### BEGIN SOLUTION
    cache = KVCache(model.config, 1, len(prompt_ids) + max_new_tokens)
    step_input, new_ids = torch.tensor([prompt_ids]), []
    for _ in range(max_new_tokens):
        logits = model(step_input, cache)                             # (1, seq, vocab)
        next_id = int(logits[0, -1].argmax())
        new_ids.append(next_id)
        if next_id in stop_ids:
            break
        step_input = torch.tensor([[next_id]])                        # only the new token goes in
    return new_ids
    ### END SOLUTION

# %% grade generate-greedy points=4
check_greedy_generate(generate, TinyGemma)
