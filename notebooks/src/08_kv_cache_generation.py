# Notebook 08: generation built up from a plain greedy loop, the KV cache (why it is exact, what it saves),
# sampling one filter at a time, and Gemma's chat template on the real Gemma 3 270M.

# %% [markdown]
# # 08 · KV cache and generation
#
# **What you will build.** `minigemma/kv_cache.py` (a pre-allocated cache of every layer's keys and values),
# `minigemma/generate.py` (prefill the prompt once, then decode one token at a time, choosing each token greedily
# or by sampling with temperature, top-k and top-p), and Gemma's chat turns (`minigemma.tokenizer.chat_text`).
#
# **The order.** A greedy loop with no cache first (it works, and it is slow); then why the cache is exact and
# how it fills; then sampling built one filter at a time (temperature, top-k, top-p), each checked; then the
# package's loop; and last a conversation with a real instruction-tuned Gemma.
#
# **What you need to know.** The model from notebook 07 (`model(ids) -> logits (batch, seq, vocab)`) and causal
# attention from notebook 05; softmax as a probability distribution.
#
# **How we check.** Cached logits against a full recomputation; each filter against a hand computation; the
# sampler's draws against the distribution it should draw from; generation with and without the cache token for
# token; the same seed giving the same tokens; our chat text against the official template.

# %%
import io
import time

import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
import ipywidgets as widgets
from IPython.display import Image, display

import minigemma as mg
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
# ## 1. The simplest generator: greedy, no cache
#
# A language model gives, at every position, logits for the token that comes next. To continue a prompt:
# run the model on the whole sequence, take the last position's logits, append their arg-max, and repeat.

# %%
@torch.no_grad()
def greedy_no_cache(model, prompt, new_tokens):
    tokens = torch.tensor([prompt])                                      # (1, seq)
    for _ in range(new_tokens):
        logits = model(tokens)                                           # (1, seq, vocab): every position again
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)             # (1, 1)
        tokens = torch.cat([tokens, next_id], dim=1)
    return tokens[0, len(prompt):]


prompt = ids[0, :6].tolist()
slow_greedy = greedy_no_cache(model, prompt, 10)
with torch.no_grad():
    assert slow_greedy[0] == model(torch.tensor([prompt]))[0, -1].argmax()          # step 1 by hand
    assert slow_greedy[1] == model(torch.tensor([prompt + slow_greedy[:1].tolist()]))[0, -1].argmax()   # step 2
print("prompt", prompt, "-> greedy", slow_greedy.tolist())

# %% [markdown]
# It works, but step $i$ re-runs all $P + i$ tokens, although only the last position's logits are used: for
# $N$ new tokens that is $\sum_i (P + i)$ token-passes, $O(N^2)$.
#
# %% [markdown]
# ## 2. Why a cache, and why it is exact
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

# %% [markdown]
# The picture, for a 4-token prompt and 4 decode steps in a cache of 8 slots (one layer; every layer has its own):
# each row is one forward pass. The prefill writes 4 slots at once; each decode step writes **one** slot and its
# query reads **every** filled slot. The work per step is small, but it is not constant: the read grows with the
# length.

