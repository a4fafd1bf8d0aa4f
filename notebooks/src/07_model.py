# Notebook 07: the decoder block, the stack, the final norm and tied logits; loading an HF checkpoint; parity.

# %% [markdown]
# # 07 · The whole model: blocks, stack, final norm, tied logits
#
# **What you will build.** `minigemma/block.py` (one pre-norm decoder block) and `minigemma/model.py` (the
# `Gemma` module: embedding → N blocks → final RMSNorm → logits through the embedding matrix). Then you load a
# checkpoint written in the official Hugging Face layout with `mg.load_model` and prove the logits equal those
# of `transformers`' `GemmaForCausalLM`, layer by layer.
#
# **What you need to know.** The pieces from the earlier notebooks: `Embedding` (× $\sqrt{D}$), `RMSNorm`
# (with $1 + w$), RoPE, `Attention` (05) and `GeGLU` (06). We import them from `minigemma` here; you have built
# and checked each one already.
#
# **How we check.** Block against `transformers`' `GemmaDecoderLayer`; whole model against
# `GemmaForCausalLM` on seeded random weights saved to disk and loaded back; a per-layer difference plot that
# points at the layer where a wrong convention enters.

# %%
import copy
import tempfile
from pathlib import Path

import torch
from torch import nn
import matplotlib.pyplot as plt

import minigemma as mg
import minigemma.block as mg_block
import minigemma.model as mg_model
# The building blocks from notebooks 02-06, used by the code exported below:
from minigemma.attention import Attention, causal_mask
from minigemma.config import GemmaConfig
from minigemma.embedding import Embedding
from minigemma.kv_cache import KVCache, positions_for
from minigemma.mlp import GeGLU
from minigemma.rmsnorm import RMSNorm, rms_norm
from minigemma.rope import rope_angles

torch.manual_seed(0)
torch.set_num_threads(1)            # the models here are tiny: one thread beats the cost of coordinating several
print("torch", torch.__version__)

# %% [markdown]
# ## 1. The decoder block, one sub-layer at a time
#
# Gemma's block is *pre-norm*: each sub-layer reads a normalised copy of the residual stream $h$ and **adds** its
# output back, so $h$ itself is never normalised inside the stack:
#
# $$h \leftarrow h + \mathrm{Attn}\big(\mathrm{RMSNorm}_1(h)\big), \qquad
#   h \leftarrow h + \mathrm{GeGLU}\big(\mathrm{RMSNorm}_2(h)\big).$$
#
# Checkpoint names: $\mathrm{RMSNorm}_1$ is `input_layernorm`, $\mathrm{RMSNorm}_2$ is
# `post_attention_layernorm`, a misleading name, since in Gemma 1 it is the norm *before* the MLP.

# %%
def draw_residual_stream(blocks=2):
    """The residual stream runs straight through; each sub-layer reads a normalised copy and adds to it."""
    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.annotate("", xy=(12.9, 1), xytext=(0.1, 1), arrowprops=dict(arrowstyle="-|>", lw=3, color="C0"))
    ax.text(0.1, 1.3, "residual\nstream h", color="C0", fontsize=10)
    ax.text(0.1, 0.55, "(batch, seq,\nhidden)", color="C0", fontsize=8)
    x = 2.4
    for block in range(blocks):
        ax.add_patch(plt.Rectangle((x - 0.4, 0.45), 4.5, 3.3, fill=False, ls="--", ec="gray"))
        ax.text(x + 1.85, 3.9, f"decoder block {block}", ha="center", color="gray")
        for dx, norm, sub, color in ((0, "RMSNorm₁", "attention", "#cfe2ff"), (2.2, "RMSNorm₂", "GeGLU", "#d1e7dd")):
            ax.annotate("", xy=(x + dx + 0.4, 1.75), xytext=(x + dx + 0.4, 1.05), arrowprops=dict(arrowstyle="-|>"))
            ax.text(x + dx + 0.4, 1.95, norm, ha="center", fontsize=9, bbox=dict(fc="#eeeeee", ec="gray"))
            ax.annotate("", xy=(x + dx + 0.4, 2.75), xytext=(x + dx + 0.4, 2.25), arrowprops=dict(arrowstyle="-|>"))
            ax.text(x + dx + 0.4, 2.95, sub, ha="center", fontsize=9, bbox=dict(fc=color, ec="gray"))
            ax.annotate("", xy=(x + dx + 1.5, 1.08), xytext=(x + dx + 1.0, 2.95),
                        arrowprops=dict(arrowstyle="-|>", connectionstyle="arc3,rad=-0.3"))
            ax.text(x + dx + 1.5, 0.62, "+", ha="center", fontsize=14, weight="bold")
        x += 4.8
    ax.text(12.2, 1.35, "final RMSNorm,\nthen · Eᵀ", ha="center", fontsize=9)
    ax.set_xlim(0, 13)
    ax.set_ylim(0.3, 4.2)
    ax.axis("off")
    ax.set_title("pre-norm blocks: the stream is only ever added to")
    plt.tight_layout()
    plt.show()


