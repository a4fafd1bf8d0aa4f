# Notebook 08: the KV cache (why it is exact, what it saves) and generation: greedy, temperature, top-k, top-p.

# %% [markdown]
# # 08 · KV cache and generation
#
# **What you will build.** `minigemma/kv_cache.py` (a pre-allocated cache of every layer's keys and values) and
# `minigemma/generate.py` (prefill the prompt once, then decode one token at a time, choosing each token greedily
# or by sampling with temperature, top-k and top-p).
#
# **What you need to know.** The model from notebook 07 (`model(ids) -> logits (batch, seq, vocab)`) and causal
# attention from notebook 05; softmax as a probability distribution.
#
# **How we check.** Cached logits against a full recomputation; the sampler's draws against the distribution
# it should draw from; generation with and without the cache token for token; the same seed giving the same
# tokens.

# %%
import io
import time
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
import ipywidgets as widgets
from IPython.display import display

import minigemma as mg
import minigemma.generate as mg_generate
from minigemma.config import GemmaConfig

torch.manual_seed(0)
torch.set_num_threads(1)            # the models here are tiny: one thread beats the cost of coordinating several
print("torch", torch.__version__)

# %% [markdown]
# A small model with seeded random weights stands in for Gemma: its "text" is meaningless, but every number it
# produces is deterministic. The weights are scaled as in the test suite (`tests/reference.py`: matrices with
# standard deviation $2/\sqrt{\text{fan in}}$, embeddings $0.3/\sqrt{D}$, norm offsets $0.5$) so that greedy
# decoding wanders instead of repeating one token.

