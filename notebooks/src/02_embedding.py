# Notebook 02: token embedding, the sqrt(hidden) scale rounded to the compute dtype, and the tied output head.

# %% [markdown]
# # 02 · Embeddings: lookup, the $\sqrt{D}$ scale, and the tied head
#
# **What you will build.** `minigemma/embedding.py`: the embedding lookup that turns token ids into vectors,
# Gemma's multiplication by $\sqrt{D}$ (rounded to the compute dtype, a detail that decides whether you match
# the reference bit for bit), and the *tied* output head that reuses the same matrix to produce logits.
#
# **What you need to know.** Token ids from notebook 01; matrix products; floating-point formats in outline
# (float32, and bfloat16: 8 exponent bits like float32 but only 8 significant bits).
#
# **How we check.** Against plain matrix algebra, against `minigemma`, and against the reference:
# `transformers`' `GemmaTextScaledWordEmbedding`, the layer `GemmaModel` uses, on identical weights; in
# bfloat16 we demand **bit-identical** results, since both sides perform the same operations in the same dtype.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.gemma.modeling_gemma import GemmaTextScaledWordEmbedding

import minigemma as mg

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
print("torch", torch.__version__)

# %% [markdown]
# ## 1. Lookup is a matrix product with one-hot vectors
#
# The embedding matrix $E \in \mathbb{R}^{V \times D}$ has one row per vocabulary entry. Looking up token $t$
# returns row $E_t$, which is the same as multiplying the one-hot vector $e_t$ by $E$:
# $\;e_t^\top E = E_t$. The lookup just skips the $V - 1$ multiplications by zero.

# %%
vocab, hidden = 1000, 64
E = torch.randn(vocab, hidden, generator=gen) * 0.02      # (vocab, hidden)
ids = torch.tensor([[2, 17, 999, 17]])                   # (batch=1, seq=4): BOS, then three tokens

looked_up = E[ids]                                       # (1, 4, hidden)
one_hot = F.one_hot(ids, vocab).float()                  # (1, 4, vocab)
torch.testing.assert_close(one_hot @ E, looked_up, rtol=0, atol=0)   # one non-zero term: exact
torch.testing.assert_close(F.embedding(ids, E), looked_up, rtol=0, atol=0)
print(looked_up.shape, "- the same token (17) gets the same vector at every position:",
      torch.equal(looked_up[0, 1], looked_up[0, 3]))

# %% [markdown]
# ## 2. Why multiply by $\sqrt{D}$?
#
# Gemma multiplies every embedded vector by $\sqrt{D}$ (45.25 for 2B, 55.5 for 7B; more on those numbers
# below). A good way to see why is the shared matrix: the same $E$ produces the logits $h E^\top$ at the top of
# the model, so its entries are small, of order $1/\sqrt{D}$, and a row has length about 1. The residual
# stream, however, works with vectors whose entries are of order 1 (RMS about 1). Multiplying by $\sqrt{D}$
# maps one scale to the other:
#
# $$\mathrm{RMS}(E_t) = \sqrt{\tfrac{1}{D}\textstyle\sum_i E_{t,i}^2} \approx \tfrac{1}{\sqrt D}
# \quad\Longrightarrow\quad \mathrm{RMS}(\sqrt{D}\,E_t) \approx 1.$$

# %%
D = 2048
E_small = torch.randn(vocab, D, generator=gen) / math.sqrt(D)       # entries ~ 1/sqrt(D): rows of length ~1
rms = lambda x: x.pow(2).mean(-1).sqrt()
print(f"row length     {E_small.norm(dim=-1).mean():.3f}")
print(f"RMS before     {rms(E_small).mean():.4f}  (1/sqrt(D) = {1 / math.sqrt(D):.4f})")
print(f"RMS after x√D  {rms(E_small * math.sqrt(D)).mean():.3f}")

# %% [markdown]
# ## 3. The scale is rounded to the compute dtype
#
# The reference implementations (gemma_pytorch, and `transformers` since it was corrected to match) make the
# scale a tensor *in the model's dtype*. In bfloat16, the dtype of the released checkpoints,
# $\sqrt{2048} = 45.2548\ldots$ becomes **45.25** and $\sqrt{3072} = 55.4256\ldots$ becomes **55.5**. bfloat16 keeps
# 8 significant bits: between 32 and 64 its representable numbers are 0.25 apart.

