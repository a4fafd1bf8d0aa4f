# %% [markdown]
# # Exercise 12 · Training: the loss and LoRA
#
# The training loss of a language model is the mean cross-entropy of each position's logits against the *next*
# token; padding is never a target. LoRA adds a trainable low-rank update to a frozen weight:
#
# $$y = x W^\top + \frac{\alpha}{r}\,(x A^\top) B^\top, \qquad A: (r, \text{in}),\; B: (\text{out}, r)$$
#
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch
import torch.nn.functional as F

from minigemma.grading import check_lora_forward, check_lora_merge, check_next_token_loss

# %% [markdown]
# ## Task 1 · The next-token loss (4 points)
#
# Write `next_token_loss(logits, input_ids, pad_id)` for logits `(batch, seq, vocab)` and ids `(batch, seq)`.
# Return a 0-d tensor: the mean over all non-padding targets of the cross-entropy between the logits at
# position t and the token at t + 1.

# %% solution loss-next-token
def next_token_loss(logits, input_ids, pad_id=0):
    ### BEGIN SOLUTION
    targets = input_ids[:, 1:].masked_fill(input_ids[:, 1:] == pad_id, -100)
    predictions = logits[:, :-1]
    return F.cross_entropy(predictions.reshape(-1, predictions.shape[-1]), targets.reshape(-1), ignore_index=-100)
    ### END SOLUTION

# %% grade loss-next-token points=4
check_next_token_loss(next_token_loss)

# %% [markdown]
# ## Task 2 · The LoRA forward pass (3 points)
#
# Write `lora_forward(x, W, A, B, alpha, r)` for x `(n, in)`, W `(out, in)`, A `(r, in)`, B `(out, r)`.

# %% solution lora-forward
def lora_forward(x, W, A, B, alpha, r):
    ### BEGIN SOLUTION
    return x @ W.T + (alpha / r) * (x @ A.T) @ B.T
    ### END SOLUTION

# %% grade lora-forward points=3
check_lora_forward(lora_forward)

# %% [markdown]
# ## Task 3 · Merging (2 points)
#
# Write `merge_lora_weight(W, A, B, alpha, r)`: the plain weight `(out, in)` that gives the same outputs as the
# adapted layer, so inference needs no adapter.

# %% solution lora-merge
def merge_lora_weight(W, A, B, alpha, r):
    ### BEGIN SOLUTION
    return W + (alpha / r) * B @ A
    ### END SOLUTION

# %% grade lora-merge points=2
check_lora_merge(merge_lora_weight)
