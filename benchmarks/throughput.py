"""Decode and prefill rows for one (minigemma, transformers) pair in one dtype.

A row holds, per contender, the median seconds over the timed rounds and the rate (tokens/s), and the ratio
minigemma ÷ transformers taken round by round. Decode rows also hold the bandwidth floor: the tokens/s that reading
every weight once per token at the measured bandwidth would allow, and each contender's fraction of it.
"""
from __future__ import annotations

import torch

from .models import twin_max_difference
from .speed import contenders, prompt_ids
from .timing import interleave, summarize


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes one decode step must read: every parameter once (the tied embedding doubles as the output head)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def decode_row(label: str, ours, ref, dtype: torch.dtype, settings, bandwidth_gb_s: float) -> dict:
    prompt = prompt_ids(settings.decode_prompt, ours.config.vocab_size)
    tokens = settings.decode_tokens
    seconds = interleave(contenders(ours, ref, "decode", prompt, tokens), settings.rounds, settings.warmup,
                         label=f"decode {label} {dtype_name(dtype)}")
    row = {"benchmark": "decode", "model": label, "dtype": dtype_name(dtype), "unit": "tokens/s",
           "prompt_tokens": settings.decode_prompt, "new_tokens": tokens, **summarize(seconds, tokens)}
    nbytes = weight_bytes(ours)
    floor = bandwidth_gb_s * 1e9 / nbytes                            # best possible tokens/s
    row.update(weight_bytes=nbytes, floor_tokens_s=floor)
    for result in row["contenders"].values():
        result["floor_fraction"] = result["rate"] / floor
    return row


def prefill_row(label: str, ours, ref, dtype: torch.dtype, settings) -> dict:
    prompt = prompt_ids(settings.prefill_tokens, ours.config.vocab_size)
    seconds = interleave(contenders(ours, ref, "prefill", prompt), settings.prefill_rounds, settings.warmup,
                         label=f"prefill {label} {dtype_name(dtype)}")
    return {"benchmark": "prefill", "model": label, "dtype": dtype_name(dtype), "unit": "tokens/s",
            "prompt_tokens": settings.prefill_tokens, **summarize(seconds, settings.prefill_tokens)}


def pair_rows(label: str, ours, ref, dtype: torch.dtype, settings, bandwidth_gb_s: float) -> list[dict]:
    """Check the pair computes the same function, then time decode (and prefill where asked) in `dtype`."""
    difference = twin_max_difference(ours, ref)
    rows = [decode_row(label, ours, ref, dtype, settings, bandwidth_gb_s)]
    if dtype_name(dtype) in settings.prefill_dtypes:
        rows.append(prefill_row(label, ours, ref, dtype, settings))
    for row in rows:
        row["max_relative_logit_difference"] = difference
    return rows


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
