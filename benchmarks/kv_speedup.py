"""What the KV cache buys: time to generate N tokens with `mg.generate(..., use_cache=True)` versus without.

Without the cache, token n re-runs the whole prefix (prompt + n tokens) through the model, so total work grows with
N^2; with it, each step runs one token and reads the cached K/V. The model is small (so the no-cache run is
affordable) but not tiny: with a toy model both runs would measure only Python's per-call overhead.
"""
from __future__ import annotations

import time

import torch

import minigemma as mg

from .models import random_minigemma
from .speed import prompt_ids
from .timing import interleave, median, paired_ratio

SMALL_GEMMA = mg.GemmaConfig(vocab_size=8192, hidden_size=512, intermediate_size=2048, num_layers=4,
                             num_heads=8, num_kv_heads=1, head_dim=64, max_seq_len=2048)


def timed_generate(model, prompt, new_tokens: int, use_cache: bool) -> float:
    start = time.perf_counter()
    out = mg.generate(model, prompt, max_new_tokens=new_tokens, use_cache=use_cache, stop_ids=())
    elapsed = time.perf_counter() - start
    assert out.shape[-1] == new_tokens
    return elapsed


def kv_cache_row(settings) -> dict:
    config = settings.kv_config
    model = random_minigemma(config, torch.float32)
    prompt = prompt_ids(settings.kv_prompt, config.vocab_size)[0]
    n = settings.kv_tokens
    runs = {"with cache": lambda: timed_generate(model, prompt, n, True),
            "without cache": lambda: timed_generate(model, prompt, n, False)}
    seconds = interleave(runs, settings.kv_rounds, warmup=0, label=f"KV cache, {n} tokens")
    return {"benchmark": "kv_cache", "model": describe(config), "dtype": "float32",
            "prompt_tokens": settings.kv_prompt, "new_tokens": n,
            "with_cache_s": median(seconds["with cache"]), "without_cache_s": median(seconds["without cache"]),
            "runs_s": {k: [round(v, 4) for v in vals] for k, vals in seconds.items()},
            "speedup": paired_ratio(seconds["with cache"], seconds["without cache"])}


def describe(config: mg.GemmaConfig) -> str:
    params = (config.vocab_size * config.hidden_size + config.num_layers * (
        config.hidden_size * config.head_dim * (2 * config.num_heads + 2 * config.num_kv_heads)
        + 3 * config.hidden_size * config.intermediate_size)) / 1e6
    return (f"small Gemma ({params:.0f}M params: {config.num_layers} layers, hidden {config.hidden_size}, "
            f"vocab {config.vocab_size})")