# %%
def random_gemma(cfg, seed=0):
    torch.manual_seed(seed)
    model = mg.Gemma(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            std = 0.5 if p.dim() == 1 else (0.3 if name.startswith("embed") else 2.0) / p.shape[1] ** 0.5
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


cfg = GemmaConfig.tiny(num_layers=4, num_heads=4, num_kv_heads=1)       # MQA like Gemma 2B
model = random_gemma(cfg)
ids = torch.randint(3, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
ids[:, 0] = 2                                                            # BOS first
print(f"{cfg.num_layers} layers, hidden {cfg.hidden_size}, {cfg.num_heads} query heads / {cfg.num_kv_heads} KV head, "
      f"vocab {cfg.vocab_size}, {model.num_parameters():,} parameters")

# %% [markdown]
# ## 1. Why a cache, and why it is exact
#
# Generating token $n+1$ needs the logits at position $n$. Recomputing the whole prefix each time costs
# $1 + 2 + \dots + N = O(N^2)$ token-passes for $N$ tokens. But look at what position $t$ computes in every
# layer: its key $k_t$ and value $v_t$ depend only on tokens $0 \dots t$, because attention is causal. Appending
# tokens later can never change them. So we compute each $k_t, v_t$ **once**, store them, and each new token only
# computes its own query, key and value and attends over the stored ones: $O(N)$ token-passes in total.
#
# **Check 1: earlier positions do not change when tokens are appended.** Tolerance, here and below: the
# project's float32 tolerance `rtol=1e-5, atol=1e-4`. The two runs multiply matrices of different shapes, so
# their sums are taken in different orders; on a residual stream that reaches $|h| \approx 60$ with float32's
# 7 significant digits, that is a few $10^{-5}$ of rounding noise.

# %%
with torch.no_grad():
    _, hidden_prefix = model(ids[:, :6], return_hidden=True)            # 6 tokens
    _, hidden_full = model(ids, return_hidden=True)                      # the same 6 + 10 more
for layer, (short, long) in enumerate(zip(hidden_prefix, hidden_full)):
    torch.testing.assert_close(short, long[:, :6], rtol=1e-5, atol=1e-4)   # float32: summation order only
print(f"all {len(hidden_full)} hidden states of the first 6 positions are unchanged by 10 more tokens "
      f"(largest |h| {max(h.abs().max().item() for h in hidden_full):.0f})")

# %% [markdown]
# The cache is allocated once with room for `max_len` positions:
# `(layers, batch, kv_heads, max_len, head_dim)` for keys and the same for values. Each forward pass writes the
# new tokens' K/V after the `length` already stored, returns everything so far to attention, and `advance`
# moves `length` on when all layers are done. The new tokens' RoPE positions continue from `length`
# (`positions_for`); the causal mask by position from notebook 05 does the rest.

# %% export minigemma.kv_cache.KVCache minigemma.kv_cache.positions_for

# %% [markdown]
# **Check 2: cached decoding gives the same logits as recomputing everything.** Prefill 6 prompt tokens in one
# pass, then feed the remaining 10 one at a time through our `KVCache`; compare with one uncached pass over all
# 16.

# %%
with torch.no_grad():
    full = model(ids)                                                    # (batch, 16, vocab), no cache
    cache = KVCache(cfg, batch_size=2, max_len=16)
    steps = [model(ids[:, :6], cache=cache)]                             # prefill: (batch, 6, vocab)
    for t in range(6, 16):
        assert torch.equal(positions_for(cache, 1), torch.tensor([t]))   # the next token's RoPE position
        steps.append(model(ids[:, t:t + 1], cache=cache))                # decode: (batch, 1, vocab)
    cached = torch.cat(steps, dim=1)
torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-4)

with torch.no_grad():
    one_pass = KVCache(cfg, batch_size=2, max_len=16)
    model(ids, cache=one_pass)
torch.testing.assert_close(cache.keys, one_pass.keys, rtol=1e-5, atol=1e-4)
torch.testing.assert_close(cache.values, one_pass.values, rtol=1e-5, atol=1e-4)
expected_bytes = 2 * cfg.num_layers * 2 * cfg.num_kv_heads * 16 * cfg.head_dim * 4   # K,V x layers x batch x ... x float32
assert cache.length == 16 and cache.nbytes == expected_bytes
print(f"cached logits == full recomputation; stored K/V equal; cache holds {cache.length} positions "
      f"in {cache.nbytes:,} bytes")

# %% [markdown]
# ## 2. Choosing the next token
#
# The model gives logits $z \in \mathbb{R}^V$ for the next token. The choices:
#
# * **greedy**: $\arg\max_i z_i$ (temperature 0). Deterministic, often repetitive.
# * **temperature** $T$: sample from $p_i = \dfrac{e^{z_i / T}}{\sum_j e^{z_j / T}}$. $T < 1$ sharpens the
#   distribution, $T > 1$ flattens it, $T \to 0$ tends to greedy.
# * **top-k**: keep only the $k$ most likely tokens, renormalise.
# * **top-p** (nucleus): keep the smallest set of most likely tokens whose total probability reaches $p$,
#   renormalise. Unlike top-k, the set grows when the model is unsure and shrinks when it is confident.
#
# `minigemma` applies them in that order (temperature, then top-k, then top-p) and draws with
# `torch.multinomial` from a `torch.Generator`, so a seed fixes the draw.

# %%
import math
from numbers import Integral, Real

# %% export minigemma.generate.is_integer minigemma.generate.check_sampling minigemma.generate.as_batch minigemma.generate.next_token_probs minigemma.generate.sample_next

# %% [markdown]
# To *see* what `sample_next` draws from, here is the same rule written the long way round: sort once, zero
# everything outside the kept set, renormalise. We use it for plots and the widget, after checking it against
# `sample_next`'s actual draws.
#
# The logits below are **made up for illustration**: plausible next words after "The capital of France is".

# %%
def next_token_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """The probabilities (vocab,) that sample_next draws from, computed by sorting."""
    if temperature == 0:
        return F.one_hot(logits.argmax(), logits.numel()).float()            # greedy: all mass on the arg-max
    sorted_probs, order = (logits.float() / temperature).softmax(-1).sort(descending=True)
    if top_k is not None:
        sorted_probs[top_k:] = 0
        sorted_probs /= sorted_probs.sum()
    if top_p is not None:
        mass_before = sorted_probs.cumsum(0) - sorted_probs                  # mass of the better-ranked tokens
        sorted_probs[mass_before >= top_p] = 0                                # already reached p without them
        sorted_probs /= sorted_probs.sum()
    return torch.zeros_like(sorted_probs).scatter(0, order, sorted_probs)


words = [" Paris", " a", " the", " located", " known", " not", " one", " called", " home", " in", " Lyon", " big"]
toy_logits = torch.tensor([5.0, 3.2, 3.0, 2.6, 2.2, 1.5, 1.2, 1.0, 0.8, 0.5, 0.3, 0.1])   # illustrative only
settings = {"greedy (T=0)": dict(temperature=0.0), "T=1": dict(temperature=1.0), "T=2": dict(temperature=2.0),
            "T=1, top-k 3": dict(temperature=1.0, top_k=3), "T=1, top-p 0.9": dict(temperature=1.0, top_p=0.9)}

# %% [markdown]
# **Check: `sample_next` draws from exactly this distribution.** 20,000 draws per setting from a seeded
# generator. Tokens outside the kept set must never appear (an exact check); the frequencies of the others must
# be within 0.02 of their probabilities: one frequency's standard deviation is at most
# $\sqrt{0.25 / 20000} \approx 0.0035$, so 0.02 is more than 5 standard deviations.

# %%
draws = 20_000
batch_of_logits = toy_logits.expand(draws, -1)                         # (draws, vocab): one draw per row
for name, setting in settings.items():
    expected = next_token_distribution(toy_logits, **setting)
    sampled = sample_next(batch_of_logits, **setting, generator=torch.Generator().manual_seed(0))
    frequency = torch.bincount(sampled, minlength=len(words)).float() / draws
    assert (frequency[expected == 0] == 0).all(), f"{name}: drew a token outside the kept set"
    torch.testing.assert_close(frequency, expected, rtol=0, atol=0.02)
    print(f"{name:15s} keeps {int((expected > 0).sum()):2d} tokens; P(' Paris') = {expected[0]:.2f}, "
          f"drawn {frequency[0]:.2f}")

# %%
fig, axes = plt.subplots(1, len(settings), figsize=(15, 3.2), sharey=True)
for ax, (name, setting) in zip(axes, settings.items()):
    probs = next_token_distribution(toy_logits, **setting)
    ax.bar(range(len(words)), probs, color=["C0" if p > 0 else "lightgray" for p in probs])
    ax.set_xticks(range(len(words)), words, rotation=90, fontsize=8)
    ax.set_title(name, fontsize=10)
axes[0].set_ylabel("probability of the next token")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Try it: a sampling widget
#
# Move the sliders and watch the distribution the sampler would draw from (top-k 0 and top-p 1 mean "off";
# temperature 0 is greedy). The widget needs a live kernel; the figure above shows five fixed settings.

# %%
def slider_distribution(temperature, top_k, top_p):
    """The widget's settings (top-k 0 and top-p 1 mean off) -> the distribution sample_next draws from."""
    return next_token_distribution(toy_logits, temperature, top_k or None, top_p if top_p < 1 else None)


def distribution_png(temperature, top_k, top_p):
    """Bar chart of that distribution as PNG bytes. A bare matplotlib Figure, so nothing is printed."""
    probs = slider_distribution(temperature, top_k, top_p)
    fig = Figure(figsize=(8, 3), dpi=80)
    ax = fig.subplots()
    ax.bar(range(len(words)), probs, color=["C0" if p > 0 else "lightgray" for p in probs])
    ax.set_xticks(range(len(words)), words, rotation=45, fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(f"{int((probs > 0).sum())} tokens can be drawn; P(' Paris') = {probs[0]:.2f}")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    return png.getvalue()


temperature_slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature")
top_k_slider = widgets.IntSlider(value=0, min=0, max=len(words), description="top-k (0 off)")
top_p_slider = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1 off)")
chart = widgets.Image(format="png")


def redraw(_change=None):
    chart.value = distribution_png(temperature_slider.value, top_k_slider.value, top_p_slider.value)


for slider in (temperature_slider, top_k_slider, top_p_slider):
    slider.observe(redraw, names="value")                                 # any slider move redraws the chart
redraw()
display(widgets.VBox([temperature_slider, top_k_slider, top_p_slider, chart]))

# %% [markdown]
# **Check: the widget shows what the sampler does.** Moving a slider from code redraws the chart, and the
# slider conventions map onto `sample_next`'s arguments (top-k 3 through the widget is the "top-k 3" setting
# checked above).

# %%
before = chart.value
top_k_slider.value = 3
assert chart.value != before, "the chart did not redraw"
assert torch.equal(slider_distribution(1.0, 3, 1.0), next_token_distribution(toy_logits, **settings["T=1, top-k 3"]))
assert torch.equal(slider_distribution(0.0, 0, 1.0), next_token_distribution(toy_logits, **settings["greedy (T=0)"]))
top_k_slider.value = 0
print("the widget redraws on every slider move and maps its settings onto sample_next's arguments")

# %% [markdown]
# ## 3. The generation loop
#
# 1. **Prefill**: run the whole prompt once, filling the cache, and take the last position's logits.
# 2. **Decode**: choose a token, feed just that token (its position comes from the cache), repeat.
# 3. Stop after `max_new_tokens`, or when every sequence has produced a stop id (EOS = 1); finished sequences
#    are padded with 0.
#
# With `use_cache=False` the same loop re-feeds the growing sequence each step: slower, same answer.

# %%
EOS_ID, PAD_ID = 1, 0

# %% export minigemma.generate.generate

# %%
prompt = ids[0, :6].tolist()                                              # a list of ids -> a 1-D result
greedy_cached = generate(model, prompt, max_new_tokens=20, stop_ids=())
greedy_recomputed = generate(model, prompt, max_new_tokens=20, stop_ids=(), use_cache=False)
assert torch.equal(greedy_cached, greedy_recomputed)
assert torch.equal(greedy_cached, mg.generate(model, prompt, max_new_tokens=20, stop_ids=()))

# The first greedy token is the arg-max of the full model's last logits, computed without any loop.
with torch.no_grad():
    assert greedy_cached[0] == model(torch.tensor([prompt]))[0, -1].argmax()
print("greedy, cached    :", greedy_cached.tolist())
print("greedy, recomputed: identical; notebook generate == mg.generate")

# %% [markdown]
# **Seeded sampling.** A seed creates a fresh `torch.Generator`, so the same seed gives the same tokens
# whatever else ran before; another seed gives another sample.

# %%
sample = lambda seed: generate(model, prompt, max_new_tokens=20, temperature=1.0, top_p=0.9, seed=seed, stop_ids=())
first, again, other = sample(7), sample(7), sample(8)
assert torch.equal(first, again), "same seed, different tokens"
assert not torch.equal(first, other)
assert torch.equal(first, mg.generate(model, prompt, max_new_tokens=20, temperature=1.0, top_p=0.9, seed=7,
                                      stop_ids=()))
print("seed 7:", first.tolist())
print("seed 7 again: identical | seed 8:", other.tolist())

# %% [markdown]
# ## 4. What the cache saves
#
# Token-passes through the model for a prompt of $P$ tokens and $N$ new tokens: with the cache
# $P + (N - 1)$ (the prompt once, then one per new token); without it $\sum_{i=0}^{N-1} (P + i)$.

# %%
P, N = 8, 200
with_cache, without_cache = P + (N - 1), sum(P + i for i in range(N))
print(f"prompt {P}, {N} new tokens: {with_cache:,} token-passes with the cache, {without_cache:,} without "
      f"({without_cache / with_cache:.0f}x)")

# %% [markdown]
# And in time: a slightly wider model (so that the arithmetic, not Python overhead, dominates), 200 new tokens,
# timed token by token with the `on_token` callback. Timings depend on your machine (these cells' outputs are
# not checked by the tests), but the shape does not: flat with the cache, growing linearly with the position
# without it.

# %% tags=nbval-ignore-output
wide = random_gemma(GemmaConfig.tiny(vocab_size=256, hidden_size=128, intermediate_size=512, num_layers=4,
                                      num_heads=4, num_kv_heads=1, head_dim=32, max_seq_len=512))
timing_prompt = torch.randint(3, 256, (P,), generator=torch.Generator().manual_seed(1))
per_token_ms, generated = {}, {}
for use_cache in (True, False):
    stamps = [time.perf_counter()]
    generated[use_cache] = generate(wide, timing_prompt, max_new_tokens=N, stop_ids=(), use_cache=use_cache,
                                    on_token=lambda _: stamps.append(time.perf_counter()))
    per_token_ms[use_cache] = np.diff(stamps) * 1000                      # (N,) milliseconds per new token
assert torch.equal(generated[True], generated[False])                    # same tokens either way
for use_cache in (True, False):
    print(f"{'with' if use_cache else 'without'} cache: {per_token_ms[use_cache].sum() / 1000:.2f} s in total, "
          f"last 20 tokens {per_token_ms[use_cache][-20:].mean():.1f} ms per token")

# %% tags=nbval-ignore-output
def rolling_median(values, window=15):
    """Median of each window of timings: robust to the odd slow step when the machine is busy."""
    padded = np.pad(values, window // 2, mode="edge")
    return np.array([np.median(padded[i:i + window]) for i in range(len(values))])


fig, ax = plt.subplots(figsize=(8, 3.5))
positions = P + np.arange(N)
for use_cache, color, label in [(False, "C3", "without cache: re-runs the prefix"), (True, "C0", "with KV cache")]:
    ax.plot(positions, per_token_ms[use_cache], ".", ms=2, alpha=0.4, color=color)
    ax.plot(positions, rolling_median(per_token_ms[use_cache]), color=color, label=label + " (rolling median)")
ax.set_xlabel("position of the token being generated")
ax.set_ylabel("ms per token")
ax.set_ylim(0, np.percentile(per_token_ms[False], 99) * 1.2)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Real Gemma 1 weights (optional)
#
# With `MINIGEMMA_GEMMA_2B` / `MINIGEMMA_GEMMA_7B` pointing at a checkpoint you downloaded, these cells generate
# 16 greedy tokens after "Hello I am doing" with minigemma and with `transformers`, and require the same tokens.
# (For gemma-2b in float32, transformers' own test expects "a project on the 1990s and I need to know what the
# most popular music".) Their output depends on your machine and is not checked by the notebook tests.

# %% tags=nbval-ignore-output
from minigemma.reference.compare import greedy_continuation, run_if_available

for size in ("2b", "7b"):
    run_if_available(size, greedy_continuation)        # "Hello I am doing" + 16 greedy tokens, vs transformers

# %% [markdown]
# ## Common mistakes
#
# **1. Forgetting to advance the cache.** If `length` never moves, every decode step writes its K/V over
# position 0, is rotated as position 0, and attends only to itself. Nothing crashes; the text is just wrong. The
# cached-vs-full check catches it at the first decoded token.

# %% include check_catches

# %%
class ForgetfulCache(KVCache):
    """WRONG: never advances, so each step overwrites the start of the cache."""
    def advance(self, seq_len):
        pass


def cached_logits(cache_class):
    cache = cache_class(cfg, batch_size=2, max_len=16)
    with torch.no_grad():
        steps = [model(ids[:, :6], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(6, 16)]
    return torch.cat(steps, dim=1)


torch.testing.assert_close(cached_logits(KVCache), full, rtol=1e-5, atol=1e-4)
wrong = cached_logits(ForgetfulCache)
assert check_catches(lambda: torch.testing.assert_close(wrong, full, rtol=1e-5, atol=1e-4))
first_wrong = int((wrong - full).abs().amax(dim=(0, 2)).gt(1e-4).nonzero()[0])
print(f"forgetful cache: the check caught it; first wrong position {first_wrong} (the first decoded token)")
assert first_wrong == 6

# %% [markdown]
# **2. Sampling from the global random generator.** `torch.multinomial(probs, 1)` without a `generator` draws
# from PyTorch's global state, which every other random call also advances: re-running the "same" generation
# gives different tokens, and the reproducibility check fails. `generate(..., seed=s)` avoids this with a fresh
# generator per call.

# %%
def sample_unseeded():
    return sample_next(model(torch.tensor([prompt]))[:, -1].expand(20, -1), temperature=1.0)   # no generator


with torch.no_grad():
    run_1, run_2 = sample_unseeded(), sample_unseeded()
assert check_catches(lambda: torch.testing.assert_close(run_1, run_2))
print("unseeded sampling: two runs differ, the reproducibility check caught it")

# %% [markdown]
# ## Summary
#
# You built **`minigemma/kv_cache.py`** and **`minigemma/generate.py`**:
#
# * `KVCache`: keys and values of every past position, pre-allocated, `update` per layer and `advance` per
#   pass; `positions_for` continues RoPE positions after the cached ones. Exact because attention is causal
#   (checked: cached logits == full recomputation), and $O(N)$ instead of $O(N^2)$ work;
# * `sample_next`: greedy, temperature, top-k and top-p, checked against the distribution it should draw from;
# * `generate`: prefill, then decode token by token, with stop ids, streaming (`on_token`) and a `seed` that
#   makes sampling reproducible.
#
# With notebooks 00 → 08 you have built and verified every piece of `minigemma.Gemma`. Next: how much GPU memory
# all this needs (notebook 09).