draw_residual_stream()

# %% [markdown]
# We build it against `transformers`' `GemmaDecoderLayer` with seeded random weights everywhere: a norm weight
# left at zero would make $(1 + w) = 1$ and hide the $+1$ convention. Tolerance for every check in this section:
# float32 on both sides, `rtol=1e-5, atol=1e-5` (the two sides only sum in different orders).

# %%
from transformers.models.gemma.modeling_gemma import GemmaDecoderLayer, GemmaRotaryEmbedding

from minigemma.reference.compare import hf_gemma_config


def hf_config(cfg):
    """The transformers config for one of our GemmaConfigs (tanh GELU, tied embeddings, eager attention)."""
    return hf_gemma_config(cfg, attn_implementation="eager")


def randomize_(module, seed):
    """Seeded random weights everywhere: norm offsets around 0 (std 0.5), matrices with std 1/sqrt(fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            scale = 0.5 if p.dim() == 1 else p.shape[1] ** -0.5
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module


cfg = GemmaConfig.tiny(num_heads=4, num_kv_heads=1)                     # hidden 64, MQA like 2B
reference_block = randomize_(GemmaDecoderLayer(hf_config(cfg), layer_idx=0), seed=0).eval()
seq = 10
h = torch.randn(2, seq, cfg.hidden_size)                                 # (batch, seq, hidden)
positions = torch.arange(seq)
mask = causal_mask(positions, positions)                                  # (seq, seq) bool
rope = rope_angles(positions, cfg.head_dim)
with torch.no_grad():
    cos_sin = GemmaRotaryEmbedding(hf_config(cfg))(h, positions[None])  # the reference's RoPE tables
    additive = torch.zeros(seq, seq).masked_fill(~mask, float("-inf"))[None, None]   # its mask: 0 or -inf
print("reference parts:", [name for name, _ in reference_block.named_children()])

# %% [markdown]
# **Sub-layer 1: attention.** Our `RMSNorm` and `Attention` (notebooks 03 and 05), given the reference's
# `input_layernorm` and `self_attn` weights (the same parameter names), then added to $h$.

# %%
attn_norm, attn = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps), Attention(cfg).eval()
attn_norm.load_state_dict(reference_block.input_layernorm.state_dict())
attn.load_state_dict(reference_block.self_attn.state_dict())
with torch.no_grad():
    after_attn = h + attn(attn_norm(h), rope, mask)                      # (batch, seq, hidden)
    theirs, _ = reference_block.self_attn(reference_block.input_layernorm(h), cos_sin, additive)
torch.testing.assert_close(after_attn, h + theirs, rtol=1e-5, atol=1e-5)
print(f"attention sub-layer {tuple(after_attn.shape)} == reference; it moved h by "
      f"{(after_attn - h).norm() / h.norm():.0%} of its size")

# %% [markdown]
# **Sub-layer 2: the MLP.** `RMSNorm` and `GeGLU` (notebook 06), given `post_attention_layernorm` and `mlp`.

# %%
mlp_norm, mlp = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps), GeGLU(cfg.hidden_size, cfg.intermediate_size)
mlp_norm.load_state_dict(reference_block.post_attention_layernorm.state_dict())
mlp.load_state_dict(reference_block.mlp.state_dict())
with torch.no_grad():
    after_block = after_attn + mlp(mlp_norm(after_attn))                 # (batch, seq, hidden)
    expected = reference_block(h, attention_mask=additive, position_embeddings=cos_sin)
torch.testing.assert_close(after_block, expected, rtol=1e-5, atol=1e-5)
print("attention then MLP sub-layer == the whole GemmaDecoderLayer")

# %% [markdown]
# **What we just built, as the package ships it**: the two sub-layers in one module. (`attention_class` and the
# `layer` index let Gemma 3 swap in its own attention, notebook 10.)

# %% export minigemma.block.DecoderBlock

# %%
BLOCK_NAMES = {"self_attn.": "attn.", "input_layernorm.": "attn_norm.", "post_attention_layernorm.": "mlp_norm."}


def to_our_names(state):
    renamed = {}
    for name, tensor in state.items():
        for theirs, ours_ in BLOCK_NAMES.items():
            name = name.replace(theirs, ours_)
        renamed[name] = tensor
    return renamed


block = DecoderBlock(cfg).eval()
block.load_state_dict(to_our_names(reference_block.state_dict()))
package_block = mg_block.DecoderBlock(cfg).eval()
package_block.load_state_dict(block.state_dict())
with torch.no_grad():
    actual = block(h, rope, mask)
    assert torch.equal(actual, after_block)                               # the same operations in the same order
    assert torch.equal(package_block(h, rope, mask), actual)
torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
print("DecoderBlock == our two sub-layers == transformers' GemmaDecoderLayer == minigemma.block.DecoderBlock")

# %% [markdown]
# ## 2. The stack, the final norm and the tied output head
#
# $$h_0 = E[\text{ids}] \cdot \sqrt{D}, \qquad h_{\ell+1} = \mathrm{Block}_\ell(h_\ell), \qquad
#   \text{logits} = \mathrm{RMSNorm}(h_L)\, E^\top .$$
#
# First by hand, with the pieces we have: an `Embedding`, six blocks sharing one RoPE table and one mask, a final
# `RMSNorm`, and the embedding matrix again as the output head. Gemma ties them, so there is no `lm_head`.

# %%
cfg = GemmaConfig.tiny(num_layers=6, num_heads=4, num_kv_heads=1)
torch.manual_seed(0)
embed = Embedding(cfg.vocab_size, cfg.hidden_size)
blocks = [randomize_(DecoderBlock(cfg, layer), seed=layer).eval() for layer in range(cfg.num_layers)]
final_norm = randomize_(RMSNorm(cfg.hidden_size, cfg.rms_norm_eps), seed=99)

ids = torch.tensor([[2, 17, 93, 5, 61, 8, 44, 120]])                     # (batch, seq); 2 = BOS
positions = torch.arange(ids.shape[1])
rope, mask = rope_angles(positions, cfg.head_dim, cfg.rope_theta), causal_mask(positions, positions)
with torch.no_grad():
    h = embed(ids)                                                       # (1, 8, hidden), already × sqrt(D)
    stream = [h]
    for block in blocks:
        h = block(h, rope, mask)                                         # (1, 8, hidden) after every block
        stream.append(h)
    by_hand = final_norm(h) @ embed.weight.T                             # (1, 8, vocab)
print(f"{len(stream)} states of the stream, each {tuple(h.shape)}; logits {tuple(by_hand.shape)}")

# %% [markdown]
# **What we just built, as the package ships it.** `Gemma` does exactly this, plus what generation needs: RoPE
# tables and masks built once per pass by `rope_and_masks` (Gemma 3 overrides it for its local layers), the
# positions and K/V of the KV cache (notebook 08), `last_only` to skip the logits of all but the last position,
# and `return_hidden` for debugging. The input check `check_input` (types, vocabulary range, context length)
# and the small conveniences of `ModelConveniences` (`dtype`, `num_parameters`, `new_cache`) are plumbing,
# imported rather than shown.

# %%
from minigemma.model import ModelConveniences, check_input

# %% export minigemma.model.Gemma

# %%
model = Gemma(cfg).eval()
with torch.no_grad():
    model.embed.weight.copy_(embed.weight)
    for ours_, mine in zip(model.layers, blocks):
        ours_.load_state_dict(mine.state_dict())
    model.norm.load_state_dict(final_norm.state_dict())
package_model = mg_model.Gemma(cfg).eval()
package_model.load_state_dict(model.state_dict())

with torch.no_grad():
    logits, hidden = model(ids, return_hidden=True)                      # (1, 8, vocab), 7 hidden states
    assert torch.equal(logits, package_model(ids))
    tied = rms_norm(hidden[-1], model.norm.weight, cfg.rms_norm_eps) @ model.embed.weight.T
torch.testing.assert_close(logits, by_hand, rtol=0, atol=0)             # the same operations: bit for bit
torch.testing.assert_close(logits, tied, rtol=0, atol=0)
assert all(torch.equal(a, b) for a, b in zip(hidden, stream))
assert not any("lm_head" in name for name in model.state_dict())
print(f"logits {tuple(logits.shape)}; {len(hidden)} hidden states (embedding + {cfg.num_layers} blocks)")
print("Gemma == the stack by hand, exactly; logits == RMSNorm(h_L) @ E.T, no lm_head; == minigemma.model.Gemma")

# %% [markdown]
# The same class at full size, on the `meta` device (shapes only, no memory). Notice 7B's attention: 16 heads ×
# 256 = 4096 is wider than the 3072-wide residual stream, so `q_proj` maps 3072 → 4096 and `o_proj` back.

# %%
published = {"gemma_2b": 2_506_172_416, "gemma_7b": 8_537_680_896}
for preset, total in published.items():
    with torch.device("meta"):
        big = Gemma(getattr(GemmaConfig, preset)())
    assert big.num_parameters() == total
    attn = big.layers[0].attn
    print(f"{preset}: {big.num_parameters():,} parameters (= published), {len(big.layers)} blocks, "
          f"q_proj {tuple(attn.q_proj.weight.shape)}, k_proj {tuple(attn.k_proj.weight.shape)}, "
          f"o_proj {tuple(attn.o_proj.weight.shape)}")

# %% [markdown]
# ## 3. A checkpoint in the official layout, loaded with `mg.load_model`
#
# We do what the test suite does: build `transformers`' `GemmaForCausalLM` from a tiny config, give it seeded
# random weights, and `save_pretrained` it into a temporary directory. That directory has exactly the layout of
# the published `google/gemma-2b` repository (`config.json` + `model.safetensors`, names like
# `model.layers.0.self_attn.q_proj.weight`), just smaller. `mg.load_model` reads the config, maps every name,
# checks every shape, and returns a `minigemma.Gemma`.

# %%
import transformers
from transformers import GemmaForCausalLM

transformers.utils.logging.disable_progress_bar()                          # no progress bars in the output


def save_reference_checkpoint(cfg, directory, seed=0):
    """transformers' Gemma with seeded random weights, saved as a Hugging Face checkpoint directory."""
    torch.manual_seed(seed)
    reference = randomize_(GemmaForCausalLM(hf_config(cfg)), seed).eval()
    reference.save_pretrained(directory)
    return reference