# %%
def draw_cache_filling(prompt_len=4, decode_steps=4, max_len=8):
    colors = {"written now": "C1", "read (stored earlier)": "C0", "empty": "white"}
    fig, ax = plt.subplots(figsize=(8, 2.8))
    for row in range(decode_steps + 1):                                  # row 0: prefill; then one row per step
        filled = prompt_len + row
        for slot in range(max_len):
            kind = ("written now" if (slot < prompt_len if row == 0 else slot == filled - 1)
                    else "read (stored earlier)" if slot < filled else "empty")
            ax.add_patch(Rectangle((slot, -row), 0.92, 0.8, facecolor=colors[kind], edgecolor="gray"))
        ax.text(-0.3, -row + 0.4, "prefill" if row == 0 else f"decode step {row}", ha="right", va="center")
        ax.text(max_len + 0.2, -row + 0.4, f"query attends to {filled} slots", va="center", fontsize=9)
    ax.set_xlim(-2.6, max_len + 3.2)
    ax.set_ylim(-decode_steps - 0.3, 1.2)
    ax.set_xticks([i + 0.46 for i in range(max_len)], [f"pos {i}" for i in range(max_len)], fontsize=8)
    ax.set_yticks([])
    ax.set_frame_on(False)
    ax.legend(handles=[Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="gray") for c in colors.values()],
              labels=list(colors), loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.12), frameon=False)
    ax.set_title("the KV cache filling over decode steps (K and V alike)", pad=22)
    plt.tight_layout()
    plt.show()


draw_cache_filling()

# %% export minigemma.kv_cache.cache_shape minigemma.kv_cache.KVCache

# %% [markdown]
# The cache also decides where the new tokens sit: their RoPE positions continue from the cached ones.

# %% export minigemma.kv_cache.positions_for

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
# **Greedy with the cache, by hand.** The loop of section 1 again, now feeding the prompt once and then only the
# newest token. It must give the same tokens as the slow loop.

# %%
@torch.no_grad()
def greedy_with_cache(model, prompt, new_tokens):
    cache = KVCache(model.config, batch_size=1, max_len=len(prompt) + new_tokens)
    step_input, new_ids = torch.tensor([prompt]), []                    # (1, P): the prefill feeds the prompt
    for _ in range(new_tokens):
        next_id = model(step_input, cache=cache)[:, -1].argmax(dim=-1, keepdim=True)   # (1, 1)
        new_ids.append(int(next_id))
        step_input = next_id                                             # (1, 1): decode feeds one token
    return torch.tensor(new_ids)


fast_greedy = greedy_with_cache(model, prompt, 10)
assert torch.equal(fast_greedy, slow_greedy)
print("greedy with the cache == greedy without it:", fast_greedy.tolist())

# %% [markdown]
# ## 3. Choosing the next token, one filter at a time
#
# Greedy always takes the arg-max: deterministic, and often repetitive. Sampling draws the next token from a
# distribution built from the logits $z \in \mathbb{R}^V$ in three optional steps, in this order. We build each
# one on made-up logits for the words after "The capital of France is" (**illustrative only**, not a model's).

# %%
words = [" Paris", " a", " the", " located", " known", " not", " one", " called", " home", " in", " Lyon", " big"]
toy_logits = torch.tensor([5.0, 3.2, 3.0, 2.6, 2.2, 1.5, 1.2, 1.0, 0.8, 0.5, 0.3, 0.1])   # illustrative only
print(f"{len(words)} candidate tokens; plain softmax gives P(' Paris') = {toy_logits.softmax(-1)[0]:.3f}")

# %% [markdown]
# **Filter 1, temperature** $T$: $p_i = e^{z_i / T} / \sum_j e^{z_j / T}$. $T < 1$ sharpens, $T > 1$ flattens,
# $T \to 0$ tends to greedy. Check by hand: at $T = 1$ it is the plain softmax; the order of tokens never changes;
# at $T = 0.05$ nearly all the mass sits on the arg-max (its logit leads by 1.8, so the runner-up has
# $e^{-1.8/0.05} \approx 10^{-16}$ of it: float32 cannot tell that from 0).

# %%
def with_temperature(logits, temperature):
    return (logits.float() / temperature).softmax(dim=-1)               # (vocab,) probabilities


torch.testing.assert_close(with_temperature(toy_logits, 1.0), toy_logits.softmax(-1))
for t in (0.5, 2.0):
    assert torch.equal(with_temperature(toy_logits, t).argsort(), toy_logits.argsort())   # same ranking
