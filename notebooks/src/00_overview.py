# Notebook 00: the Gemma 1 architecture on one page, 2B vs 7B, the parameter count, and the spec-sheet audit.

# %% [markdown]
# # 00 · Overview: Gemma 1 on one page
#
# **What you will build.** Nothing big yet: a map. You will draw the whole Gemma 1 architecture, put the 2B and
# 7B models side by side, derive their parameter counts line by line down to the exact official totals
# (2,506,172,416 and 8,537,680,896), and use tensor *shapes* to settle a question that public spec sheets get
# wrong: how many attention heads each model has. The one module this notebook finishes is
# `minigemma/config.py`.
#
# **What you need to know.** Python and a little PyTorch (`nn.Linear`, tensor shapes). Everything else is
# introduced when it is needed.
#
# **How we check.** Every number we derive by hand is compared with `minigemma.Gemma` built on PyTorch's
# *meta* device (tensors with shapes but no memory, so the full 7B model costs nothing) and with
# `transformers`' `GemmaForCausalLM`, the reference implementation.

# %%
import torch
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

import minigemma as mg
from minigemma.weights.checkpoint import config_from_shapes

torch.manual_seed(0)
print("torch", torch.__version__)

# %% [markdown]
# ## 1. The architecture
#
# Gemma 1 is a decoder-only transformer. Text becomes token ids (01), ids become vectors scaled by
# $\sqrt{D}$ (02), and $N$ identical *decoder blocks* refine those vectors. Each block has two sub-layers, each
# *pre-normalised* with RMSNorm (03) and added back to the *residual stream*:
#
# $$h \leftarrow h + \mathrm{Attention}(\mathrm{RMSNorm}(h)), \qquad
#   h \leftarrow h + \mathrm{GeGLU}(\mathrm{RMSNorm}(h)).$$
#
# Attention (05) mixes information between positions; positions enter only through RoPE (04), a rotation of
# queries and keys. The GeGLU MLP (06) works on each position separately. A final RMSNorm and the **same**
# embedding matrix, transposed, turn vectors back into one score (logit) per vocabulary entry (07).
# The numbers in brackets are the notebooks that build each piece.

# %%
def box(ax, x, y, w, h, text, color, fontsize=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                                facecolor=color, edgecolor="black", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(ax, start, end, text=""):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", linewidth=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=7.5, va="center",
                color="dimgray")


fig, ax = plt.subplots(figsize=(8, 10))
ax.set_xlim(0, 4)
ax.set_ylim(0, 12.4)
ax.axis("off")
x = 1.9
box(ax, x, 11.8, 2.4, 0.5, "text  →  token ids   [01 tokenizer]", "#eeeeee")
box(ax, x, 10.8, 2.4, 0.5, "h = E[ids] · √D   [02 embedding]", "#cfe2ff")
arrow(ax, (x, 11.55), (x, 11.05), "(batch, seq)")
# the decoder block, repeated N times
ax.add_patch(FancyBboxPatch((0.1, 3.0), 3.75, 7.1, boxstyle="round,pad=0.05", facecolor="#fafafa",
                            edgecolor="gray", linestyle="--"))
ax.text(3.8, 9.9, "× N layers\n(2B: 18, 7B: 28)", ha="right", va="top", fontsize=9, color="gray")
box(ax, x, 9.2, 2.0, 0.45, "RMSNorm   [03]", "#d1e7dd")
box(ax, x, 8.0, 2.6, 1.2, "causal self-attention   [05]\nq, k, v = projections of h\n"
                         "RoPE rotates q and k   [04]\nsoftmax(q kᵀ / 16 + mask) v, then o_proj", "#fff3cd")
box(ax, x, 6.75, 0.45, 0.45, "+", "white", 12)
box(ax, x, 5.8, 2.0, 0.45, "RMSNorm   [03]", "#d1e7dd")
box(ax, x, 4.6, 2.6, 1.0, "GeGLU MLP   [06]\ndown( gelu_tanh(gate h) ⊙ up h )", "#f8d7da")
box(ax, x, 3.45, 0.45, 0.45, "+", "white", 12)
arrow(ax, (x, 10.55), (x, 9.43), "(batch, seq, D)")
arrow(ax, (x, 8.98), (x, 8.6))
arrow(ax, (x, 7.4), (x, 6.98))
arrow(ax, (x, 6.52), (x, 6.03))
arrow(ax, (x, 5.58), (x, 5.1))
arrow(ax, (x, 4.1), (x, 3.68))
# residual connections: around each sub-layer
for top, bottom in ((9.75, 6.75), (6.3, 3.45)):
    ax.plot([x, 0.35, 0.35], [top, top, bottom], color="tab:blue", linewidth=1.2)
    ax.annotate("", xy=(x - 0.23, bottom), xytext=(0.35, bottom),
                arrowprops=dict(arrowstyle="->", color="tab:blue", linewidth=1.2))
