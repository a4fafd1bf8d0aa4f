# Notebook 06: the GeGLU feed-forward layer: tanh-GELU, gating, the 8x width, parity with transformers' GemmaMLP.

# %% [markdown]
# # 06 · GeGLU: the feed-forward half of the block
#
# **What you will build.** `minigemma/mlp.py`: the tanh-approximated GELU and the `GeGLU` module,
# $\;\mathrm{down}\big(\mathrm{gelu_{tanh}}(\mathrm{gate}(x)) \odot \mathrm{up}(x)\big)$. About three quarters
# of Gemma's parameters live here.
#
# **What you need to know.** Linear layers without bias (`nn.Linear(..., bias=False)` computes $x W^\top$);
# elementwise products; the shapes `(batch, seq, hidden)`.
#
# **How we check.** Each formula against PyTorch's built-in, the module against `minigemma` and against
# `transformers`' `GemmaMLP` on the same weights; the parameter count of the whole model against the published
# totals.

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn
import matplotlib.pyplot as plt

import minigemma as mg
import minigemma.mlp as mg_mlp

torch.manual_seed(0)
torch.set_num_threads(1)            # the models here are tiny: one thread beats the cost of coordinating several
print("torch", torch.__version__)

# %% [markdown]
# ## 1. GELU, exact and tanh-approximated
#
# GELU weighs its input by the probability that a standard normal variable is below it:
#
# $$\mathrm{GELU}(x) = x\,\Phi(x) = \frac{x}{2}\left[1 + \operatorname{erf}\!\left(\frac{x}{\sqrt 2}\right)\right].$$
#
# Gemma was trained with the cheaper tanh approximation
#
# $$\mathrm{GELU_{tanh}}(x) = \frac{x}{2}\left[1 + \tanh\!\left(\sqrt{2/\pi}\,\left(x + 0.044715\,x^3\right)\right)\right].$$
#
# Both from their formulas, checked against PyTorch's `F.gelu` (float64, so the checks are tight):

