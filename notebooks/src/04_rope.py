# Notebook 04: rotary position embedding (RoPE) in Gemma's half-split layout.

# %% [markdown]
# # 04 · RoPE: positions as rotations
#
# **What you will build.** `minigemma/rope.py`: the rotary position embedding. Gemma has no position vectors
# added to its embeddings; instead every query and key is *rotated* by an angle proportional to its position,
# so that the attention score between two tokens depends only on how far apart they are.
#
# **What you need to know.** 2-D rotations (sine and cosine), dot products, and that attention scores are dot
# products $q \cdot k$ between a query and a key (notebook 05 builds attention itself).
#
# **How we check.** Against explicit 2×2 rotations, against the complex-number form used by gemma_pytorch,
# against `minigemma`, and against the reference `transformers` (`GemmaRotaryEmbedding` +
# `apply_rotary_pos_emb`).

# %%
import io
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from transformers import GemmaConfig as HFGemmaConfig
from transformers.models.gemma.modeling_gemma import GemmaRotaryEmbedding, apply_rotary_pos_emb

import minigemma as mg
import minigemma.rope as mg_rope

torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
print("torch", torch.__version__)

# %% [markdown]
# ## 1. Rotation in two dimensions
#
# Rotating a vector $(a, b)$ by an angle $\phi$:
#
# $$R(\phi)\begin{pmatrix}a\\b\end{pmatrix} = \begin{pmatrix}\cos\phi & -\sin\phi\\ \sin\phi & \cos\phi\end{pmatrix}
#   \begin{pmatrix}a\\b\end{pmatrix} = \begin{pmatrix}a\cos\phi - b\sin\phi\\ b\cos\phi + a\sin\phi\end{pmatrix}.$$
#
# Rotations keep lengths, and the dot product of two rotated vectors depends only on the *difference* of
# the angles: $\big(R(\alpha)q\big)\cdot\big(R(\beta)k\big) = q \cdot R(\beta - \alpha)\,k$. If a query at
# position $m$ is rotated by $m\theta$ and a key at position $n$ by $n\theta$, their dot product depends on
# $m - n$ only. That is the whole idea of RoPE.

# %%
def rotate_2d(vec, phi):
    c, s = math.cos(phi), math.sin(phi)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64) @ vec

q2, k2 = torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor([0.3, -1.2], dtype=torch.float64)
theta = 0.3
for m, n in [(3, 1), (10, 8), (102, 100)]:                 # the same distance m - n = 2
    print(f"m={m:>3}, n={n:>3}:  q.k after rotation = {rotate_2d(q2, m * theta) @ rotate_2d(k2, n * theta):+.6f}")
torch.testing.assert_close(rotate_2d(q2, 1.234).norm(), q2.norm())    # float64: lengths are kept

# %% [markdown]
# ## 2. Many frequencies
#
# A head vector has $d = 256$ entries, i.e. 128 pairs. Pair $i$ rotates at its own frequency
#
# $$\theta_i = 10000^{-2i/d}, \qquad i = 0, \dots, \tfrac d2 - 1,$$
#
# so at position $p$ it is rotated by the angle $p\,\theta_i$. Pair 0 turns a full radian per token (a full
# turn every $2\pi \approx 6.3$ tokens); pair 127 turns so slowly that a full turn takes about 58,000 tokens.
# Fast pairs resolve nearby positions, slow pairs stay distinguishable over long distances.

# %%
head_dim, base = 256, 10000.0
inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).double() / head_dim)    # (128,)
wavelength = 2 * math.pi / inv_freq
print(f"theta_0 = {inv_freq[0]:.4f}, theta_127 = {inv_freq[-1]:.3e}")
print(f"wavelengths: {wavelength[0]:.2f} tokens (pair 0) ... {wavelength[-1]:,.0f} tokens (pair 127)")