ax.text(0.2, 8.2, "residual", rotation=90, fontsize=8, color="tab:blue", va="center")
box(ax, x, 2.3, 2.0, 0.45, "final RMSNorm   [03]", "#d1e7dd")
box(ax, x, 1.3, 2.6, 0.5, "logits = h Eᵀ  (tied: the same E)   [07]", "#cfe2ff")
box(ax, x, 0.35, 2.6, 0.5, "next token: sampling + KV cache   [08]", "#eeeeee")
arrow(ax, (x, 3.22), (x, 2.53))
arrow(ax, (x, 2.07), (x, 1.55))
arrow(ax, (x, 1.05), (x, 0.6), "(batch, seq, V)")
ax.set_title("Gemma 1, one page (D = hidden size, V = 256,000 vocabulary entries)", fontsize=10)
plt.show()

# %% [markdown]
# ## 2. Gemma 2B and 7B side by side
#
# The two models share every convention and differ only in sizes. `GemmaConfig` holds those sizes; its
# presets are the official ones. Two differences matter beyond "bigger":
#
# * **2B uses multi-query attention (MQA):** 8 query heads share **one** key/value head. **7B uses ordinary
#   multi-head attention (MHA):** 16 query heads, 16 key/value heads.
# * **`head_dim` is 256 in both**, so for 7B the heads are *wider* than $D / H = 3072 / 16 = 192$:
#   the query projection maps 3072 → 16 × 256 = 4096.

# %%
presets = {"2B": mg.GemmaConfig.gemma_2b(), "7B": mg.GemmaConfig.gemma_7b()}
fields = ["vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
          "head_dim", "max_seq_len", "rope_theta", "rms_norm_eps"]
print(f"{'field':<20}{'gemma-2b':>12}{'gemma-7b':>12}")
for field in fields:
    print(f"{field:<20}{getattr(presets['2B'], field):>12}{getattr(presets['7B'], field):>12}")
for name, cfg in presets.items():
    print(f"{name}: heads x head_dim = {cfg.num_heads * cfg.head_dim}, hidden = {cfg.hidden_size}")

# %% [markdown]
# ## 3. The parameter count, line by line
#
# With $V$ vocabulary entries, hidden size $D$, MLP width $F$ (per GeGLU branch), $H$ query heads, $K$
# key/value heads of size $d_h$ and $L$ layers, and **no biases anywhere**:
#
# | tensor | shape | parameters |
# |---|---|---|
# | embedding $E$ (also the output head) | $V \times D$ | $VD$ |
# | `q_proj`, `o_proj` | $H d_h \times D$, $D \times H d_h$ | $2 H d_h D$ per layer |
# | `k_proj`, `v_proj` | $K d_h \times D$ each | $2 K d_h D$ per layer |
# | `gate_proj`, `up_proj`, `down_proj` | $F \times D$, $F \times D$, $D \times F$ | $3 F D$ per layer |
# | two RMSNorm weights per layer, one final | $D$ each | $2D$ per layer, $D$ once |
#
# $$N_\text{params} = VD + L\,\big(2(H + K)\,d_h D + 3FD + 2D\big) + D.$$

# %%
def parameter_lines(cfg: mg.GemmaConfig) -> dict[str, int]:
    D, F, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    H, K, L = cfg.num_heads, cfg.num_kv_heads, cfg.num_layers
    return {
        "embedding V·D (tied head)": cfg.vocab_size * D,
        "q_proj  H·hd·D  × L": H * hd * D * L,
        "k_proj  K·hd·D  × L": K * hd * D * L,
        "v_proj  K·hd·D  × L": K * hd * D * L,
        "o_proj  D·H·hd  × L": D * H * hd * L,
        "gate, up, down 3·F·D × L": 3 * F * D * L,
        "layer norms 2·D × L": 2 * D * L,
        "final norm D": D,
    }


lines = {name: parameter_lines(cfg) for name, cfg in presets.items()}
print(f"{'':<28}{'gemma-2b':>16}{'gemma-7b':>16}")
for row in lines["2B"]:
    print(f"{row:<28}{lines['2B'][row]:>16,}{lines['7B'][row]:>16,}")
