"""Checks for exercise 08 (part 2), sampling: temperature with top-k, and nucleus (top-p) filtering. The reference
follows minigemma.generate.sample_next: temperature divides the logits before the softmax; top-k keeps the k
largest logits; top-p keeps the smallest set of most likely tokens whose probability reaches top_p (a token is
dropped when the mass of the tokens *before* it already reaches top_p, so the one that crosses the line stays)."""
import random

import torch

from ..compare import diagnose, expect_tensor, fresh_generator, randn
from ..core import Mismatch, check, require_callable


def top_k_mask(logits, k):
    kth_best = logits.topk(min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits < kth_best                                                  # True = dropped


def reference_probs(logits, temperature, top_k):
    scaled = logits / temperature
    if top_k is not None:
        scaled = scaled.masked_fill(top_k_mask(scaled, top_k), float("-inf"))
    return scaled.softmax(-1)


def probs_variants(logits, temperature, top_k):
    def with_top_k(scaled, k):
        return scaled.masked_fill(top_k_mask(scaled, k), float("-inf")).softmax(-1) if k else scaled.softmax(-1)
    plain = logits.softmax(-1)
    variants = [(plain / temperature, "temperature divides the logits before the softmax; dividing the "
                                      "probabilities afterwards only rescales them (they no longer sum to 1)."),
                ((plain / temperature).softmax(-1), "temperature divides the logits before the softmax, not the "
                                                    "probabilities after it."),
                (with_top_k(logits * temperature, top_k), "divide the logits by the temperature; you multiplied."),
                (with_top_k(logits, top_k), "the temperature was ignored.")]
    if top_k is not None:
        masked = plain.masked_fill(top_k_mask(logits, top_k), 0.0)
        variants += [(with_top_k(logits / temperature, top_k + 1), f"top-k off by one: you kept {top_k + 1} tokens."),
                     (with_top_k(logits / temperature, max(top_k - 1, 1)),
                      f"top-k off by one: you kept {max(top_k - 1, 1)} tokens instead of {top_k}."),
                     (masked, "renormalise after top-k: take the softmax over the kept logits only (and do not "
                              "forget the temperature)."),
                     (masked / masked.sum(-1, keepdim=True), "the temperature was ignored."),
                     (reference_probs(logits, temperature, None), "top_k was ignored: only the k largest logits "
                                                                  "may keep probability.")]
    return variants


@check("sampling-temperature")
def check_temperature_top_k(next_token_probs):
    require_callable(next_token_probs, "next_token_probs")
    gen = fresh_generator()
    for temperature, top_k in ((random.choice([0.5, 0.7, 2.0]), None), (random.choice([0.6, 1.5]),
                                                                         random.randint(3, 6))):
        logits = randn(3, random.randint(12, 20), gen=gen, scale=2.0)
        expected = reference_probs(logits, temperature, top_k)
        out = expect_tensor(next_token_probs(logits.clone(), temperature, top_k), logits.shape, torch.float32,
                            name="next_token_probs")
        diagnose(out, expected, probs_variants(logits, temperature, top_k),
                 f"wrong probabilities for temperature={temperature}, top_k={top_k}.", rtol=1e-4, atol=1e-6)


def nucleus_drop(logits, top_p, crossing_kept: bool = True, extra: int = 0):
    """Dropped-token mask of top-p; the two flags build the classic off-by-one variants."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    cumulative = probs.cumsum(-1)
    drop = (cumulative - probs >= top_p) if crossing_kept else (cumulative > top_p)
    if extra:
        drop = torch.cat((torch.zeros_like(drop[:, :1]), drop[:, :-1]), dim=-1)   # keep one more token
    return drop.scatter(-1, order, drop)


def as_filtered(logits, drop):
    return logits.masked_fill(drop, float("-inf"))


@check("sampling-top-p")
def check_top_p(top_p_filter):
    require_callable(top_p_filter, "top_p_filter")
    gen = fresh_generator()
    for top_p in (random.uniform(0.5, 0.9), 1.0):
        logits = randn(4, random.randint(10, 16), gen=gen, scale=2.0)
        out = expect_tensor(top_p_filter(logits.clone(), top_p), logits.shape, torch.float32, name="top_p_filter")
        expected = as_filtered(logits, nucleus_drop(logits, top_p))
        if not torch.equal(torch.isinf(out), torch.isinf(expected)):
            kept, want = (~torch.isinf(out)).sum(-1), (~torch.isinf(expected)).sum(-1)
            if torch.equal(torch.isinf(out), torch.isinf(as_filtered(logits, nucleus_drop(logits, top_p, False)))):
                raise Mismatch("top-p off by one: you dropped the token that takes the total past top_p; the "
                               "nucleus includes it (drop a token only if the mass *before* it reaches top_p).")
            if torch.equal(torch.isinf(out), torch.isinf(as_filtered(logits, nucleus_drop(logits, top_p, extra=1)))):
                raise Mismatch("top-p off by one: you kept one token more than the smallest set reaching top_p.")
            if not torch.isinf(out).any():
                raise Mismatch("nothing was filtered: set the logits of tokens outside the nucleus to -inf.")
            raise Mismatch(f"top_p={top_p:.2f} kept {kept.tolist()} tokens per row, expected {want.tolist()}: "
                           "keep the most likely tokens until their probabilities sum to at least top_p.")
        kept = ~torch.isinf(expected)
        diagnose(out[kept], expected[kept], otherwise="the kept logits must be unchanged (only dropped ones "
                                                      "become -inf).", rtol=1e-6, atol=1e-6)