positions = torch.arange(256).double()
angles = positions[:, None] * inv_freq[None, :]                                  # (positions, 128)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].semilogy(wavelength.numpy())
axes[0].axhline(8192, color="gray", linestyle="--", label="context length 8192")
axes[0].set_xlabel("pair index i")
axes[0].set_ylabel("wavelength 2π/θᵢ (tokens)")
axes[0].legend(fontsize=8)
axes[0].grid(alpha=0.3)
image = axes[1].imshow(angles.cos().T.numpy(), aspect="auto", origin="lower", cmap="RdBu",
                       interpolation="nearest")
axes[1].set_xlabel("position p")
axes[1].set_ylabel("pair index i")
axes[1].set_title("cos(p·θᵢ)", fontsize=10)
fig.colorbar(image, ax=axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Gemma's layout: the two halves form the pairs
#
# *Which* two entries of the head vector form pair $i$? Gemma (gemma_pytorch, the JAX code and the Hugging Face
# port) pairs entry $i$ with entry $i + d/2$: the first half holds the "x" coordinates, the second half the
# "y" coordinates. With $x_1 = x_{[:128]}$ and $x_2 = x_{[128:]}$:
#
# $$\mathrm{RoPE}(x, p) = \big[\,x_1 \cos(p\theta) - x_2 \sin(p\theta)\;,\;\;
#   x_2 \cos(p\theta) + x_1 \sin(p\theta)\,\big].$$
#
# The angles are computed in float32 from integer positions. The package's two functions: `rope_angles`
# builds the cos/sin tables once per forward pass, `apply_rope` rotates.

# %% export minigemma.rope.rope_angles minigemma.rope.apply_rope

# %% [markdown]
# **Check 1: against explicit 2×2 rotations**, pair by pair, in float64. Tolerance: minigemma's angles are
# float32, accurate to $p \cdot 2^{-24} \approx 1.5 \times 10^{-5}$ rad at $p = 255$; on entries of size ~3 that
# is below $10^{-4}$.

# %%
x = torch.randn(1, 1, 5, head_dim, generator=gen)                  # (batch, heads, seq, head_dim)
positions = torch.tensor([0, 1, 7, 100, 255])
cos, sin = rope_angles(positions, head_dim)                         # (seq, 128) each
rotated = apply_rope(x, cos, sin)

half = head_dim // 2
explicit = torch.empty(5, head_dim, dtype=torch.float64)
for s, p in enumerate(positions.tolist()):
    for i in range(half):
        pair = torch.stack([x[0, 0, s, i], x[0, 0, s, i + half]]).double()
        explicit[s, i], explicit[s, i + half] = rotate_2d(pair, p * inv_freq[i].item())
torch.testing.assert_close(rotated[0, 0].double(), explicit, rtol=1e-5, atol=1e-4)
torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))    # rotations keep lengths
print("apply_rope == 128 explicit 2-D rotations per position; lengths unchanged")

# %% [markdown]
# **Check 2: the complex form.** gemma_pytorch writes pair $i$ as the complex number $x_1[i] + \mathrm{i}\,x_2[i]$
# and multiplies by $e^{\mathrm{i} p\theta_i}$ (its `freqs_cis` buffer, made with `torch.polar`). Same layout,
# same numbers:

# %%
cos, sin = rope_angles(positions, head_dim)
as_complex = torch.complex(x[..., :half], x[..., half:])           # (batch, heads, seq, 128) complex
turned = as_complex * torch.complex(cos, sin)                       # times exp(i p theta) = cos + i sin
torch.testing.assert_close(rotated, torch.cat([turned.real, turned.imag], dim=-1))   # float32 default tol
print("half-split RoPE == complex multiplication by exp(i p theta)")