# %%
for D in (2048, 3072):
    exact = math.sqrt(D)
    rounded = torch.tensor(exact, dtype=torch.bfloat16)
    print(f"sqrt({D}) = {exact:.6f}   in bfloat16: {rounded.item()}   in float32: {torch.tensor(exact).item():.6f}")
assert torch.tensor(math.sqrt(2048), dtype=torch.bfloat16).item() == 45.25
assert torch.tensor(math.sqrt(3072), dtype=torch.bfloat16).item() == 55.5

# %% [markdown]
# Does a 0.13% difference in the scale matter? Multiply bfloat16 embeddings by the **rounded** scale (a bfloat16
# tensor) and by the **Python float** $\sqrt{D}$: PyTorch computes the second in float32 and rounds once, so
# the results differ wherever the small change of scale moves a product across a bfloat16 rounding boundary.

# %%
def differing_fraction(D: int, tokens: int = 1000) -> float:
    E_bf16 = (torch.randn(tokens, D, generator=gen) / math.sqrt(D)).to(torch.bfloat16)
    with_tensor = E_bf16 * torch.tensor(math.sqrt(D), dtype=torch.bfloat16)   # what the checkpoints expect
    with_float = E_bf16 * math.sqrt(D)                                         # the tempting shortcut
    return (with_tensor != with_float).float().mean().item()

fractions = {D: differing_fraction(D) for D in (2048, 3072)}
for D, fraction in fractions.items():
    print(f"D = {D}: {fraction:.1%} of bfloat16 outputs differ in the last bit")

# %% [markdown]
# For 7B ($55.5$ vs $55.43$, 0.13% apart) about a quarter of all embedded values change; for 2B ($45.25$ vs
# $45.2548$, 0.01% apart) a few percent. Each difference is one bfloat16 step, and it is fed into every layer
# after it. The picture: the bfloat16 grid around the two scales.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 2.6))
for ax, D in zip(axes, (2048, 3072)):
    exact = math.sqrt(D)
    grid = [torch.tensor(exact + k * 0.25, dtype=torch.bfloat16).item() for k in range(-3, 4)]
    ax.scatter(grid, [0] * len(grid), marker="|", s=400, color="black", label="bfloat16 numbers")
    ax.axvline(exact, color="tab:red", label=f"√{D} = {exact:.4f}")
    rounded = torch.tensor(exact, dtype=torch.bfloat16).item()
    ax.scatter([rounded], [0], s=120, facecolors="none", edgecolors="tab:blue", linewidths=2,
               label=f"rounded: {rounded}")
    ax.set_yticks([])
    ax.set_title(f"D = {D}: {fractions[D]:.0%} of outputs change")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(-1, 1.6)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The package module
#
# `embedding_scale` makes the 0-d tensor in the requested dtype; `Embedding` looks up and scales, and its
# `logits` method is the tied output head (next section). The package's own source:

# %% export minigemma.embedding.embedding_scale minigemma.embedding.Embedding

# %% [markdown]
# **Check against the reference.** Same weights in both; float32 must agree to rounding error (both multiply
# by $\sqrt{D}$ in float32), bfloat16 must be bit-identical.

# %%
def both_embeddings(vocab: int, hidden: int, dtype: torch.dtype):
    ours = Embedding(vocab, hidden)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(vocab, hidden, generator=gen) / math.sqrt(hidden))
    reference = GemmaTextScaledWordEmbedding(vocab, hidden, padding_idx=0, embed_scale=hidden ** 0.5)
    reference.load_state_dict({"weight": ours.weight.detach().clone()})
    return ours.to(dtype), reference.to(dtype)

ids = torch.randint(0, 512, (2, 16), generator=gen)        # (batch, seq)
for hidden in (2048, 3072):
    for dtype, tolerance in ((torch.float32, {}), (torch.bfloat16, dict(rtol=0, atol=0))):
        ours, reference = both_embeddings(512, hidden, dtype)
        with torch.no_grad():
            torch.testing.assert_close(ours(ids), reference(ids), **tolerance)
        print(f"hidden {hidden}, {str(dtype):<15} matches transformers ({'exact' if tolerance else 'default tol'})")
print("scales in bfloat16:", [embedding_scale(D, torch.bfloat16).item() for D in (2048, 3072)])

