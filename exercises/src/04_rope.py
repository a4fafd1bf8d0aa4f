# %% [markdown]
# # Exercise 04 · Rotary position embedding (RoPE)
#
# Gemma tells attention *where* each token is by rotating the query and key vectors. A head vector of size
# `head_dim` is seen as `head_dim / 2` pairs; pair `i` turns by the angle `position * theta ** (-2i / head_dim)`
# (theta = 10000). Gemma pairs element `i` with element `i + head_dim/2` (the **half-split** layout), and rotates in
# float32.
#
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch

from minigemma.grading import check_rope_angles, check_rope, check_interleaved_to_half_split

# %% [markdown]
# ## Task 1 · The angle tables (2 points)
#
# Write `rope_angles(positions, head_dim, theta=10000.0)`: `positions` is an int64 tensor `(seq,)`; return the
# pair `(cos, sin)`, each float32 of shape `(seq, head_dim // 2)`, of the angles `position * theta ** (-2i / head_dim)`.

# %% solution rope-angles
def rope_angles(positions, head_dim, theta=10000.0):
    ### BEGIN SOLUTION
    i = torch.arange(head_dim // 2, dtype=torch.float32)
    inv_freq = 1.0 / theta ** (2 * i / head_dim)                      # (head_dim // 2,)
    angles = positions.float()[:, None] * inv_freq[None, :]          # (seq, head_dim // 2)
    return angles.cos(), angles.sin()
    ### END SOLUTION

# %% grade rope-angles points=2
check_rope_angles(rope_angles)

# %% [markdown]
# ## Task 2 · Rotate (4 points)
#
# Write `apply_rope(x, cos, sin)` for `x` of shape `(batch, heads, seq, head_dim)` (float32 or bfloat16) and tables
# from Task 1. Pair `i` is `(x[..., i], x[..., i + head_dim/2])`: rotate each pair, as a point in the plane, by its
# angle (a rotation by +angle: work out where the point (1, 0) goes). Compute in float32 and return `x`'s dtype.

# %% solution rope-apply
def apply_rope(x, cos, sin):
    ### BEGIN SOLUTION
    half = x.shape[-1] // 2
    x32 = x.float()
    x1, x2 = x32[..., :half], x32[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
    ### END SOLUTION

# %% grade rope-apply points=4
check_rope(apply_rope)

# %% [markdown]
# ## Task 3 · Convert interleaved weights (3 points)
#
# Many codebases (Meta's original LLaMA among them) rotate **interleaved** pairs `(x[2i], x[2i+1])` instead. A
# checkpoint trained that way can still run in Gemma's half-split code if you reorder the rows of its `q_proj` and
# `k_proj` weights, within each head, so that the old even rows come first and the old odd rows second.
#
# Write `interleaved_to_half_split(weight, head_dim)`: `weight` is `(heads * head_dim, hidden)`; return the reordered
# copy. The check also verifies the point of it all: attention scores are unchanged.

# %% solution rope-convert
def interleaved_to_half_split(weight, head_dim):
    ### BEGIN SOLUTION
    rows, hidden = weight.shape
    per_head = weight.view(rows // head_dim, head_dim // 2, 2, hidden)   # (heads, pair, even/odd, hidden)
    return per_head.transpose(1, 2).reshape(rows, hidden)
    ### END SOLUTION

# %% grade rope-convert points=3
check_interleaved_to_half_split(interleaved_to_half_split)