# %% [markdown]
# **Check 3: against `transformers`.** float32: default tolerances. bfloat16: the two implementations round
# differently, on purpose. minigemma (like gemma_pytorch) rotates in float32 and rounds once; `transformers`
# rounds cos/sin to bfloat16 and rotates in bfloat16. So we compare both against the float32 result: each is
# within a few bfloat16 steps ($2^{-8}$ relative), and minigemma is at least as close as `transformers`.

# %%
hf_rope = GemmaRotaryEmbedding(HFGemmaConfig(head_dim=256, rope_theta=10000.0, hidden_size=2048,
                                             num_attention_heads=8, num_key_value_heads=1))
q = torch.randn(2, 8, 64, head_dim, generator=gen)                # (batch, heads, seq, head_dim)
k = torch.randn(2, 1, 64, head_dim, generator=gen)                # one KV head, as in 2B
position_ids = torch.arange(64)[None].expand(2, -1)
cos, sin = rope_angles(torch.arange(64), head_dim)

hf_cos, hf_sin = hf_rope(q, position_ids)
hf_q, hf_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
torch.testing.assert_close(apply_rope(q, cos, sin), hf_q)
torch.testing.assert_close(apply_rope(k, cos, sin), hf_k)
print("float32: minigemma == transformers")

q16 = q.bfloat16()
hf_cos16, hf_sin16 = hf_rope(q16, position_ids)                    # cos/sin rounded to bfloat16
hf_q16, _ = apply_rotary_pos_emb(q16, q16, hf_cos16, hf_sin16)
ours16 = apply_rope(q16, cos, sin)
truth = apply_rope(q16.float(), cos, sin)                         # the same inputs, no rounding at the end
err_ours, err_hf = (ours16.float() - truth).abs(), (hf_q16.float() - truth).abs()
print(f"bfloat16 mean |error|: minigemma {err_ours.mean():.2e}, transformers {err_hf.mean():.2e}")
assert (err_ours <= 2.0 ** -8 * truth.abs()).all()               # rounded once: within half a bf16 step
assert err_ours.mean() <= err_hf.mean()

# %% [markdown]
# ## 4. The relative-position property, numerically
#
# For every pair, $\big(R(m\theta_i)q\big)\cdot\big(R(n\theta_i)k\big)$ depends on $m - n$ only, so the sum
# over pairs does too: **the score of a query at $m$ against a key at $n$ is a function of $m - n$**. Check
# with unit-length $q, k$: shifting both positions by the same amount must not change the score (tolerance:
# float32 angles at positions up to ~1100 are accurate to about $10^{-4}$ rad, so $10^{-4}$ on unit dot
# products).

# %%
q1 = torch.randn(head_dim, generator=gen)
k1 = torch.randn(head_dim, generator=gen)
q1, k1 = q1 / q1.norm(), k1 / k1.norm()

def score(m: int, n: int, q=q1, k=k1) -> torch.Tensor:
    cos, sin = rope_angles(torch.tensor([m, n]), head_dim)
    rq = apply_rope(q[None, None, None], cos[:1], sin[:1])
    rk = apply_rope(k[None, None, None], cos[1:], sin[1:])
    return (rq * rk).sum()

for distance in (0, 1, 5, 50):
    scores = torch.stack([score(n + distance, n) for n in (0, 3, 77, 1000)])
    torch.testing.assert_close(scores, scores[0].expand(4), rtol=0, atol=1e-4)
    print(f"m - n = {distance:>2}: scores at n = 0, 3, 77, 1000 -> {[round(s, 4) for s in scores.tolist()]}")

# %% [markdown]
# As a function of the distance, the score of a vector with *itself* ($k = q$) is largest at distance 0 and
# oscillates lower further away; a random pair just wiggles around zero:

# %%
distances = torch.arange(0, 513)
self_scores = [score(int(d), 0, q1, q1).item() for d in distances]
cross_scores = [score(int(d), 0).item() for d in distances]
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot(distances, self_scores, label="k = q")
ax.plot(distances, cross_scores, label="random k", alpha=0.7)
ax.set_xlabel("distance m − n (tokens)")
ax.set_ylabel("q · k after RoPE")
ax.legend()
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Half-split vs interleaved
#
# Other models (the original RoPE paper, Meta's Llama checkpoints) pair *neighbouring* entries $(2i, 2i+1)$
# instead. The two layouts are the same rotation applied to a **permuted** head vector: interleaved entry
# $2i$ is half-split entry $i$, and interleaved entry $2i+1$ is half-split entry $i + d/2$.

# %%
def apply_rope_interleaved(x, cos, sin):
    """RoPE with pairs (x[2i], x[2i+1]), the layout Gemma does NOT use."""
    even, odd = x[..., 0::2], x[..., 1::2]                       # (..., 128) each
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = odd * cos + even * sin
    return out

perm = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()   # 0, 128, 1, 129, ...
print("perm[:8] =", perm[:8].tolist())
cos, sin = rope_angles(torch.arange(5), head_dim)
x = torch.randn(1, 1, 5, head_dim, generator=gen)
torch.testing.assert_close(apply_rope_interleaved(x[..., perm], cos, sin), apply_rope(x, cos, sin)[..., perm])
print("interleaved RoPE of the permuted vector == permuted half-split RoPE")

# %% [markdown]
# Attention scores sum over all head dimensions, so permuting *both* $q$ and $k$ the same way changes nothing.
# And permuting $q$ is the same as permuting the **rows of $W_q$** (per head). So a checkpoint can be converted
# from one layout to the other by permuting the rows of `q_proj` and `k_proj`: this is what Hugging Face's Llama
# converter does. Gemma's checkpoints are already half-split, and their converter permutes nothing.

# %%
D, heads, seq = 512, 2, 10
W_q = torch.randn(heads * head_dim, D, generator=gen) / D ** 0.5   # (heads * head_dim, D), like q_proj
W_k = torch.randn(head_dim, D, generator=gen) / D ** 0.5           # one KV head
h = torch.randn(1, seq, D, generator=gen)                          # (batch, seq, hidden)
cos, sin = rope_angles(torch.arange(seq), head_dim)

def scores(W_q, W_k, rope):
    q = (h @ W_q.T).view(1, seq, heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
    k = (h @ W_k.T).view(1, seq, 1, head_dim).transpose(1, 2)      # (batch, 1, seq, head_dim)
    return rope(q, cos, sin) @ rope(k, cos, sin).transpose(-1, -2) # (batch, heads, seq, seq)

permute_rows = lambda W: W.view(-1, head_dim, D)[:, perm].reshape(-1, D)    # per head
half_split_scores = scores(W_q, W_k, apply_rope)
converted_scores = scores(permute_rows(W_q), permute_rows(W_k), apply_rope_interleaved)
torch.testing.assert_close(converted_scores, half_split_scores, rtol=1e-5, atol=1e-4)
print("interleaved RoPE on permuted q_proj/k_proj rows == Gemma's half-split RoPE on the original weights")

# %% [markdown]
# ## 6. Play with it
#
# Three of the 128 pairs of a query (red) and a key (blue), rotated by their positions $m$ and $n$. The key
# is the same vector as the query, so at $m = n$ the arrows coincide and the score is 1. The fast pair 0
# spins, the slow pair 48 barely moves. Move both sliders by the same amount: every arrow turns, but the
# angle between red and blue in pair $i$ stays $(m - n)\,\theta_i$, and the score stays the same. (The first
# figure is the starting state, drawn statically for readers without a running kernel.)

# %%
PAIRS = (0, 16, 48)

def draw(m: int, n: int):
    cos, sin = rope_angles(torch.tensor([m, n]), head_dim)
    rq = apply_rope(q1[None, None, None], cos[:1], sin[:1])[0, 0, 0]
    rk = apply_rope(q1[None, None, None], cos[1:], sin[1:])[0, 0, 0]    # the key: the same vector
    fig, axes = plt.subplots(1, len(PAIRS), figsize=(9, 3.3))
    circle = torch.linspace(0, 2 * math.pi, 100)
    for ax, i in zip(axes, PAIRS):
        for vec, color in ((rq, "tab:red"), (rk, "tab:blue")):
            a, b = vec[i] / vec[[i, i + half]].norm(), vec[i + half] / vec[[i, i + half]].norm()
            ax.annotate("", xy=(a, b), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=color, lw=2))
        ax.plot(circle.cos(), circle.sin(), color="lightgray")
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"pair {i}: turns {inv_freq[i]:.3f} rad/token", fontsize=9)
    fig.suptitle(f"query at m = {m}, key at n = {n}:  score q·k = {(rq * rk).sum():+.4f}", fontsize=10)
    plt.tight_layout()
    return fig