# %%
def gelu_exact_formula(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_tanh_formula(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


xs = torch.linspace(-5, 5, 2001, dtype=torch.float64)
torch.testing.assert_close(gelu_exact_formula(xs), F.gelu(xs))
torch.testing.assert_close(gelu_tanh_formula(xs), F.gelu(xs, approximate="tanh"))
difference = gelu_tanh_formula(xs) - gelu_exact_formula(xs)
worst = difference.abs().argmax()
print(f"largest |tanh - exact| = {difference.abs().max().item():.1e} at x = {xs[worst].item():.2f}")

# %% [markdown]
# The two curves are indistinguishable by eye; their difference is a few $10^{-4}$, largest around
# $|x| \approx 2.7$. Small, but a model whose weights were fitted to one of them sees a systematic shift in every
# one of its 16384 (2B) or 24576 (7B) channels in every layer.

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
left.plot(xs, gelu_exact_formula(xs), label="exact (erf)")
left.plot(xs, gelu_tanh_formula(xs), "--", label="tanh approximation")
left.plot(xs, torch.relu(xs), ":", color="gray", label="ReLU, for comparison")
left.set_title("GELU")
left.legend()
right.plot(xs, difference, color="C3")
right.axhline(0, color="gray", lw=0.5)
right.set_title("tanh approximation minus exact")
right.set_xlabel("x")
right.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
plt.tight_layout()
plt.show()

# %% [markdown]
# The package's activation is one line; it is now yours:

# %% export minigemma.mlp.gelu_tanh

# %%
x32 = torch.randn(1000)
torch.testing.assert_close(gelu_tanh(x32), gelu_tanh_formula(x32))   # float32 default tolerances
assert torch.equal(gelu_tanh(x32), mg_mlp.gelu_tanh(x32))
print("gelu_tanh == the tanh formula == minigemma.mlp.gelu_tanh")

# %% [markdown]
# ## 2. Gating
#
# A plain transformer MLP is $\mathrm{down}(\mathrm{act}(\mathrm{up}(x)))$. A *gated* linear unit (GLU) runs two
# projections side by side and multiplies them: one carries content (`up`), the other, passed through GELU,
# decides how much of it goes through (`gate`). With GELU as the gate this is **GeGLU**:
#
# $$\mathrm{GeGLU}(x) = \Big(\mathrm{GELU_{tanh}}(x W_g^\top) \odot x W_u^\top\Big) W_d^\top,
# \qquad W_g, W_u \in \mathbb{R}^{F \times D},\; W_d \in \mathbb{R}^{D \times F}.$$
#
# The same `up` value with different gate pre-activations:

# %%
gate_pre = torch.tensor([-4.0, -1.0, 0.0, 1.0, 4.0])
up = torch.full((5,), 3.0)
for g, out in zip(gate_pre.tolist(), (gelu_tanh(gate_pre) * up).tolist()):
    print(f"gate pre-activation {g:+.0f}  ->  gelu {gelu_tanh(torch.tensor(g)).item():+.3f}  ->  output {out:+.3f}")

# %% [markdown]
# A strongly negative gate closes its channel (output ≈ 0 whatever `up` says); a positive one passes `up`
# scaled by about the gate value. Each of the $F$ channels gets its own gate, computed from the token itself.

# %% export minigemma.mlp.GeGLU

# %%
torch.manual_seed(0)
mlp = GeGLU(hidden_size=64, intermediate_size=512)
package = mg_mlp.GeGLU(64, 512)
package.load_state_dict(mlp.state_dict())
x = torch.randn(2, 5, 64)                                         # (batch, seq, hidden)
with torch.no_grad():
    by_hand = F.linear(gelu_tanh(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T), mlp.down_proj.weight)
    torch.testing.assert_close(mlp(x), by_hand)                    # float32, default tolerances
    assert torch.equal(mlp(x), package(x))
print("GeGLU == the formula == minigemma.mlp.GeGLU; shape", tuple(x.shape), "->", tuple(mlp(x).shape))

# %% [markdown]
# ## 3. Why the hidden size is 8× the model width
#
# GLU layers have three matrices instead of two, so for the same parameter budget the width is usually reduced
# from $4D$ to about $\tfrac{8}{3} D$. Gemma goes the other way and makes **each** branch $F = 8D$ wide:
#
# | | $D$ | $F$ (gate, up each) | $F/D$ | paper's "feedforward hidden dims" |
# |---|---|---|---|---|
# | Gemma 2B | 2048 | 16384 | 8 | 32768 = 2 × 16384 |
# | Gemma 7B | 3072 | 24576 | 8 | 49152 = 2 × 24576 |
#
# The Gemma paper's table counts gate and up together; the checkpoints' `intermediate_size` (and ours) is the
# width of one branch. Let us check the ratio on the presets and count where the parameters go, on the
# `meta` device (shapes only, no memory):

# %%
paper_feedforward_dims = {"2b": 32768, "7b": 49152}
presets = {"2b": mg.GemmaConfig.gemma_2b(), "7b": mg.GemmaConfig.gemma_7b()}
for name, cfg in presets.items():
    assert cfg.intermediate_size == 8 * cfg.hidden_size
    assert paper_feedforward_dims[name] == 2 * cfg.intermediate_size
    print(f"{name}: F = {cfg.intermediate_size} = 8 x {cfg.hidden_size};  paper {paper_feedforward_dims[name]} = 2 x F")


def parameter_breakdown(cfg):
    """Parameters of a full-size model by kind, counted on the meta device."""
    with torch.device("meta"):
        model = mg.Gemma(cfg)
    parts = {"embedding (tied)": 0, "attention": 0, "GeGLU": 0, "norms": 0}
    for name, p in model.named_parameters():
        kind = ("embedding (tied)" if name.startswith("embed") else "attention" if ".attn." in name
                else "GeGLU" if ".mlp." in name else "norms")
        parts[kind] += p.numel()
    return parts


# The official bfloat16 checkpoints' index says total_size 5,012,344,832 (2B) and 17,075,361,792 bytes (7B):
published_totals = {"2b": 5_012_344_832 // 2, "7b": 17_075_361_792 // 2}   # 2 bytes per parameter
breakdowns = {}
for name, cfg in presets.items():
    breakdowns[name] = parameter_breakdown(cfg)
    total = sum(breakdowns[name].values())
    assert total == published_totals[name], (name, total)
    per_layer_mlp = 3 * cfg.hidden_size * cfg.intermediate_size
    assert breakdowns[name]["GeGLU"] == cfg.num_layers * per_layer_mlp
    print(f"{name}: {total:,} parameters (= published); GeGLU {breakdowns[name]['GeGLU']:,} "
          f"= {100 * breakdowns[name]['GeGLU'] / total:.0f}%  ({cfg.num_layers} layers x 3 x {cfg.hidden_size} x "
          f"{cfg.intermediate_size})")

# %%
fig, ax = plt.subplots(figsize=(9, 2.6))
for row, name in enumerate(["7b", "2b"]):
    left = 0
    for i, (kind, count) in enumerate(breakdowns[name].items()):
        ax.barh(row, count / 1e9, left=left, color=f"C{i}", label=kind if row == 0 else None)
        left += count / 1e9
ax.set_yticks([0, 1], ["Gemma 7B", "Gemma 2B"])
ax.set_xlabel("parameters (billions)")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Against the reference: `transformers`' `GemmaMLP`
#
# Same weights (the names `gate_proj`, `up_proj`, `down_proj` match), same input. We keep Gemma's 8× ratio at a
# small width ($D = 256$, $F = 2048$). Tolerance: float32 on both sides, same operations, so `rtol=1e-5,
# atol=1e-5` leaves room only for a different matrix-multiply summation order.

# %%
from transformers import GemmaConfig as HFGemmaConfig
from transformers.models.gemma.modeling_gemma import GemmaMLP


def compare_with_transformers(reference_activation=None, tweak=None, seed=0):
    """Seeded GemmaMLP -> same weights in our GeGLU -> assert_close. Returns the max |difference|."""
    torch.manual_seed(seed)
    reference = GemmaMLP(HFGemmaConfig(hidden_size=256, intermediate_size=2048)).eval()
    if reference_activation is not None:
        reference.act_fn = reference_activation
    ours = GeGLU(256, 2048).eval()
    ours.load_state_dict(reference.state_dict())
    if tweak is not None:
        tweak(ours)
    x = torch.randn(2, 16, 256)                                    # (batch, seq, hidden)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    difference = (actual - expected).abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    return difference


difference = compare_with_transformers()
print(f"GeGLU matches transformers' GemmaMLP (max |diff| < 1e-5: {difference < 1e-5})")

# %% [markdown]
# ## Common mistakes
#
# **1. Exact GELU.** Gemma's first Hugging Face configs said `hidden_act="gelu"`, and transformers 4.38 took it
# literally: the exact erf GELU instead of the tanh approximation the model was trained with. (Today's
# transformers replaces that legacy value by the tanh version with a warning, so we rebuild the old behaviour by
# setting the reference's activation to `nn.GELU()` by hand.) The check catches a difference of a few
# $10^{-4}$ per activation.

# %% include check_catches

# %%
assert check_catches(lambda: compare_with_transformers(reference_activation=nn.GELU()))
torch.manual_seed(1)
probe = torch.randn(2, 16, 2048)
print(f"exact vs tanh GELU on the gate activations: max |diff| {(F.gelu(probe) - gelu_tanh(probe)).abs().max():.0e}"
      " -> the check caught it")

# %% [markdown]
# **2. Gate and up swapped.** `gelu(up(x)) * gate(x)` has the same shapes and runs without error, and the
# checkpoint's names do not save you if a loader maps them the wrong way round. Only a numerical check notices.

# %%
class SwappedGeGLU(GeGLU):
    """WRONG: GELU applied to the up branch instead of the gate."""
    def forward(self, x):
        return self.down_proj(gelu_tanh(self.up_proj(x)) * self.gate_proj(x))


swap = lambda mlp: setattr(mlp, "__class__", SwappedGeGLU)
assert check_catches(lambda: compare_with_transformers(tweak=swap))
print("gate/up swapped: the check caught it")

# %% [markdown]
# ## Summary
#
# You built **`minigemma/mlp.py`**:
#
# * `gelu_tanh`: GELU with the tanh approximation Gemma was trained with (within $5 \times 10^{-4}$ of the
#   exact GELU, which is still the wrong one);
# * `GeGLU`: $\mathrm{down}(\mathrm{gelu_{tanh}}(\mathrm{gate}(x)) \odot \mathrm{up}(x))$, no biases, each branch
#   $F = 8D$ wide (16384 for 2B, 24576 for 7B; the paper's 32768 / 49152 count both branches), equal to
#   `transformers`' `GemmaMLP`.
#
# GeGLU holds about 72% (2B) and 74% (7B) of the parameters. Next: put attention and GeGLU into a block, stack the
# blocks, and load a checkpoint (notebook 07).