totals = {name: sum(rows.values()) for name, rows in lines.items()}
print(f"{'total':<28}{totals['2B']:>16,}{totals['7B']:>16,}")

# %% [markdown]
# **Check.** The official totals are 2,506,172,416 (2B) and 8,537,680,896 (7B); the Hugging Face checkpoints'
# index files agree (5,012,344,832 and 17,075,361,792 bytes in bfloat16, two bytes per parameter). Our
# formula must hit them, and so must `minigemma.Gemma`, built on the meta device and counted tensor by tensor.

# %%
OFFICIAL = {"2B": 2_506_172_416, "7B": 8_537_680_896}
INDEX_BYTES_BF16 = {"2B": 5_012_344_832, "7B": 17_075_361_792}

def meta_model(cfg: mg.GemmaConfig) -> mg.Gemma:
    with torch.device("meta"):                 # shapes only: 8.5 billion parameters, zero bytes
        return mg.Gemma(cfg)

for name, cfg in presets.items():
    counted = meta_model(cfg).num_parameters()
    assert totals[name] == counted == OFFICIAL[name] == INDEX_BYTES_BF16[name] // 2, name
    print(f"{name}: formula = minigemma = official = {counted:,}")

# %% [markdown]
# Where do the parameters live? The MLPs hold about three quarters of both models. The embedding table is a
# fifth of 2B (256,000 rows are a lot for a 2048-wide model) but under a tenth of 7B.

# %%
def groups(cfg):
    rows = parameter_lines(cfg)
    attention = sum(v for k, v in rows.items() if "_proj  " in k)
    return {"embedding": rows["embedding V·D (tied head)"], "attention": attention,
            "MLP": rows["gate, up, down 3·F·D × L"],
            "norms": rows["layer norms 2·D × L"] + rows["final norm D"]}

fig, ax = plt.subplots(figsize=(7, 2.6))
colors = {"embedding": "#6ea8fe", "attention": "#ffda6a", "MLP": "#ea868f", "norms": "#75b798"}
for row, (name, cfg) in enumerate(presets.items()):
    left = 0
    for group, count in groups(cfg).items():
        ax.barh(row, count / 1e9, left=left, color=colors[group], label=group if row == 0 else None)
        share = count / totals[name]
        if count > 0.4e9:                      # label the bars wide enough to hold text
            ax.text(left + count / 2e9, row, f"{share:.0%}", ha="center", va="center", fontsize=9)
        left += count / 1e9
ax.set_yticks([0, 1], ["gemma-2b", "gemma-7b"])
ax.set_xlabel("parameters (billions)")
ax.legend(loc="lower right", fontsize=8)
plt.tight_layout()
plt.show()
for name, cfg in presets.items():
    print(name, {group: f"{count / totals[name]:.1%}" for group, count in groups(cfg).items()})

# %% [markdown]
# ## 4. The spec-sheet audit: how many heads?
#
# Several public spec pages (ApX's model pages among them) list Gemma 2B with **16 query heads / 1 KV head**
# and 7B with **32 / 32**. The official code and checkpoints say **8 / 1** and **16 / 16**. When prose and
# tensors disagree, the tensors win: a checkpoint *is* its tensors, and a model with the wrong head count
# cannot even load it.
#
# **Evidence 1: the projection shapes.** `q_proj` has $H d_h$ rows and `k_proj` has $K d_h$ rows.

# %%
def attention_shapes(cfg):
    attn = meta_model(cfg).layers[0].attn
    return tuple(attn.q_proj.weight.shape), tuple(attn.k_proj.weight.shape)

claims = {
    "2B official 8/1": presets["2B"],
    "2B spec page 16/1": presets["2B"].replace(num_heads=16),
    "7B official 16/16": presets["7B"],
    "7B spec page 32/32": presets["7B"].replace(num_heads=32, num_kv_heads=32),
    "7B 32/32, head_dim = 3072/32": presets["7B"].replace(num_heads=32, num_kv_heads=32, head_dim=96),
}
for label, cfg in claims.items():
    q_shape, k_shape = attention_shapes(cfg)
    total = meta_model(cfg).num_parameters()
    verdict = "matches" if total in OFFICIAL.values() else "WRONG total"
    print(f"{label:<30} q_proj {str(q_shape):<13} k_proj {str(k_shape):<13} {total:>15,}  {verdict}")
extra = meta_model(claims["2B spec page 16/1"]).num_parameters() - OFFICIAL["2B"]
assert extra == 18 * 2 * 2048 * 2048            # 8 more query heads in q_proj and o_proj, in every layer
print(f"16/1 would add {extra:,} parameters to 2B")