workdir = Path(tempfile.mkdtemp(prefix="minigemma-07-"))
cfg = GemmaConfig.tiny(num_layers=6, num_heads=4, num_kv_heads=1)        # MQA, like 2B
reference = save_reference_checkpoint(cfg, workdir / "tiny-gemma")
print(sorted(p.name for p in (workdir / "tiny-gemma").iterdir()))

from safetensors import safe_open
with safe_open(workdir / "tiny-gemma" / "model.safetensors", "pt") as f:
    names = sorted(f.keys())
print(len(names), "tensors, e.g.", names[:3], "... no lm_head:", not any("lm_head" in n for n in names))

# %%
loaded = mg.load_model(workdir / "tiny-gemma")
assert loaded.config == cfg, (loaded.config, cfg)
print(type(loaded).__name__, "| config read back == the one we saved:", loaded.config == cfg,
      "| dtype", loaded.dtype)

# %% [markdown]
# **Logit parity.** Same token ids into both models. Tolerance (float32, stated in the README):
# `rtol=1e-5, atol=1e-4`. Both sides compute the same maths in float32; they differ only in summation order
# (fused vs. eager attention, broadcast vs. copied K/V), and over 6 layers such differences stay at a
# few $10^{-6}$ on logits of magnitude up to about 5. We check an MQA (2B-like) and an MHA (7B-like, heads × head_dim ≠ hidden)
# model.