one_hot = F.one_hot(torch.tensor(0), len(words)).float()
torch.testing.assert_close(with_temperature(toy_logits, 0.05), one_hot, rtol=0, atol=1e-6)   # float32 rounding
print({t: round(float(with_temperature(toy_logits, t)[0]), 3) for t in (0.5, 1.0, 2.0)}, "= P(' Paris') by T")

# %% [markdown]
# **Filter 2, top-k**: keep the $k$ most likely tokens, set the rest to 0, renormalise. Check: exactly $k$
# tokens survive, and the ratios between survivors are unchanged (renormalising only rescales).

# %%
def keep_top_k(probs, k):
    kth_largest = probs.topk(k).values[-1]
    kept = torch.where(probs >= kth_largest, probs, 0.0)
    return kept / kept.sum()


probs = with_temperature(toy_logits, 1.0)
top3 = keep_top_k(probs, 3)
assert int((top3 > 0).sum()) == 3 and torch.equal(top3 > 0, torch.arange(12) < 3)
torch.testing.assert_close(top3[0] / top3[1], probs[0] / probs[1])
print("top-3 keeps", [words[i] for i in top3.nonzero().flatten()], "with", top3[:3].numpy().round(3))

# %% [markdown]
# **Filter 3, top-p (nucleus)**: keep the smallest set of most likely tokens whose total reaches $p$. Sorted
# from best down, a token is kept if the tokens *better* than it have not reached $p$ yet. Unlike top-k, the set
# grows when the model is unsure and shrinks when it is confident. Check by hand at $p = 0.9$: the cumulative
# sums of the sorted probabilities say how many tokens that takes.

# %%
def keep_top_p(probs, p):
    sorted_probs, order = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(0) - sorted_probs                  # mass of the better-ranked tokens
    sorted_probs = torch.where(mass_before < p, sorted_probs, 0.0)
    kept = torch.zeros_like(probs).scatter(0, order, sorted_probs)       # back to vocabulary order
    return kept / kept.sum()


cumulative = probs.sort(descending=True).values.cumsum(0)
by_hand = int((cumulative < 0.9).sum()) + 1                              # tokens until the sum first reaches 0.9
nucleus = keep_top_p(probs, 0.9)
assert int((nucleus > 0).sum()) == by_hand
assert int((keep_top_p(with_temperature(toy_logits, 0.3), 0.9) > 0).sum()) < by_hand   # confident: fewer tokens
print(f"cumulative {cumulative[:by_hand].numpy().round(3)} -> top-p 0.9 keeps {by_hand} tokens")

# %% [markdown]
# Chained, the three filters give the distribution the sampler draws from:

# %%
def next_token_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """The probabilities (vocab,) to draw the next token from; temperature 0 is greedy."""
    if temperature == 0:
        return F.one_hot(logits.argmax(), logits.numel()).float()            # all mass on the arg-max
    probs = with_temperature(logits, temperature)
    if top_k is not None:
        probs = keep_top_k(probs, top_k)
    if top_p is not None:
        probs = keep_top_p(probs, top_p)
    return probs


settings = {"greedy (T=0)": dict(temperature=0.0), "T=1": dict(temperature=1.0), "T=2": dict(temperature=2.0),
            "T=1, top-k 3": dict(temperature=1.0, top_k=3), "T=1, top-p 0.9": dict(temperature=1.0, top_p=0.9),
            "T=2, top-k 5, top-p 0.8": dict(temperature=2.0, top_k=5, top_p=0.8)}
fig, axes = plt.subplots(1, len(settings), figsize=(15, 3.2), sharey=True)
for ax, (name, setting) in zip(axes, settings.items()):
    probs = next_token_distribution(toy_logits, **setting)
    ax.bar(range(len(words)), probs, color=["C0" if p > 0 else "lightgray" for p in probs])
    ax.set_xticks(range(len(words)), words, rotation=90, fontsize=8)
    ax.set_title(name, fontsize=9)
