# %% [markdown]
# # Exercise 03 · RMSNorm
#
# Before attention, before the MLP and at the very top, Gemma rescales each vector by the inverse of its
# root-mean-square:
#
# $$y = \frac{x}{\sqrt{\mathrm{mean}(x^2) + \epsilon}} \cdot (1 + w), \qquad \epsilon = 10^{-6}$$
#
# Three details make or break it: the learned weight is an *offset from one* (initialised to zero), epsilon sits
# *inside* the square root, and the statistics are computed in **float32** even when the model runs in bfloat16,
# with a single rounding back at the end.
#
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch
from torch import nn

from minigemma.grading import check_rms_norm, check_rmsnorm_module, check_fold_norm

# %% [markdown]
# ## Task 1 · The function (4 points)
#
# Write `rms_norm(x, weight, eps=1e-6)` for `x` of shape `(..., dim)` in float32 or bfloat16 and `weight` of shape
# `(dim,)`. Return the input's dtype. The check tries float32 first, then bfloat16.

# %% solution rmsnorm-function
def rms_norm(x, weight, eps=1e-6):
    ### BEGIN SOLUTION
    x32 = x.float()
    inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x32 * inv_rms * (1.0 + weight.float())).to(x.dtype)
    ### END SOLUTION

# %% grade rmsnorm-function points=4
check_rms_norm(rms_norm)

# %% [markdown]
# ## Task 2 · The module (2 points)
#
# Wrap it in an `nn.Module` called `RMSNorm(dim, eps=1e-6)` with one parameter named `weight`, shape `(dim,)`,
# initialised so that a fresh norm scales by exactly one.

# %% solution rmsnorm-module
class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        ### BEGIN SOLUTION
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        ### END SOLUTION

    def forward(self, x):
        ### BEGIN SOLUTION
        return rms_norm(x, self.weight, self.eps)
        ### END SOLUTION

# %% grade rmsnorm-module points=2
check_rmsnorm_module(RMSNorm)

# %% [markdown]
# ## Task 3 · Fold the norm into the next layer (3 points)
#
# An RMSNorm is always followed by a linear layer (`q_proj`, `gate_proj`, …). Since `(1 + w)` multiplies each input
# feature of that layer, it can be folded into the layer's weight once and for all, leaving a norm with scale one.
#
# Write `fold_norm_weight(norm_weight, linear_weight)` returning a new linear weight `W'` (same shape as
# `linear_weight`, which is `(out_features, dim)` as in `nn.Linear`) such that
# `F.linear(rms_norm(x, zeros), W') == F.linear(rms_norm(x, norm_weight), linear_weight)`.

# %% solution rmsnorm-fold
def fold_norm_weight(norm_weight, linear_weight):
    ### BEGIN SOLUTION
    return linear_weight * (1.0 + norm_weight)[None, :]
    ### END SOLUTION

# %% grade rmsnorm-fold points=3
check_fold_norm(fold_norm_weight)