# %% [markdown]
# 16 query heads of size 256 would need a `q_proj` with 4096 rows; the 2B checkpoint's has 2048, and the
# total would be off by 18 × 2 × 2048 × 2048 = 150,994,944 parameters. For 7B, 32 heads of 256 give 8192 rows;
# shrinking the heads to $3072 / 32 = 96$ to "make it fit" gives yet another wrong total.
#
# **Evidence 2: two published numbers pin both head counts.** gemma_pytorch stores q, k and v fused in one
# `qkv_proj` with $(H + 2K)\,d_h$ rows: 2560 for 2B and 12288 for 7B. The total parameter count fixes
# the attention parameters per layer, $2(H + K)\,d_h D$. Two equations, two unknowns:

# %%
QKV_ROWS = {"2B": 2560, "7B": 12288}           # gemma_pytorch qkv_proj.weight rows, (H + 2K) * head_dim

for name, cfg in presets.items():
    D, F, L, hd = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.head_dim
    not_attention = cfg.vocab_size * D + L * (3 * F * D + 2 * D) + D
    h_plus_k = (OFFICIAL[name] - not_attention) // (L * 2 * hd * D)     # H + K
    h_plus_2k = QKV_ROWS[name] // hd                                    # H + 2K
    kv_heads = h_plus_2k - h_plus_k
    heads = h_plus_k - kv_heads
    assert (heads, kv_heads) == (cfg.num_heads, cfg.num_kv_heads)
    print(f"{name}: H + K = {h_plus_k}, H + 2K = {h_plus_2k}  =>  H = {heads} query heads, K = {kv_heads} KV heads")

# %% [markdown]
# **Evidence 3: read the config off a checkpoint's shapes.** The loader in `minigemma.checkpoint` does exactly
# this for Kaggle `.ckpt` files, which come without a config: `config_from_shapes` divides the `q_proj` and
# `k_proj` row counts by `head_dim`. We give it the tensor shapes of a Hugging Face `gemma-2b` / `gemma-7b`
# checkpoint, made by the reference implementation on the meta device (the names and shapes a real
# `model.safetensors.index.json` lists, with the same byte totals as the published index files).

# %%
from transformers import GemmaConfig as HFGemmaConfig, GemmaForCausalLM

HF_CONFIG_JSON = {   # the fields of the official config.json files that decide shapes
    "2B": dict(vocab_size=256000, hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
               num_attention_heads=8, num_key_value_heads=1, head_dim=256),
    "7B": dict(vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
               num_attention_heads=16, num_key_value_heads=16, head_dim=256),
}
for name, fields in HF_CONFIG_JSON.items():
    with torch.device("meta"):
        reference = GemmaForCausalLM(HFGemmaConfig(**fields, tie_word_embeddings=True))
    shapes = {n: tuple(t.shape) for n, t in reference.state_dict().items() if n != "lm_head.weight"}
    assert 2 * sum(torch.Size(s).numel() for s in shapes.values()) == INDEX_BYTES_BF16[name]
    read_back = config_from_shapes(shapes)
    assert read_back == presets[name], (read_back, presets[name])
    print(f"{name}: {len(shapes)} tensors, q_proj {shapes['model.layers.0.self_attn.q_proj.weight']}, "
          f"k_proj {shapes['model.layers.0.self_attn.k_proj.weight']} -> "
          f"{read_back.num_heads} heads / {read_back.num_kv_heads} KV heads")

# %% [markdown]
# ## 5. Common mistakes
#
# **Deriving `head_dim` as `hidden_size // num_heads`.** Many transformer codebases do this, and it is right
# for 2B ($2048 / 8 = 256$) but wrong for 7B ($3072 / 16 = 192 \ne 256$). The parameter check from section 3
# catches it immediately:

# %%
wrong = presets["7B"].replace(head_dim=presets["7B"].hidden_size // presets["7B"].num_heads)
try:
    assert meta_model(wrong).num_parameters() == OFFICIAL["7B"], (
        f"head_dim {wrong.head_dim}: {meta_model(wrong).num_parameters():,} parameters, "
        f"official {OFFICIAL['7B']:,}")
except AssertionError as err:
    print("caught:", err)
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# **Counting the output head twice.** The logits use the embedding matrix itself (*tied* weights). A tied
# model's `state_dict()` still lists the shared matrix under two names (`model.embed_tokens.weight` and
# `lm_head.weight`), so summing over the state dict counts it twice; `parameters()` yields each tensor once.

# %%
with torch.device("meta"):
    reference = GemmaForCausalLM(HFGemmaConfig(**HF_CONFIG_JSON["2B"], tie_word_embeddings=True))
over_state_dict = sum(t.numel() for t in reference.state_dict().values())
over_parameters = sum(p.numel() for p in reference.parameters())
print(f"sum over state_dict(): {over_state_dict:,}   sum over parameters(): {over_parameters:,}")
try:
    assert over_state_dict == OFFICIAL["2B"], f"{over_state_dict - OFFICIAL['2B']:,} too many: the tied head again"
except AssertionError as err:
    print("caught:", err)
else:
    raise RuntimeError("the check missed the mistake")
assert over_parameters == OFFICIAL["2B"]

# %% [markdown]
# ## 6. The package module: `minigemma/config.py`
#
# Every size above lives in one frozen dataclass, with the presets we just checked and a `tiny` model for tests.
# It validates itself on creation through `check_config` (a head count that does not divide, an odd `head_dim`,
# a zero epsilon), and it gets `replace` and `to_dict` from a small base class: plumbing, not the lesson, so we
# import both. Gemma 3's extra fields live apart, in `minigemma/gemma3.py`. This is the package's own source:

# %%
from __future__ import annotations
import dataclasses
from dataclasses import dataclass
from minigemma.config import check_config, ConfigConveniences   # the argument checks; replace and to_dict

# %% export minigemma.config.GemmaConfig

# %%
try:
    GemmaConfig(num_heads=8, num_kv_heads=3)
except ValueError as err:
    print("clear error:", err)
assert GemmaConfig.gemma_2b().to_dict() == presets["2B"].to_dict()
assert GemmaConfig.gemma_7b().to_dict() == presets["7B"].to_dict()
print("the cell above rebuilds the same presets as minigemma.GemmaConfig")

# %% [markdown]
# ## Summary
#
# * Gemma 1 = embedding × $\sqrt{D}$ → $N$ pre-norm blocks (attention with RoPE, GeGLU MLP) → RMSNorm →
#   tied head.
# * 2B: $D$ = 2048, 18 layers, **8 query heads sharing 1 KV head (MQA)**; 7B: $D$ = 3072, 28 layers,
#   **16 / 16 heads (MHA)**; `head_dim` is 256 in both, so 7B's heads do not tile its hidden size.
# * Parameters, derived line by line and confirmed on the meta device: **2,506,172,416** and **8,537,680,896**.
# * Spec sheets that say 16/1 and 32/32 contradict the checkpoints' shapes and totals; shapes decide.
# * Package module produced: **`minigemma/config.py`** (`GemmaConfig`).
#
# **The course.** Each lesson builds one piece, and its exercise (solutions in `exercises/solutions/`) has you
# write it again, graded by checks that try inputs you have not seen:
#
# | # | lesson | exercise |
# |---|---|---|
# | 00 | [Overview: Gemma 1 on one page](00_overview.ipynb) | none |
# | 01 | [Tokenizer: SentencePiece BPE](01_tokenizer.ipynb) | [`01_tokenizer.ipynb`](../exercises/01_tokenizer.ipynb) |
# | 02 | [Embedding and the √D scale](02_embedding.ipynb) | [`02_embeddings.ipynb`](../exercises/02_embeddings.ipynb) |
# | 03 | [RMSNorm](03_rmsnorm.ipynb) | [`03_rmsnorm.ipynb`](../exercises/03_rmsnorm.ipynb) |
# | 04 | [Rotary position embedding](04_rope.ipynb) | [`04_rope.ipynb`](../exercises/04_rope.ipynb) |
# | 05 | [Attention: MHA, MQA, GQA](05_attention.ipynb) | [`05_attention.ipynb`](../exercises/05_attention.ipynb) |
# | 06 | [The GeGLU MLP](06_geglu.ipynb) | [`06_geglu.ipynb`](../exercises/06_geglu.ipynb) |
# | 07 | [The decoder block and the whole model](07_model.ipynb) | [`07_decoder.ipynb`](../exercises/07_decoder.ipynb) |
# | 08 | [KV cache, sampling and chat](08_kv_cache_generation.ipynb) | [`08_kv_cache_sampling.ipynb`](../exercises/08_kv_cache_sampling.ipynb) |
# | 09 | [VRAM math](09_vram.ipynb) | [`09_vram.ipynb`](../exercises/09_vram.ipynb) |
# | 10 | [Capstone: Gemma 3 270M from a GGUF file](10_capstone.ipynb) | none |
#
# This lesson has no exercise of its own. Next: 01, the tokenizer.