axes[0].set_ylabel("probability of the next token")
plt.tight_layout()
plt.show()

# %% [markdown]
# **What we just built, as the package ships it.** `next_token_probs` does the same on a batch of logits,
# filtering logits with $-\infty$ instead of zeroing probabilities (so one softmax at the end renormalises), and
# `sample_next` draws from it with `torch.multinomial` and a `torch.Generator`, so a seed fixes the draw. (The
# package also validates arguments, in `check_sampling` and `as_batch`; that plumbing is left out here.)

# %% export minigemma.generate.next_token_probs minigemma.generate.sample_next

# %% [markdown]
# **Check: the package computes our distribution, and draws from it.** Tolerance: `atol=1e-6` on probabilities,
# float32 rounding of two orders of the same softmax. Then 20,000 seeded draws per setting: tokens outside the
# kept set must never appear (exact); the other frequencies must be within 0.02 of their probabilities (one
# frequency's standard deviation is at most $\sqrt{0.25 / 20000} \approx 0.0035$, so 0.02 is over 5 of them).

# %%
draws = 20_000
batch_of_logits = toy_logits.expand(draws, -1)                         # (draws, vocab): one draw per row
for name, setting in settings.items():
    expected = next_token_distribution(toy_logits, **setting)
    if setting["temperature"] > 0:
        torch.testing.assert_close(next_token_probs(toy_logits[None], **setting)[0], expected, rtol=0, atol=1e-6)
    sampled = sample_next(batch_of_logits, **setting, generator=torch.Generator().manual_seed(0))
    frequency = torch.bincount(sampled, minlength=len(words)).float() / draws
    assert (frequency[expected == 0] == 0).all(), f"{name}: drew a token outside the kept set"
    torch.testing.assert_close(frequency, expected, rtol=0, atol=0.02)
    print(f"{name:24s} keeps {int((expected > 0).sum()):2d} tokens; P(' Paris') = {expected[0]:.2f}, "
          f"drawn {frequency[0]:.2f}")

# %% [markdown]
# ### Try it: a sampling widget
#
# Move the sliders and watch the distribution the sampler would draw from (top-k 0 and top-p 1 mean "off";
# temperature 0 is greedy). The widget needs a live kernel; the figure above shows six fixed settings,
# and a static image of its default state follows it for readers without one.

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


label = {"description_width": "100px"}                                 # wide enough for "temperature" in full
temperature_slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature",
                                         style=label)
top_k_slider = widgets.IntSlider(value=0, min=0, max=len(words), description="top-k (0 off)", style=label)
top_p_slider = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1 off)",
                                   style=label)
chart = widgets.Image(format="png", layout=widgets.Layout(width="640px"))  # shown at its drawn size: 8 in x 80 dpi


def redraw(_change=None):
    chart.value = distribution_png(temperature_slider.value, top_k_slider.value, top_p_slider.value)


for slider in (temperature_slider, top_k_slider, top_p_slider):
    slider.observe(redraw, names="value")                                 # any slider move redraws the chart
redraw()
display(widgets.VBox([temperature_slider, top_k_slider, top_p_slider, chart]), exclude={"text/plain"})  # live widget only

# %% [markdown]
# **No kernel (GitHub, nbviewer)?** The widget above is blank in a static view; this is its default state
# (temperature 1, top-k and top-p off), drawn by the same function:

# %%
display(Image(distribution_png(1.0, 0, 1.0)))

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
# ## 4. The generation loop, as the package ships it
#
# 1. **Prefill**: run the whole prompt once, filling the cache, and take the last position's logits.
# 2. **Decode**: choose a token, feed just that token (its position comes from the cache), repeat.
# 3. Stop after `max_new_tokens`, or when every sequence has produced a stop id (EOS = 1); finished sequences
#    are padded with 0.
#
# This is `greedy_with_cache` from section 2 with `sample_next` in place of the arg-max, a batch dimension, and
# stop ids. With `use_cache=False` it re-feeds the growing sequence each step, like `greedy_no_cache`: slower,
# same answer. Its first lines call the package's argument checks, which we import rather than read.