# %%
def logits_parity(cfg, name, seed=0):
    reference = save_reference_checkpoint(cfg, workdir / name, seed)
    ours = mg.load_model(workdir / name)
    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(seed))
    ids[:, 0] = 2                                                            # BOS first, as always
    with torch.no_grad():
        expected, actual = reference(ids).logits, ours(ids)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-4)
    return (actual - expected).abs().max().item(), expected.abs().max().item()


for name, cfg_ in {"mqa-like-2b": GemmaConfig.tiny(num_layers=6, num_heads=4, num_kv_heads=1),
                   "mha-like-7b": GemmaConfig.tiny(num_layers=6, hidden_size=48, num_heads=4, num_kv_heads=4)}.items():
    difference, scale = logits_parity(cfg_, name)
    print(f"{name}: logits match transformers (max |diff| < 1e-4: {difference < 1e-4}, largest |logit| "
          f"{scale:.2f})")

# %% [markdown]
# ## 4. Debugging layer by layer (and common mistakes)
#
# When the final logits disagree, *where* did it start? Compare the residual stream after every block.
# `minigemma` returns $h_0 \dots h_L$ with `return_hidden=True`; `transformers` returns its version with
# `output_hidden_states=True`, with one catch: its **last** entry is taken *after* the final norm, so we apply
# our final norm to $h_L$ before comparing it. We plot the relative difference
# $\max|h^{\text{ours}}_\ell - h^{\text{ref}}_\ell| / \max|h^{\text{ref}}_\ell|$ per layer.
#
# Then we break one convention on purpose and watch the curve:
#
# * **RMSNorm without the $+1$** in block 3 only: scaling by $w$ instead of $(1 + w)$. Every layer before 3 still
#   matches to float32 rounding; at block 3 the curve jumps and never comes back.
# * **Embedding not multiplied by $\sqrt{D}$**: wrong from the very first hidden state.

