"""What is timed: decode (one token at a time with the KV cache, batch 1) and prefill (one long prompt).

Both libraries run the same loop: prefill the prompt (untimed for decode), then per new token one forward pass on
that token with the cache and a greedy pick (arg-max) of the next id. minigemma uses its pre-allocated KVCache,
transformers its default DynamicCache, as their own `generate` would. Each function returns the seconds it timed.
"""
from __future__ import annotations

import time

import torch


def prompt_ids(length: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """A (1, length) prompt: BOS then seeded random ids (no special ids)."""
    ids = torch.randint(3, min(vocab_size, 32000), (1, length), generator=torch.Generator().manual_seed(seed))
    ids[0, 0] = 2
    return ids


# ---- minigemma -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def minigemma_decode(model, prompt: torch.Tensor, new_tokens: int) -> float:
    cache = model.new_cache(1, prompt.shape[1] + new_tokens)
    next_id = model(prompt, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)   # (1, 1)
    start = time.perf_counter()
    for _ in range(new_tokens):
        next_id = model(next_id, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)
    return time.perf_counter() - start


@torch.no_grad()
def minigemma_prefill(model, prompt: torch.Tensor) -> float:
    start = time.perf_counter()
    cache = model.new_cache(1, prompt.shape[1] + 1)
    model(prompt, cache=cache, last_only=True)
    return time.perf_counter() - start


# ---- transformers --------------------------------------------------------------------------------------------------
def hf_step(model, ids, cache):
    """One forward pass with the cache; only the last position's logits are computed, as in HF generate."""
    logits = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    return logits[:, -1].argmax(-1, keepdim=True)


@torch.no_grad()
def hf_decode(model, prompt: torch.Tensor, new_tokens: int) -> float:
    from transformers import DynamicCache
    cache = DynamicCache(config=model.config)
    next_id = hf_step(model, prompt, cache)
    start = time.perf_counter()
    for _ in range(new_tokens):
        next_id = hf_step(model, next_id, cache)
    return time.perf_counter() - start


@torch.no_grad()
def hf_prefill(model, prompt: torch.Tensor) -> float:
    from transformers import DynamicCache
    start = time.perf_counter()
    hf_step(model, prompt, DynamicCache(config=model.config))
    return time.perf_counter() - start


def with_attention(model, impl: str, fn):
    """Wrap a transformers timing function so it first switches the shared model to `impl` attention."""
    def run(*args):
        model.set_attn_implementation(impl)
        return fn(model, *args)
    return run


def contenders(ours, ref, task: str, *args) -> dict:
    """{name: zero-argument timing function} for minigemma and transformers (eager and SDPA) on one task."""
    mine = {"decode": minigemma_decode, "prefill": minigemma_prefill}[task]
    theirs = {"decode": hf_decode, "prefill": hf_prefill}[task]
    return {"minigemma": lambda: mine(ours, *args),
            "transformers eager": lambda: with_attention(ref, "eager", theirs)(*args),
            "transformers sdpa": lambda: with_attention(ref, "sdpa", theirs)(*args)}