# %%
from typing import Callable, Iterable

from minigemma.generate import EOS_ID, PAD_ID, as_batch, check_sampling, positions_needed   # argument checks

# %% export minigemma.generate.generate

# %%
greedy_cached = generate(model, prompt, max_new_tokens=20, stop_ids=())   # a list of ids -> a 1-D result
greedy_recomputed = generate(model, prompt, max_new_tokens=20, stop_ids=(), use_cache=False)
assert torch.equal(greedy_cached, greedy_recomputed)
assert torch.equal(greedy_cached, mg.generate(model, prompt, max_new_tokens=20, stop_ids=()))
assert torch.equal(greedy_cached[:10], slow_greedy)                       # our two loops from sections 1 and 2

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
# ## 5. What the cache saves
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
# not checked by the tests). Without the cache the time per token grows linearly with the position. With it,
# the curve here looks flat, but only because this model is tiny and 200 positions are short: each step's fixed
# cost (reading the weights, Python overhead) hides the part that grows. A cached step still reads the *whole*
# cache, so its cost rises with the length too, just far more slowly; the cell after the plot sizes that for
# the real models.

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
# **What one cached decode step reads in a real model**, at 16-bit precision: all the weights once, plus the
# keys and values of every earlier position. Gemma 7B's multi-head cache grows fast; 2B's single KV head barely
# registers.

# %%
def weight_count(c):
    attention = c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)   # q, o and k, v
    per_layer = attention + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size
    return c.vocab_size * c.hidden_size + c.num_layers * per_layer + c.hidden_size


for name, c in (("Gemma 2B", GemmaConfig.gemma_2b()), ("Gemma 7B", GemmaConfig.gemma_7b())):
    weight_bytes = 2 * weight_count(c)
    cache_per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 2         # K and V, 2 bytes each
    reads = {n: cache_per_token * n / weight_bytes for n in (512, 8192)}
    print(f"{name}: weights {weight_bytes / 2**30:.1f} GiB; the cache adds {reads[512]:.1%} to a step's reads "
          f"at 512 tokens, {reads[8192]:.1%} at 8,192")
assert 0.15 < 2 * 2 * 28 * 16 * 256 * 8192 / (2 * weight_count(GemmaConfig.gemma_7b())) < 0.3   # 7B, 8k: ~1/5

# %% [markdown]
# ## 6. Chatting: Gemma's turn format
#
# Gemma's instruction-tuned (`-it`) models were trained on conversations written as turns: each turn opens with
# `<start_of_turn>` and a role (`user` or `model`), then the text, then `<end_of_turn>` and a newline. A prompt
# ends by opening the model's turn, so the most likely continuation is the model's answer, and the model ends
# that answer with `<end_of_turn>`: that id is where generation must stop.
#
# We use the real Gemma 3 270M from its GGUF file (same turn format as Gemma 1; its ids differ: 105/106 instead
# of 106/107, so we ask the tokenizer). **This is the pretrained 270M, not an `-it` model** (its file's name is
# "Gemma 3 270m"), and a 270M model is small: expect weak, often odd answers. The point is the mechanics.

# %%
from minigemma.weights.gguf.model import default_gguf_path

torch.set_num_threads(2)                                                 # a real model: use both cores
tok = mg.Tokenizer(default_gguf_path())
gemma3 = mg.load_model(default_gguf_path())
start, end = tok.piece_to_id("<start_of_turn>"), tok.piece_to_id("<end_of_turn>")
print(f"<start_of_turn> = {start}, <end_of_turn> = {end}; {gemma3.num_parameters() / 1e6:.0f}M parameters")

# %% [markdown]
# One user turn by hand, then what the tokenizer makes of it: each marker is **one** special id, not letters.

