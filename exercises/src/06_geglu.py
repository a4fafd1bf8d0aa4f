# %% [markdown]
# # Exercise 06 · The GeGLU feed-forward
#
# After attention, every position goes through the same small network: two projections widen the vector to
# `intermediate_size`, the GELU of one (the *gate*) multiplies the other (*up*), and a third projection brings it
# back: `down(gelu(gate(x)) * up(x))`. Gemma was trained with the **tanh approximation** of GELU. No biases.
#
# Weights follow `nn.Linear`'s layout, `(out_features, in_features)`, so `gate(x)` is `x @ gate_weight.T`.
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import math

import torch

from minigemma.grading import check_gelu_tanh, check_geglu, check_geglu_fused

# %% [markdown]
# ## Task 1 · GELU, tanh approximation (2 points)
#
# Write `gelu_tanh(x)` from the formula, without `torch.nn.functional.gelu`:
# $$\mathrm{gelu}(x) = 0.5\,x\left(1 + \tanh\left(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\right)\right)$$

# %% solution geglu-gelu
def gelu_tanh(x):
    ### BEGIN SOLUTION
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    ### END SOLUTION

# %% grade geglu-gelu points=2
check_gelu_tanh(gelu_tanh)

# %% [markdown]
# ## Task 2 · The gated MLP (3 points)
#
# Write `geglu(x, gate_weight, up_weight, down_weight)` for `x` of shape `(batch, seq, hidden)`; `gate_weight` and
# `up_weight` are `(intermediate, hidden)`, `down_weight` is `(hidden, intermediate)`. Return `(batch, seq, hidden)`.

# %% solution geglu-mlp
def geglu(x, gate_weight, up_weight, down_weight):
    ### BEGIN SOLUTION
    gated = gelu_tanh(x @ gate_weight.T) * (x @ up_weight.T)            # (batch, seq, intermediate)
    return gated @ down_weight.T
    ### END SOLUTION

# %% grade geglu-mlp points=3
check_geglu(geglu)

# %% [markdown]
# ## Task 3 · A fused checkpoint (2 points)
#
# Some checkpoints store gate and up as one matrix of shape `(2 * intermediate, hidden)`: the gate's rows first,
# then the up projection's. Write `geglu_fused(x, gate_up_weight, down_weight)` computing the same MLP from it
# (one matrix multiply for both projections is the reason to fuse them).

# %% solution geglu-fused
def geglu_fused(x, gate_up_weight, down_weight):
    ### BEGIN SOLUTION
    gate, up = (x @ gate_up_weight.T).chunk(2, dim=-1)                  # (batch, seq, intermediate) each
    return (gelu_tanh(gate) * up) @ down_weight.T
    ### END SOLUTION

# %% grade geglu-fused points=2
check_geglu_fused(geglu_fused)
