"""Checks for exercise 05, attention: the causal mask with cached keys, scaled dot-product attention, grouped KV
heads (GQA) and Gemma 3's sliding-window mask. The reference is minigemma.attention."""
import random

import torch

from ...attention import attend_eager, causal_mask as reference_mask
from ...gemma3 import sliding_window_mask as reference_window_mask
from ..compare import diagnose, expect_tensor, fresh_generator, randn
from ..core import Mismatch, check, require_callable


def expect_mask(out, shape, name):
    out = expect_tensor(out, shape, name=name)
    if out.dtype != torch.bool:
        raise Mismatch(f"{name} should return a boolean mask (True = may attend), got {out.dtype}.")
    return out


@check("attention-mask")
def check_causal_mask(causal_mask):
    require_callable(causal_mask, "causal_mask")
    for q_len, k_len in ((5, 5), (random.randint(1, 3), random.randint(5, 9))):
        expected = reference_mask(torch.arange(k_len - q_len, k_len), torch.arange(k_len))
        out = expect_mask(causal_mask(q_len, k_len), (q_len, k_len), "causal_mask")
        diagnose(out, expected, [
            (torch.ones(q_len, k_len).tril().bool(),
             "with cached keys the queries are the *last* q_len positions: query i sits at position "
             "k_len - q_len + i, so it may see keys 0 .. k_len - q_len + i."),
            (reference_mask(torch.arange(k_len - q_len, k_len) - 1, torch.arange(k_len)),
             "a token must see itself: allow key position <= query position, not <."),
            (~expected, "your mask is inverted: True must mean 'may attend' (the past and the token itself)."),
            (torch.ones(q_len, k_len, dtype=torch.bool), "nothing is masked: queries must not see later keys.")],
            f"the mask for q_len={q_len}, k_len={k_len} is wrong.", atol=0)


def eager_variants(q, k, v, mask, scale):
    full = torch.ones_like(mask)
    zero_masked = ((q @ k.transpose(-1, -2)) * scale).masked_fill(~mask, 0.0).softmax(-1) @ v
    return [(attend_eager(q, k, v, mask, 1.0), "the scores are not scaled: multiply q @ k^T by 1/sqrt(head_dim)."),
            (attend_eager(q, k, v, mask, scale ** 2), "you scaled by 1/head_dim; the scale is 1/sqrt(head_dim)."),
            (attend_eager(q, k, v, full, scale), "no causal mask: every query also attended to later keys."),
            (attend_eager(q, k, v, ~mask | torch.eye(*mask.shape, dtype=torch.bool), scale),
             "your mask hides the past instead of the future."),
            (zero_masked, "masked scores must be -inf before the softmax; 0 still gives them weight."),
            (((q @ k.transpose(-1, -2)) * scale).masked_fill(~mask, float("-inf")).softmax(-2) @ v,
             "your softmax runs over the queries (dim -2); it must run over the keys (dim -1).")]


@check("attention-core")
def check_attention(attention):
    require_callable(attention, "attention")
    gen = fresh_generator()
    batch, heads, seq, head_dim = 2, random.randint(2, 4), random.randint(4, 8), random.choice([8, 16])
    q, k, v = (randn(batch, heads, seq, head_dim, gen=gen, scale=2.0) for _ in range(3))
    mask = reference_mask(torch.arange(seq), torch.arange(seq))
    scale = head_dim ** -0.5
    out = expect_tensor(attention(q, k, v), q.shape, torch.float32, name="attention")
    diagnose(out, attend_eager(q, k, v, mask, scale), eager_variants(q, k, v, mask, scale),
             "the attention output differs from softmax(q k^T / sqrt(d) + causal mask) v.", rtol=1e-4, atol=1e-5)


@check("attention-gqa")
def check_gqa(attention_gqa):
    require_callable(attention_gqa, "attention_gqa")
    gen = fresh_generator()
    for heads, kv_heads in ((4, 4), (4, 1), random.choice([(4, 2), (6, 2), (8, 2)]), (6, 3)):
        seq, head_dim = random.randint(3, 6), 8
        q = randn(2, heads, seq, head_dim, gen=gen, scale=2.0)
        k, v = (randn(2, kv_heads, seq, head_dim, gen=gen, scale=2.0) for _ in range(2))
        mask = reference_mask(torch.arange(seq), torch.arange(seq))
        expected = attend_eager(q, k, v, mask, head_dim ** -0.5)
        out = expect_tensor(attention_gqa(q, k, v), q.shape, torch.float32,
                            name=f"attention_gqa with {heads} query heads and {kv_heads} KV heads")
        group = heads // kv_heads
        tiled = attend_eager(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), mask, head_dim ** -0.5)
        first = attend_eager(q, k[:, :1].expand_as(q), v[:, :1].expand_as(q), mask, head_dim ** -0.5)
        diagnose(out, expected, [
            (tiled, "query head i must read KV head i // (heads / kv_heads); your heads are tiled in the wrong "
                    "order (repeat instead of repeat_interleave)."),
            (first, "every query head read KV head 0; each group of heads / kv_heads query heads shares its own "
                    "KV head.")],
            f"wrong output with {heads} query heads and {kv_heads} KV heads.", rtol=1e-4, atol=1e-5)


@check("attention-window")
def check_sliding_window_mask(sliding_window_mask):
    require_callable(sliding_window_mask, "sliding_window_mask")
    seq, window = random.randint(7, 10), random.randint(2, 4)
    positions = torch.arange(seq)
    expected = reference_window_mask(positions, positions, window)
    out = expect_mask(sliding_window_mask(seq, window), (seq, seq), "sliding_window_mask")
    distance = positions[:, None] - positions[None, :]
    diagnose(out, expected, [
        (reference_window_mask(positions, positions, window + 1),
         "off by one: each query sees exactly `window` keys, itself included (0 <= q - k < window)."),
        (reference_window_mask(positions, positions, window - 1),
         "off by one: each query sees exactly `window` keys, itself included (0 <= q - k < window)."),
        (distance.abs() < window, "the window must also be causal: no key after the query."),
        (reference_mask(positions, positions), "you ignored the window: this is the plain causal mask.")],
        f"the mask for seq_len={seq}, window={window} is wrong.", atol=0)