# %%
question = "What is the capital of France?"
by_hand = f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"
hand_ids = tok.encode(by_hand)                                           # BOS first, added by encode
print([tok.id_to_piece(i) for i in hand_ids])
assert hand_ids[0] == tok.bos_id and hand_ids.count(start) == 2 and hand_ids.count(end) == 1

# %% [markdown]
# The general version takes any number of alternating messages (user, model, user, ...) and writes each as a
# turn; the official template also strips whitespace around each message. `tests/test_chat.py` renders the
# chat template that ships with Gemma's `-it` tokenizers with transformers and requires this function's text to
# equal it character for character, for 1, 3 and 5 messages. `Tokenizer.chat_prompt(messages)` is
# `encode(chat_text(messages))`, and `Tokenizer.chat_stop_ids()` gives EOS and `<end_of_turn>`.

# %% export minigemma.tokenizer.chat_text

# %%
from minigemma.tokenizer import START_OF_TURN, END_OF_TURN

assert chat_text(question) == by_hand and tok.chat_prompt([question]) == hand_ids
print(chat_text(["Hi!", "Hello. How can I help?", "Name a prime number."]))

# %% [markdown]
# **A multi-turn conversation.** Greedy answers of at most 12 tokens (kept short so the lesson stays quick) that stop at `<end_of_turn>`; each answer
# goes back into the history before the next question. Check: an answer that ended stops *on* the stop id, which
# is never part of the decoded text.

# %%
def reply(history, max_new_tokens=12):
    new_ids = mg.generate(gemma3, tok.chat_prompt(history), max_new_tokens=max_new_tokens,
                          stop_ids=tok.chat_stop_ids()).tolist()
    stopped = new_ids[-1] in tok.chat_stop_ids()
    assert all(i not in tok.chat_stop_ids() for i in new_ids[:-1])      # nothing generated after a stop
    return tok.decode(new_ids[:-1] if stopped else new_ids), stopped


history = []
for question in ("What is the capital of France?", "And of Italy?"):
    history.append(question)
    answer, stopped = reply(history)
    history.append(answer)
    print(f"user : {question}\nmodel: {answer.strip()!r}  ({'stopped at <end_of_turn>' if stopped else 'hit 12 tokens'})")
torch.set_num_threads(1)

# %% [markdown]
# ## 7. Real Gemma 1 weights (optional)
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
# You built, in this order:
#
# * a greedy loop with no cache (`greedy_no_cache`), correct and $O(N^2)$;
# * **`minigemma/kv_cache.py`**: `KVCache` keeps the keys and values of every past position, pre-allocated,
#   `update` per layer and `advance` per pass; `positions_for` continues RoPE positions after the cached ones.
#   Exact because attention is causal (checked: cached logits == full recomputation), and the same greedy tokens
#   with far less work (`greedy_with_cache`); a cached step still reads the whole cache, so its cost grows slowly
#   with the length (about a fifth of Gemma 7B's step reads at 8k tokens);
# * sampling as three filters, each checked by hand: `with_temperature`, `keep_top_k`, `keep_top_p`, chained
#   into the distribution that the package's **`next_token_probs`** computes and **`sample_next`** draws from;
# * **`generate`** in `minigemma/generate.py`: prefill, then decode token by token, with stop ids, streaming
#   (`on_token`) and a `seed` that makes sampling reproducible;
# * Gemma's chat turns, **`chat_text`** in `minigemma/tokenizer.py` (equal to the official template, tested),
#   and a multi-turn conversation with the real 270M that stops at `<end_of_turn>`.
#
# **Exercise:** [`../exercises/08_kv_cache_sampling.ipynb`](../exercises/08_kv_cache_sampling.ipynb).
#
# With notebooks 00 → 08 you have built and verified every piece of `minigemma.Gemma`. Next: how much GPU memory
# all this needs (notebook 09).