# %%
def per_layer_difference(ours, reference, ids):
    """Relative max |difference| of the residual stream: entry 0 = embedding, entry l = after block l."""
    with torch.no_grad():
        _, ours_hidden = ours(ids, return_hidden=True)
        ref_hidden = reference(ids, output_hidden_states=True).hidden_states
        ours_hidden = list(ours_hidden[:-1]) + [ours.norm(ours_hidden[-1])]   # reference's last is normed
    return [((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours_hidden, ref_hidden)]


class RMSNormWithoutOffset(RMSNorm):
    """WRONG for Gemma: scales by w instead of (1 + w), as LLaMA-style RMSNorm does."""
    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


class UnscaledEmbedding(Embedding):
    """WRONG for Gemma: forgets the sqrt(hidden_size) factor."""
    def forward(self, input_ids):
        return nn.functional.embedding(input_ids, self.weight)


ids = torch.randint(0, cfg.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1))
ids[:, 0] = 2
correct = loaded
broken_norm = copy.deepcopy(loaded)
broken_norm.layers[3].attn_norm.__class__ = RMSNormWithoutOffset
broken_embedding = copy.deepcopy(loaded)
broken_embedding.embed.__class__ = UnscaledEmbedding

curves = {name: per_layer_difference(m, reference, ids) for name, m in
          [("correct", correct), ("norm without +1 in block 3", broken_norm),
           ("embedding without sqrt(D)", broken_embedding)]}