draw(3, 0)
plt.show()

# %%
def as_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()

m_slider = widgets.IntSlider(value=3, min=0, max=64, description="query m")
n_slider = widgets.IntSlider(value=0, min=0, max=64, description="key n")
picture = widgets.Image(value=as_png(draw(3, 0)), format="png")
def redraw(change):
    picture.value = as_png(draw(m_slider.value, n_slider.value))
m_slider.observe(redraw, names="value")
n_slider.observe(redraw, names="value")
display(widgets.VBox([widgets.HBox([m_slider, n_slider]), picture]), exclude={"text/plain"})   # live widget only

# %% [markdown]
# ## 7. Common mistakes
#
# **The interleaved layout on Gemma's weights.** Loading Gemma into Llama-style code that pairs $(2i, 2i+1)$,
# without permuting, rotates the wrong pairs. The reference check fails at every position but 0 (where
# nothing rotates):

# %%
cos, sin = rope_angles(torch.arange(64), head_dim)
wrong = apply_rope_interleaved(q, cos, sin)
torch.testing.assert_close(wrong[..., 0, :], hf_q[..., 0, :])          # position 0: no rotation, no difference
try:
    torch.testing.assert_close(wrong, hf_q)
except AssertionError as err:
    print("caught:", str(err).splitlines()[0], "-", str(err).splitlines()[2].strip())
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# **Positions in bfloat16.** bfloat16 has 8 significant bits, so above 256 it cannot even count: 257 becomes 256,
# and at 8,000 neighbouring positions are 32 apart. Computing the angles from bfloat16 positions gives many
# tokens the same rotation; comparing with the float32 tables catches it:

# %%
positions = torch.arange(250, 270)
print("bfloat16 positions:", positions.to(torch.bfloat16).to(torch.int64).tolist())
cos_bad, sin_bad = rope_angles(positions.to(torch.bfloat16), head_dim)
cos_good, sin_good = rope_angles(positions, head_dim)
try:
    torch.testing.assert_close(cos_bad, cos_good)
except AssertionError as err:
    print("caught:", str(err).splitlines()[0], "-", str(err).splitlines()[2].strip())
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# ## Summary
#
# * RoPE rotates each of the 128 pairs of a query/key head vector by $p\,\theta_i$, $\theta_i = 10000^{-2i/256}$;
#   wavelengths run from 6.3 to about 58,000 tokens.
# * Scores then depend only on the distance $m - n$ (checked numerically above).
# * Gemma pairs entry $i$ with entry $i + 128$ (**half-split**); the interleaved layout is the same rotation of a
#   permuted vector, and converting a checkpoint means permuting the rows of `q_proj` and `k_proj`.
# * minigemma rotates in float32 and rounds once (like gemma_pytorch); `transformers` rotates in bfloat16.
# * Package module produced: **`minigemma/rope.py`** (`rope_angles`, `apply_rope`). With notebooks 01–04 you have
#   the tokenizer, embedding, RMSNorm and RoPE of `minigemma.Gemma`. Next: 05, attention.
