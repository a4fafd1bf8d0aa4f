# Notebook 03: RMSNorm as Gemma uses it: vs LayerNorm, the (1 + weight) parameterisation, float32 statistics.

# %% [markdown]
# # 03 · RMSNorm: `(1 + weight)`, zero init, statistics in float32
#
# **What you will build.** `minigemma/rmsnorm.py`: the normalisation Gemma applies before attention, before the
# MLP, and once at the end (37 of them in 2B, 57 in 7B). It is a few lines, and each carries a convention that,
# when missed, silently breaks a checkpoint.
#
# **What you need to know.** Mean, variance and root-mean-square of a vector; notebook 02's bfloat16 notes.
#
# **How we check.** Against PyTorch's own `layer_norm` / `rms_norm`, against `minigemma`, and against the
# reference `transformers` `GemmaRMSNorm` on the same weights: float32 to rounding error, bfloat16 bit for bit.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

import minigemma as mg
from minigemma.rmsnorm import RMSNorm as PackageRMSNorm

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
print("torch", torch.__version__)

# %% [markdown]
# ## 1. LayerNorm and RMSNorm
#
# LayerNorm centres a vector $x \in \mathbb{R}^D$ and scales it to unit variance, then applies a learned scale
# $\gamma$ and shift $\beta$:
#
# $$\mathrm{LayerNorm}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta, \qquad
#   \mu = \tfrac1D \textstyle\sum_i x_i,\quad \sigma^2 = \tfrac1D \sum_i (x_i - \mu)^2.$$
#
# RMSNorm drops the centring and the shift, and divides by the root mean square:
#
# $$\mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\tfrac1D \sum_i x_i^2 + \epsilon}} \odot s.$$
#
# Cheaper (one statistic instead of two), and in practice just as good. When the mean is already zero the two
# coincide:

# %%
D, eps = 2048, 1e-6
x = torch.randn(4, D, generator=gen) * 3 + 1.5                 # (batch, hidden), mean 1.5 on purpose

def rms_normalize(x, eps=1e-6):                                 # no learned scale yet
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)

torch.testing.assert_close(rms_normalize(x), F.rms_norm(x, (D,), eps=eps))    # PyTorch's own rms_norm
centred = x - x.mean(dim=-1, keepdim=True)
torch.testing.assert_close(rms_normalize(centred), F.layer_norm(x, (D,), eps=eps))
print("RMSNorm of the centred vector == LayerNorm;  RMSNorm(x) == torch.nn.functional.rms_norm(x)")
print("output RMS:", [round(v, 4) for v in rms_normalize(x).pow(2).mean(-1).sqrt().tolist()])
gap = (F.layer_norm(x, (D,), eps=eps) - rms_normalize(x)).abs().max()
print(f"LayerNorm vs RMSNorm on x with mean 1.5: max difference {gap:.2f}")

# %% [markdown]
# **A picture in two dimensions.** RMSNorm keeps each vector's direction and puts it on the circle of radius
# $\sqrt{D} = \sqrt 2$ (RMS 1). LayerNorm first subtracts the mean, which in two dimensions leaves only the
# directions $\pm(1, -1)$: every point lands on one of two dots.

# %%
points = torch.randn(200, 2, generator=gen) * torch.tensor([1.5, 0.7]) + torch.tensor([0.8, 0.3])
rms_out = rms_normalize(points, eps=0.0)
ln_out = F.layer_norm(points, (2,), eps=0.0)

fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), sharex=True, sharey=True)
circle = torch.linspace(0, 2 * torch.pi, 200)
for ax, out, title in ((axes[0], rms_out, "RMSNorm: onto the circle of radius √2"),
                       (axes[1], ln_out, "LayerNorm: centre first, then scale")):
    ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.4, label="input")
    ax.scatter(out[:, 0], out[:, 1], s=14, color="tab:red", label="output")
    ax.plot(2 ** 0.5 * circle.cos(), 2 ** 0.5 * circle.sin(), color="gray", linewidth=0.8)
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()
torch.testing.assert_close(rms_out.norm(dim=-1), torch.full((200,), 2 ** 0.5))
print("distinct LayerNorm outputs:", sorted({tuple(round(v, 3) for v in p.tolist()) for p in ln_out}))

# %% [markdown]
# ## 2. Gemma's scale is $1 + w$, and $w$ starts at zero
#
# Gemma stores the learned scale as an *offset from one*: $s = 1 + w$. The weight is initialised to zeros, so a
# fresh norm is exactly the plain RMS normalisation above, and the checkpoints store $w$, not $s$.
# Llama-style code multiplies by the stored weight directly; loading Gemma weights into it scales every
# normalised vector by $w$ instead of $1 + w$.
#
# $$\mathrm{RMSNorm}_\text{Gemma}(x) = \frac{x}{\sqrt{\tfrac1D \sum_i x_i^2 + \epsilon}} \odot (1 + w),
#   \qquad \epsilon = 10^{-6}.$$

# %%
w = torch.randn(D, generator=gen) * 0.3                    # a trained-looking offset
gemma_style = rms_normalize(x) * (1 + w)
torch.testing.assert_close(gemma_style, F.rms_norm(x, (D,), weight=1 + w, eps=eps))   # (1 + w) as a plain weight
zero_w = torch.zeros(D)
torch.testing.assert_close(rms_normalize(x) * (1 + zero_w), rms_normalize(x), rtol=0, atol=0)
print("with w = 0 the norm is exactly the plain RMS normalisation")

