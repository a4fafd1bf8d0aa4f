"""Checks for exercise 07, the decoder: one pre-norm block, the whole forward pass of a tiny Gemma, and the map from
minigemma's parameter names to Hugging Face's. The references are minigemma.block, minigemma.model and
minigemma.checkpoint."""
import random

import torch

from ...attention import causal_mask
from ...weights.checkpoint import hf_to_minigemma_name
from ...config import GemmaConfig
from ...model import Gemma
from ...rope import rope_angles
from ..compare import diagnose, expect_tensor, fresh_generator, randn
from ..core import Mismatch, check, require_callable


def tiny_model(gen, **overrides) -> Gemma:
    """A tiny Gemma with random weights everywhere, norms included (fresh norms would hide norm mistakes)."""
    config = GemmaConfig.tiny(num_layers=random.randint(1, 2), num_heads=4, num_kv_heads=random.choice([1, 2]),
                              **overrides)
    model = Gemma(config)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(randn(*param.shape, gen=gen, scale=0.3 if param.dim() == 1 else 0.1))
    return model.eval()


def block_variants(block, h, rope, mask):
    attn = lambda x: block.attn(x, rope, mask)               # noqa: E731  (batch, seq, hidden) -> same
    n1, n2, mlp = block.attn_norm, block.mlp_norm, block.mlp
    post = n1(h + attn(h))
    a = h + attn(n1(h))
    return [(n2(post + mlp(post)), "that is post-norm (norm after the residual add); Gemma is pre-norm: "
                                   "h = h + attn(attn_norm(h)); h = h + mlp(mlp_norm(h))."),
            (mlp(n2(attn(n1(h)))), "the residual connections are missing: add each sub-layer's output to h."),
            (h + attn(n1(h)) + mlp(n2(h)), "you ran attention and the MLP in parallel on the same h; Gemma runs the "
                                           "MLP on h after the attention residual has been added."),
            (h + attn(n2(h)) + mlp(n1(h + attn(n2(h)))), "the norms are swapped: attn_norm before attention, "
                                                        "mlp_norm before the MLP."),
            (n1(h) + attn(n1(h)) + mlp(n2(n1(h) + attn(n1(h)))),
             "the residual stream carries h itself, not its normalised copy: h + attn(attn_norm(h))."),
            (a + mlp(a), "the MLP's input must go through mlp_norm first.")]


@check("block-forward")
def check_decoder_block(decoder_block):
    require_callable(decoder_block, "decoder_block")
    gen = fresh_generator()
    model = tiny_model(gen)
    block, seq = model.layers[0], random.randint(3, 7)
    rope = rope_angles(torch.arange(seq), model.config.head_dim)
    mask = causal_mask(torch.arange(seq), torch.arange(seq))
    h = randn(2, seq, model.config.hidden_size, gen=gen)
    with torch.no_grad():
        expected = block(h, rope, mask)
        out = expect_tensor(decoder_block(block, h.clone(), rope, mask), h.shape, torch.float32, name="decoder_block")
        diagnose(out, expected, block_variants(block, h, rope, mask), "the block output differs from "
                 "h + attn(attn_norm(h)) followed by h + mlp(mlp_norm(h)).", rtol=1e-4, atol=1e-5)


def forward_with(model, ids, positions, mask, final_norm=True):
    """A forward pass built from minigemma's parts, with one part swapped for a known-wrong one."""
    rope = rope_angles(positions, model.config.head_dim)
    h = model.embed(ids)
    for block in model.layers:
        h = block(h, rope, mask)
    return model.embed.logits(model.norm(h) if final_norm else h)


@check("block-model")
def check_gemma_forward(gemma_forward):
    require_callable(gemma_forward, "gemma_forward")
    gen = fresh_generator()
    model = tiny_model(gen)
    seq = random.randint(4, 8)
    ids = torch.randint(0, model.config.vocab_size, (2, seq), generator=gen)
    positions = torch.arange(seq)
    mask = causal_mask(positions, positions)
    with torch.no_grad():
        expected = model(ids)
        out = expect_tensor(gemma_forward(model, ids.clone()), expected.shape, torch.float32, name="gemma_forward")
        diagnose(out, expected, [
            (forward_with(model, ids, positions, mask, final_norm=False),
             "apply the final RMSNorm (model.norm) before the tied output head."),
            (forward_with(model, ids, positions, torch.ones_like(mask)),
             "no causal mask: every position also attended to later tokens."),
            (forward_with(model, ids, positions + 1, mask), "RoPE positions start at 0, not 1."),
            (forward_with(model, ids, torch.zeros_like(positions), mask),
             "every token got position 0: RoPE needs positions 0 .. seq_len - 1.")],
            "your logits differ from model(input_ids).", rtol=1e-4, atol=1e-4)


@check("block-names")
def check_hf_names(to_hf_name):
    require_callable(to_hf_name, "to_hf_name")
    model = Gemma(GemmaConfig.tiny(num_layers=random.randint(2, 4)))
    layer = random.randrange(model.config.num_layers)
    for name in model.state_dict():
        got = to_hf_name(name)
        if not isinstance(got, str):
            raise Mismatch(f"to_hf_name should return a string, got {type(got).__name__} for {name!r}.")
        official = got.startswith("model.") and not got.startswith("model.language_model.")   # Gemma 1 layout
        if official and hf_to_minigemma_name(got, gemma3=False) == name:
            continue
        hint = ""
        if name.endswith("mlp_norm.weight") and "pre_feedforward_layernorm" in got:
            hint = " (pre_feedforward_layernorm is Gemma 3's name; Gemma 1 calls it post_attention_layernorm)"
        elif not got.startswith("model."):
            hint = " (Hugging Face names start with 'model.')"
        elif ".attn." in got:
            hint = " (Hugging Face calls the attention module self_attn)"
        raise Mismatch(f"{name!r} -> {got!r} is not the Hugging Face name{hint}; e.g. layer {layer}'s norm before "
                       f"attention is 'model.layers.{layer}.input_layernorm.weight'.")