tolerance = 1e-5
for name, curve in curves.items():
    first_bad = next((i for i, d in enumerate(curve) if d > tolerance), None)
    print(f"{name:28s} first hidden state off by more than {tolerance:g}: "
          f"{'none' if first_bad is None else ('embedding' if first_bad == 0 else f'after block {first_bad - 1}')}")
assert all(d < tolerance for d in curves["correct"])
assert all(d < tolerance for d in curves["norm without +1 in block 3"][:4])    # h_0 .. h_3 (before block 3) fine
assert curves["norm without +1 in block 3"][4] > 1e-2                          # after block 3: clearly off
assert curves["embedding without sqrt(D)"][0] > 1e-2

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
labels = ["embed"] + [f"block {i}" for i in range(cfg.num_layers - 1)] + [f"block {cfg.num_layers - 1}\n+ norm"]
for (name, curve), style in zip(curves.items(), ["o-", "s--", "^:"]):
    ax.semilogy(range(len(curve)), [max(d, 1e-9) for d in curve], style, label=name)
ax.axhline(tolerance, color="gray", lw=0.8, ls="--")
ax.text(0, tolerance * 1.5, "tolerance", color="gray", fontsize=8)
ax.set_xticks(range(len(labels)), labels, fontsize=8)
ax.set_ylabel("relative max |ours - reference|\n(floored at 1e-9)")
ax.set_title("residual stream after each layer vs transformers (float32)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the plot from the left: the first point above the tolerance line names the layer to inspect. The
# correct model sits at float32 rounding everywhere ($\le 10^{-6}$); the missing $+1$ is invisible until
# block 3 and then dominates; the missing $\sqrt{D}$ is wrong from the embedding on. The same function works on
# real checkpoints, where it is the fastest way to find a loader or convention bug.

# %% [markdown]
# ## 5. Real Gemma 1 weights (optional)
#
# Gemma 1 weights are licence-gated, so these cells only run when you point `MINIGEMMA_GEMMA_2B` /
# `MINIGEMMA_GEMMA_7B` at a checkpoint you downloaded (a Hugging Face directory or a Kaggle `.ckpt`). They compare
# minigemma's logits with the reference's, both in bfloat16 (a float32 7B would need 34 GB), within 5% of the
# largest logit, the bfloat16 tolerance explained in the README. Their output depends on your machine, so it is not checked by the notebook tests.

# %% tags=nbval-ignore-output
from minigemma.reference.compare import compare_logits_with_reference, run_if_available

for size in ("2b", "7b"):
    run_if_available(size, compare_logits_with_reference)        # both in bfloat16, one model in memory at a time

# %% [markdown]
# ## Summary
#
# You built **`minigemma/block.py`** and **`minigemma/model.py`**:
#
# * `DecoderBlock`, from its two sub-layers, each checked against the reference's parts: $h + \mathrm{Attn}(
#   \mathrm{RMSNorm}_1(h))$, then $h + \mathrm{GeGLU}(\mathrm{RMSNorm}_2(h))$, together equal to `transformers`'
#   `GemmaDecoderLayer`; the residual stream runs through unnormalised;
# * `Gemma`: first the stack by hand (embedding × $\sqrt{D}$, the blocks, the final RMSNorm, logits through the
#   **tied** embedding matrix), then the package's class, equal to it bit for bit; 2,506,172,416 parameters at
#   2B size and 8,537,680,896 at 7B;
# * loaded from an official-layout checkpoint with `mg.load_model` (`minigemma/weights/checkpoint.py`), its logits equal
#   `GemmaForCausalLM`'s within float32 rounding, and a per-layer plot that points at the first wrong layer.
#
# **Exercise:** [`../exercises/07_decoder.ipynb`](../exercises/07_decoder.ipynb): assemble a decoder block yourself.
# Next: generating text quickly with a KV cache, and choosing tokens (notebook 08).

# %%
import shutil
shutil.rmtree(workdir)                                                      # remove the temporary checkpoints
