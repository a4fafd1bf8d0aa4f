# %% [markdown]
# # Exercise 02 · Embeddings
#
# Token ids become vectors by picking rows of the embedding matrix `E` (vocab × hidden). Gemma then multiplies each
# vector by `sqrt(hidden_size)`, and the *same* matrix turns the last hidden state back into one logit per token
# (a "tied" output head).
#
# After each task, run the check cell below it: it answers **passed** or says what is wrong. Do not edit the check
# cells.

# %%
import math

import torch

from minigemma.grading import check_embed, check_embedding_scale, check_tied_logits

# %% [markdown]
# ## Task 1 · The scaled lookup (3 points)
#
# Write `embed(weight, ids)`: `weight` is `E` with shape `(vocab, hidden)` in float32 or bfloat16, `ids` an int64
# tensor `(batch, seq)`; return `(batch, seq, hidden)` in `weight`'s dtype: the rows of `E` times
# `sqrt(hidden)`.
#
# The detail that matters: Gemma's checkpoints were trained with the scale **rounded to the compute dtype first**,
# `torch.tensor(math.sqrt(hidden), dtype=weight.dtype)`. In bfloat16 that turns 45.2548… into 45.25, and multiplying
# by the unrounded number changes about a quarter of the outputs.

# %% solution embedding-lookup
def embed(weight, ids):
    ### BEGIN SOLUTION
    scale = torch.tensor(math.sqrt(weight.shape[1]), dtype=weight.dtype)
    return weight[ids] * scale
    ### END SOLUTION

# %% grade embedding-lookup points=3
check_embed(embed)

# %% [markdown]
# ## Task 2 · Which number, exactly? (2 points)
#
# Write `embedding_scale(hidden_size, dtype)` returning, as a Python float, the number the model *actually*
# multiplies by in that dtype (bfloat16, float16 or float32). For Gemma 7B in bfloat16, is it 55.4256…, 55.25 or
# 55.5? Try a few sizes you have not seen (2304, 3584, …) before you run the check.

# %% solution embedding-scale
def embedding_scale(hidden_size, dtype):
    ### BEGIN SOLUTION
    return torch.tensor(math.sqrt(hidden_size), dtype=dtype).item()
    ### END SOLUTION

# %% grade embedding-scale points=2
check_embedding_scale(embedding_scale)

# %% [markdown]
# ## Task 3 · The tied output head (2 points)
#
# Write `tied_logits(h, weight)`: `h` is the final hidden state `(batch, seq, hidden)`, `weight` the embedding
# matrix `(vocab, hidden)`; return the logits `(batch, seq, vocab)`. Is the `sqrt(hidden)` scale applied here
# too?

# %% solution embedding-head
def tied_logits(h, weight):
    ### BEGIN SOLUTION
    return h @ weight.T
    ### END SOLUTION

# %% grade embedding-head points=2
check_tied_logits(tied_logits)
