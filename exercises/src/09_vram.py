# %% [markdown]
# # Exercise 09 · VRAM math
#
# Will it fit? Memory for inference is the weights plus the KV cache plus temporary buffers (activations). This
# exercise counts only the first two. The third is not negligible: lesson 09 shows that Gemma 2B's logits for
# every position of an 8k-token prompt take about 3.9 GiB (generation asks for the last position only), and eager
# attention's scores grow with the square of the length; lesson 09 adds them. Weights and cache follow from the
# config alone. The checks try Gemma 2B and 7B **and random configs you have
# never seen**, so count from the fields, not from memory.
#
# `GemmaConfig` fields: `vocab_size`, `hidden_size`, `intermediate_size` (each GeGLU branch), `num_layers`,
# `num_heads`, `num_kv_heads`, `head_dim`, `max_seq_len`.
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch

import minigemma as mg
from minigemma.grading import check_parameter_count, check_kv_cache_bytes, check_max_context

print(mg.GemmaConfig.gemma_7b())

# %% [markdown]
# ## Task 1 · Count the parameters (3 points)
#
# Write `count_parameters(config)` returning the number of parameters of a Gemma 1 model: the embedding (tied to the
# output head), per layer the four attention projections, the three GeGLU matrices and the two RMSNorm weights,
# and the final norm. No biases. (Gemma 2B has 2,506,172,416.)

# %% solution vram-parameters
def count_parameters(config):
    ### BEGIN SOLUTION
    d, hd = config.hidden_size, config.head_dim
    attention = d * hd * (config.num_heads + 2 * config.num_kv_heads) + config.num_heads * hd * d   # q, k, v, o
    mlp = 3 * d * config.intermediate_size
    norms = 2 * d
    return config.vocab_size * d + config.num_layers * (attention + mlp + norms) + d
    ### END SOLUTION

# %% grade vram-parameters points=3
check_parameter_count(count_parameters)

# %% [markdown]
# ## Task 2 · The KV cache of a config you have not seen (3 points)
#
# Write `kv_cache_bytes(config, batch_size, seq_len, dtype)` returning the bytes a KV cache needs for `batch_size`
# sequences of `seq_len` positions: keys and values, in every layer, for every KV head. `dtype` is a torch dtype;
# `dtype.itemsize` gives its bytes per number.

# %% solution vram-kv-bytes
def kv_cache_bytes(config, batch_size, seq_len, dtype):
    ### BEGIN SOLUTION
    per_number = dtype.itemsize
    numbers = 2 * config.num_layers * batch_size * config.num_kv_heads * seq_len * config.head_dim
    return numbers * per_number
    ### END SOLUTION

# %% grade vram-kv-bytes points=3
check_kv_cache_bytes(kv_cache_bytes)

# %% [markdown]
# ## Task 3 · The longest context that fits (2 points)
#
# Write `max_context(config, memory_bytes, batch_size, dtype)` returning the largest `seq_len` such that the
# weights (stored in `dtype`) plus the KV cache for `batch_size` sequences of `seq_len` positions fit in
# `memory_bytes`. It can never exceed `config.max_seq_len`; return 0 when the weights alone do not fit.

# %% solution vram-context
def max_context(config, memory_bytes, batch_size, dtype):
    ### BEGIN SOLUTION
    weights = count_parameters(config) * dtype.itemsize
    per_position = kv_cache_bytes(config, batch_size, 1, dtype)
    free = memory_bytes - weights
    if free <= 0:
        return 0
    return min(free // per_position, config.max_seq_len)
    ### END SOLUTION

# %% grade vram-context points=2
check_max_context(max_context)
