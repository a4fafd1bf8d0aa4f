"""Text generation: prefill the prompt once, then decode one token at a time with the KV cache.

Choosing the next token from the last position's logits:
  * temperature 0: greedy, the arg-max;
  * otherwise softmax(logits / temperature), optionally restricted to the top_k most likely tokens and/or to the
    smallest set whose probability reaches top_p (nucleus), then a draw from a seeded torch.Generator.
Generation stops after max_new_tokens or when every sequence has produced a stop id (EOS, id 1, by default).
Not here: beam search, repetition penalties, padding of ragged prompts (all prompts in a batch share a length).
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Callable, Iterable

import torch

from .tokenizer import EOS_ID, PAD_ID


def is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_sampling(max_new_tokens, temperature, top_k, top_p, seed=None, stop_ids=()) -> None:
    if not is_integer(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if not isinstance(temperature, Real) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if 0 < temperature < 1e-6:                            # logits / 1e-45 overflows float32 to inf, then NaN
        raise ValueError(f"temperature must be 0 (greedy) or at least 1e-06, got {temperature!r}")
    if top_k is not None and (not is_integer(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, Real) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if seed is not None and (not is_integer(seed) or not 0 <= seed < 2**64):
        raise ValueError(f"seed must be an integer from 0 to 2**64 - 1 or None, got {seed!r}")
    if not all(is_integer(i) for i in stop_ids):
        raise ValueError(f"stop_ids must be integers (token ids), got {list(stop_ids)!r:.80}")


def as_batch(input_ids) -> torch.Tensor:
    """A list of ids, a 1-D or a 2-D tensor -> int64 tensor (batch, seq)."""
    try:
        ids = torch.as_tensor(input_ids)
    except (ValueError, TypeError, RuntimeError):
        raise ValueError("token ids must be a list of integers, a list of equal-length lists (prompts in a batch "
                         "share a length), or a tensor") from None
    if ids.numel() and (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool):
        raise ValueError(f"token ids must be integers, got {ids.dtype}")
    ids = ids.long()
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(f"the prompt is empty or badly shaped (shape {tuple(ids.shape)}): give at least one "
                         "token id, normally starting with BOS (2)")
    return ids


def positions_needed(config, prompt_len: int, max_new_tokens: int) -> int:
    """Cache positions a generation fills: the prompt and every new token but the last (never fed back in)."""
    total = prompt_len + max(max_new_tokens - 1, 0)
    if total > config.max_seq_len:
        raise ValueError(f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) needs {total} positions, "
                         f"which exceeds the model's context of {config.max_seq_len} tokens")
    return total


def next_token_probs(logits: torch.Tensor, temperature: float, top_k=None, top_p=None) -> torch.Tensor:
    """logits (batch, vocab) -> the sampling distribution (batch, vocab), float32; temperature must be > 0."""
    logits = logits.float() / temperature
    if top_k is not None:
        kth_best = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs           # probability of the better tokens
        drop_sorted = mass_before >= top_p                                  # the set already reached p without it
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.softmax(dim=-1)


def sample_next(logits: torch.Tensor, temperature=0.0, top_k=None, top_p=None, generator=None) -> torch.Tensor:
    """logits (batch, vocab) -> next ids (batch,): the arg-max at temperature 0, else a seeded draw."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model, input_ids, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
             stop_ids: Iterable[int] = (EOS_ID,), on_token: Callable[[int], None] | None = None) -> torch.Tensor:
    """Generate up to max_new_tokens after `input_ids`; returns only the new ids.

    Shape of the result follows the prompt: (new,) for a list or 1-D tensor, (batch, new) for a 2-D tensor.
    `on_token(id)` is called as each token of the first sequence appears (for streaming; stop ids are not streamed).
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p, seed, stop_ids)
    prompt = as_batch(input_ids).to(model.device)
    batch, prompt_len = prompt.shape
    total = positions_needed(model.config, prompt_len, max_new_tokens)
    generator = torch.Generator(device=model.device).manual_seed(seed) if seed is not None else None
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=prompt.device)
    cache = model.new_cache(batch, total) if use_cache else None

    tokens, step_input, new_ids = prompt, prompt, []
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        logits = model(step_input if use_cache else tokens, cache=cache, last_only=True)[:, -1]   # (batch, vocab)
        if not torch.isfinite(logits).all():             # NaN/inf weights, or a config that makes them
            raise ValueError(f"the model produced NaN or infinite logits at new token {len(new_ids)}: its weights "
                             "or config are invalid")
        next_ids = sample_next(logits, temperature, top_k, top_p, generator)
        next_ids = next_ids.masked_fill(finished, PAD_ID)
        new_ids.append(next_ids)
        finished |= torch.isin(next_ids, stop)
        if on_token is not None and not finished[0]:       # stream real text only: no stop or padding ids
            on_token(int(next_ids[0]))
        step_input = next_ids[:, None]
        tokens = torch.cat([tokens, step_input], dim=1)
        if finished.all():
            break
    out = torch.stack(new_ids, dim=1) if new_ids else prompt.new_zeros(batch, 0)
    return out if torch.as_tensor(input_ids).dim() == 2 else out[0]