# %% [markdown]
# ## 3. Statistics in float32
#
# The model runs in bfloat16, but the norm converts its input to float32, computes $\frac1D\sum x_i^2$, the
# reciprocal square root and the multiplication by $(1 + w)$ in float32, and rounds to bfloat16 **once**, at
# the end. Doing the arithmetic in bfloat16 instead rounds at every step; in float16 (5 exponent bits) $x_i^2$
# even overflows as soon as $|x_i| > 256$, a size large residual-stream values can reach.

# %%
x_bf16 = (torch.randn(64, D, generator=gen) * 20).to(torch.bfloat16)       # residual-stream-like values
w_bf16 = (torch.randn(D, generator=gen) * 0.3).to(torch.bfloat16)

upcast = (rms_normalize(x_bf16.float()) * (1 + w_bf16.float())).to(torch.bfloat16)   # Gemma: round once
all_bf16 = rms_normalize(x_bf16) * (1 + w_bf16)                                       # round at every step
print(f"bfloat16 all the way: {(all_bf16 != upcast).float().mean():.1%} of outputs differ from the float32 path")

big = torch.full((1, D), 300.0, dtype=torch.float16)
print("float16, |x| = 300:  in float16 ->", rms_normalize(big)[0, :3].tolist(),
      "  upcast ->", rms_normalize(big.float()).half()[0, :3].tolist())

# %% [markdown]
# ## 4. The package module
#
# `rms_norm` is the whole computation; `RMSNorm` holds the zero-initialised weight. The package's own source:

# %% export minigemma.rmsnorm.rms_norm minigemma.rmsnorm.RMSNorm

# %% [markdown]
# **Check against the reference** `transformers` `GemmaRMSNorm`, with non-zero weights (zero weights would hide
# the $(1 + w)$ convention). float32: the same operations in a possibly different order, default tolerances
# (rtol 1.3e-6, atol 1e-5). bfloat16: both compute in float32 and round once, so the results must be identical.

# %%
def both_norms(dim, weight):
    ours, reference = RMSNorm(dim), GemmaRMSNorm(dim, eps=1e-6)
    assert torch.equal(ours.weight, torch.zeros(dim)) and torch.equal(reference.weight, torch.zeros(dim))
    with torch.no_grad():
        ours.weight.copy_(weight)
        reference.weight.copy_(weight)
    return ours, reference

for dim in (2048, 3072):
    weight = torch.randn(dim, generator=gen) * 0.5
    ours, reference = both_norms(dim, weight)
    h = torch.randn(2, 7, dim, generator=gen) * 10                     # (batch, seq, hidden)
    package = PackageRMSNorm(dim)
    with torch.no_grad():
        package.weight.copy_(weight)
        torch.testing.assert_close(ours(h), package(h), rtol=0, atol=0)         # the same code: identical
        torch.testing.assert_close(ours(h), reference(h))
        ours_bf16, reference_bf16 = ours.to(torch.bfloat16), reference.to(torch.bfloat16)   # (in place)
        torch.testing.assert_close(ours_bf16(h.bfloat16()), reference_bf16(h.bfloat16()), rtol=0, atol=0)
    out_dtype = ours_bf16(h.bfloat16()).dtype
    print(f"dim {dim}: float32 matches GemmaRMSNorm, bfloat16 bit-identical, output dtype {out_dtype}")

# %% [markdown]
# ## 5. Common mistakes
#
# **Multiplying by $w$ instead of $1 + w$** (the Llama convention). With a freshly initialised Gemma norm the
# output is all zeros; with checkpoint weights it is wrong everywhere. The reference check catches it:

# %%
weight = torch.randn(D, generator=gen) * 0.5
ours, reference = both_norms(D, weight)
h = torch.randn(2, 7, D, generator=gen)
llama_style = rms_normalize(h) * weight
try:
    torch.testing.assert_close(llama_style, reference(h).detach())
except AssertionError as err:
    print("caught:", str(err).splitlines()[0], "-", str(err).splitlines()[2].strip())
else:
    raise RuntimeError("the check missed the mistake")
print("fresh norm, Llama-style:", (rms_normalize(h) * torch.zeros(D)).abs().max().item())

# %% [markdown]
# **Rounding before the weight** (again the Llama order: normalise, cast to bfloat16, then multiply). Each output
# is rounded twice instead of once; the bit-exact bfloat16 check catches it:

# %%
h_bf16 = (torch.randn(8, D, generator=gen) * 5).bfloat16()
reference_bf16 = reference.to(torch.bfloat16)
with torch.no_grad():
    expected = reference_bf16(h_bf16)
    rounded_twice = rms_normalize(h_bf16.float()).to(torch.bfloat16) * (1 + reference_bf16.weight)
print(f"{(rounded_twice != expected).float().mean():.1%} of outputs differ")
try:
    torch.testing.assert_close(rounded_twice, expected, rtol=0, atol=0)
except AssertionError as err:
    print("caught:", str(err).splitlines()[0])
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# ## Summary
#
# * RMSNorm = LayerNorm without centring and without bias: $x / \sqrt{\mathrm{mean}(x^2) + \epsilon}$.
# * Gemma scales by $(1 + w)$ with $w$ initialised to **zero**; checkpoints store $w$.
# * Statistics and the weight multiplication happen in **float32**, rounded once to the compute dtype;
#   $\epsilon = 10^{-6}$ inside the square root.
# * Matches `transformers`' `GemmaRMSNorm`: float32 to rounding error, bfloat16 bit for bit.
# * Package module produced: **`minigemma/rmsnorm.py`** (`rms_norm`, `RMSNorm`).
#
# **Exercise:** [`../exercises/03_rmsnorm.ipynb`](../exercises/03_rmsnorm.ipynb). Next: 04, RoPE.
