# %% [markdown]
# # Exercise 07 · The decoder block and the whole model
#
# A Gemma decoder block is two **pre-norm** residual steps:
#
#     h = h + attn(attn_norm(h))
#     h = h + mlp(mlp_norm(h))
#
# The model embeds the ids, runs the blocks in order, applies a final RMSNorm and the tied output head. You now
# assemble these from minigemma's finished parts (the components of the earlier exercises).
#
# After each task, run the check cell below it. Do not edit the check cells.

# %%
import torch

import minigemma as mg
from minigemma.attention import causal_mask      # causal_mask(q_positions, k_positions) -> bool (q_len, k_len)
from minigemma.rope import rope_angles            # rope_angles(positions, head_dim) -> (cos, sin)
from minigemma.grading import check_decoder_block, check_gemma_forward, check_hf_names

model = mg.Gemma(mg.GemmaConfig.tiny())
print(model.layers[0])

# %% [markdown]
# ## Task 1 · One block (3 points)
#
# Write `decoder_block(block, h, rope, mask)` using the block's parts: `block.attn_norm`, `block.attn`,
# `block.mlp_norm` and `block.mlp`. `h` is `(batch, seq, hidden)`; call attention as `block.attn(x, rope, mask)`
# (it applies RoPE with the `(cos, sin)` pair `rope` and the boolean `mask`). Return the new `h`.

# %% solution block-forward
def decoder_block(block, h, rope, mask):
    ### BEGIN SOLUTION
    h = h + block.attn(block.attn_norm(h), rope, mask)
    return h + block.mlp(block.mlp_norm(h))
    ### END SOLUTION

# %% grade block-forward points=3
check_decoder_block(decoder_block)

# %% [markdown]
# ## Task 2 · The whole forward pass (3 points)
#
# Write `gemma_forward(model, input_ids)` returning logits `(batch, seq, vocab)` for int64 ids `(batch, seq)`,
# using `model.embed(ids)` (lookup and scale), `model.layers` (call each block as `block(h, rope, mask)`),
# `model.norm` and `model.embed.logits(h)` (the tied head). Build the RoPE tables and the causal mask yourself,
# once, for positions `0 .. seq - 1`, with `rope_angles` and `causal_mask` imported above.

# %% solution block-model
def gemma_forward(model, input_ids):
    ### BEGIN SOLUTION
    positions = torch.arange(input_ids.shape[1])
    rope = rope_angles(positions, model.config.head_dim)
    mask = causal_mask(positions, positions)
    h = model.embed(input_ids)                                    # (batch, seq, hidden)
    for block in model.layers:
        h = block(h, rope, mask)
    return model.embed.logits(model.norm(h))
    ### END SOLUTION

# %% grade block-model points=3
check_gemma_forward(gemma_forward)

# %% [markdown]
# ## Task 3 · Names in a Hugging Face checkpoint (2 points)
#
# To load official weights you must know what each parameter is called there. Write `to_hf_name(name)` mapping a
# minigemma parameter name (the keys of `model.state_dict()`) to the Hugging Face Gemma 1 name, e.g.
# `"layers.3.attn.q_proj.weight"` → `"model.layers.3.self_attn.q_proj.weight"` and
# `"embed.weight"` → `"model.embed_tokens.weight"`. The norms are the trap: in Gemma 1 the norm before attention
# is `input_layernorm`, and the norm before the MLP is called `post_attention_layernorm` (a misleading name kept
# for compatibility).

# %% solution block-names
def to_hf_name(name):
    ### BEGIN SOLUTION
    renames = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "attn": "self_attn",
               "embed": "embed_tokens"}
    parts = [renames.get(part, part) for part in name.split(".")]
    return "model." + ".".join(parts)
    ### END SOLUTION

# %% grade block-names points=2
check_hf_names(to_hf_name)