# %% [markdown]
# ## 5. The tied output head
#
# At the top of the model the final hidden state $h \in \mathbb{R}^D$ is scored against every vocabulary entry
# with the **same** matrix: $\text{logits} = h E^\top \in \mathbb{R}^V$, no bias. A token's logit is the dot
# product of $h$ with that token's own embedding row. There is no separate `lm_head` tensor in the checkpoints.

# %%
cfg = mg.GemmaConfig.tiny()
model = mg.Gemma(cfg).eval()
h = torch.randn(1, 5, cfg.hidden_size, generator=gen)          # (batch, seq, hidden)
logits = model.embed.logits(h)                                  # (batch, seq, vocab)
torch.testing.assert_close(logits, h @ model.embed.weight.T)    # float32: same products, default tolerance
print("logits", tuple(logits.shape), "= h @ E.T;",
      "lm_head in state_dict:", any("lm_head" in name for name in model.state_dict()))

token_7 = torch.tensor([[7]])
with torch.no_grad():                                           # one matrix: change it, both ends change
    embedded_before = model.embed(token_7)
    model.embed.weight[7] += 1.0
    torch.testing.assert_close(model.embed.logits(h)[..., 7], logits[..., 7] + h.sum(-1))
    torch.testing.assert_close(model.embed(token_7), embedded_before + math.sqrt(cfg.hidden_size))
print("editing row 7 of E changed the embedding of token 7 and its logit")

# %% [markdown]
# Tying saves a whole $V \times D$ matrix. How big a share of the model is it?

# %%
shares = {}
for name, cfg in {"gemma-2b": mg.GemmaConfig.gemma_2b(), "gemma-7b": mg.GemmaConfig.gemma_7b()}.items():
    with torch.device("meta"):
        total = mg.Gemma(cfg).num_parameters()
    embedding = cfg.vocab_size * cfg.hidden_size
    shares[name] = embedding / total
    print(f"{name}: E = {embedding:,} of {total:,} parameters ({embedding / total:.1%}); "
          f"untied, the model would have {total + embedding:,}")

fig, ax = plt.subplots(figsize=(5, 2.4))
ax.barh(list(shares), [100 * s for s in shares.values()], color="#6ea8fe")
for row, share in enumerate(shares.values()):
    ax.text(100 * share + 0.5, row, f"{share:.1%}", va="center")
ax.set_xlabel("% of parameters in the (tied) embedding")
ax.set_xlim(0, 30)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Common mistakes
#
# **Scaling by a Python float.** `h * math.sqrt(D)` looks the same and is the same in float32, but in
# bfloat16 it disagrees with the reference in the last bit for a quarter of the values at 7B width. The
# bit-exact check catches it:

# %%
ours, reference = both_embeddings(512, 3072, torch.bfloat16)
with torch.no_grad():
    shortcut = F.embedding(ids, ours.weight) * math.sqrt(3072)
    expected = reference(ids)
print(f"{(shortcut != expected).float().mean():.1%} of values differ")
try:
    torch.testing.assert_close(shortcut, expected, rtol=0, atol=0)
except AssertionError as err:
    print("caught:", str(err).splitlines()[0])
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# **Forgetting the scale.** The vectors entering the first block are then $\sqrt{D}$ times too small; even
# the default float tolerances see it at once:

# %%
with torch.no_grad():
    unscaled = F.embedding(ids, ours.weight.float())
try:
    torch.testing.assert_close(unscaled, reference.float()(ids))
except AssertionError as err:
    print("caught:", str(err).splitlines()[0])
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# ## Summary
#
# * Embedding = row lookup ($=$ one-hot times $E$), then $\times\sqrt{D}$ so the residual stream starts at RMS ≈ 1
#   while $E$'s entries stay small for the output head.
# * The scale is a tensor **in the compute dtype**: 45.25 (2B) and 55.5 (7B) in bfloat16. A Python-float scale
#   changes about a quarter of bfloat16 outputs at 7B width (a few percent at 2B).
# * The output head is tied: $\text{logits} = h E^\top$, no `lm_head` tensor; $E$ is 20.9% of 2B, 9.2% of 7B.
# * Package module produced: **`minigemma/embedding.py`** (`embedding_scale`, `Embedding`). Next: 03, RMSNorm.
