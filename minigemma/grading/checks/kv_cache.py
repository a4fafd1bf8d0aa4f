"""Checks for exercise 08 (part 1), the KV cache: the learner's `update` inside a tiny Gemma, and a rolling
(sliding-window) cache. The references are minigemma.kv_cache and the model run without any cache."""
import random

import torch

from ...config import GemmaConfig
from .block import tiny_model
from ..compare import diagnose, expect_tensor, fresh_generator, matches, randn
from ..core import Mismatch, check, require_callable


def expect_filled(keys, filled: int, new: int, buffer_len: int, call: str):
    """The keys update returned must cover exactly the `filled` positions written so far."""
    if isinstance(keys, torch.Tensor) and keys.dim() == 4 and keys.shape[2] != filled:
        if keys.shape[2] == buffer_len:
            raise Mismatch("update returned the whole pre-allocated buffer; return only the filled part "
                           "[:length + seq], or attention would also read the empty slots.")
        if keys.shape[2] == new:
            raise Mismatch("update returned only the new keys; return every key stored so far, old and new.")
    return expect_tensor(keys, (1, 2, filled, 4), name=f"update ({call})")


def probe_update(cache_class, gen):
    """Write 3 positions, then 1, into layer 0 (layer 1 in between) and say precisely what went wrong."""
    config = GemmaConfig.tiny(num_layers=2, num_kv_heads=2, head_dim=4)
    cache = cache_class(config, 1, 8)
    first, second = randn(1, 2, 3, 4, gen=gen), randn(1, 2, 1, 4, gen=gen)
    keys, _ = cache.update(0, first, first + 1)
    keys = expect_filled(keys, 3, 3, 8, "first call: 3 new positions, empty cache")
    if matches(keys[:, :, 1:], first[:, :, :2]):
        raise Mismatch("off by one: you wrote the new keys one slot late; with an empty cache the first goes in "
                       "slot 0 (positions length .. length + seq - 1).")
    diagnose(keys, first, otherwise="the first update did not return the keys it was given.")
    cache.advance(3)
    cache.update(1, randn(1, 2, 3, 4, gen=gen), randn(1, 2, 3, 4, gen=gen))     # another layer, same positions
    keys, values = cache.update(0, second, second + 1)
    keys = expect_filled(keys, 4, 1, 8, "second call: 3 cached + 1 new position")
    if matches(keys[:, :, 2:3], second):
        raise Mismatch("off by one: the new key overwrote the last cached one; after 3 cached positions it "
                       "belongs in slot 3 (= length).")
    if not matches(keys[:, :, :3], first):
        raise Mismatch("the keys cached for layer 0 changed; each layer keeps its own slice (keys[layer]).")
    expected = torch.cat((first, second), dim=2)                              # (1, kv_heads, 4, head_dim)
    diagnose(keys, expected, otherwise="the keys returned after two updates are wrong.")
    diagnose(expect_tensor(values, expected.shape, name="the values"), expected + 1,
             [(keys, "update returned the keys twice; return (keys, values).")],
             "the keys are right but the values are not: store and return v like k.")


@check("kv-cache")
def check_kv_cache(cache_class):
    require_callable(cache_class, "KV cache class")
    gen = fresh_generator()
    probe_update(cache_class, gen)
    model = tiny_model(gen)
    prompt_len, steps = random.randint(2, 5), 3
    ids = torch.randint(0, model.config.vocab_size, (1, prompt_len + steps), generator=gen)
    cache = cache_class(model.config, 1, prompt_len + steps)
    with torch.no_grad():
        expected = model(ids)                                                   # no cache: the whole sequence
        got = [model(ids[:, :prompt_len], cache=cache)]
        got += [model(ids[:, i:i + 1], cache=cache) for i in range(prompt_len, prompt_len + steps)]
    diagnose(torch.cat(got, dim=1), expected, otherwise="decoding with your cache gives different logits from "
             "running the whole sequence without a cache.", rtol=1e-4, atol=1e-4)


def rolling_reference(history, window):
    return history[:, :, -window:]                                           # the last `window` positions, in order


@check("kv-rolling")
def check_rolling_kv_cache(rolling_class):
    require_callable(rolling_class, "rolling KV cache class")
    gen = fresh_generator()
    window, kv_heads, head_dim = random.randint(3, 5), 2, 4
    cache = rolling_class(window, 1, kv_heads, head_dim)
    history = torch.empty(1, kv_heads, 0, head_dim)
    for step in range(2 * window + 2):
        k = randn(1, kv_heads, 1, head_dim, gen=gen)
        history = torch.cat((history, k), dim=2)
        out = cache.append(k, -k)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise Mismatch("append should return the pair (keys, values).")
        keys, values = out
        expected = rolling_reference(history, window)
        seen = step + 1
        if isinstance(keys, torch.Tensor) and keys.dim() == 4 and keys.shape[2] != expected.shape[2]:
            if seen < window and keys.shape[2] == window:
                raise Mismatch("before the window fills, return only the tokens seen so far, not empty slots.")
            raise Mismatch(f"after {seen} tokens with window {window} you returned {keys.shape[2]} positions; "
                           f"keep exactly min(tokens seen, window) = {expected.shape[2]}.")
        keys = expect_tensor(keys, expected.shape, name=f"append (token {seen})")
        slots = torch.roll(expected, shifts=seen % window, dims=2) if seen > window else expected
        diagnose(keys, expected, [(slots, f"after the cache wraps (token {seen}, window {window}) return the "
                                          "slots in time order, oldest first; the oldest sits at slot "
                                          "length % window.")],
                 f"wrong keys after {seen} tokens with window {window}.", atol=0)
        diagnose(expect_tensor(values, expected.shape, name="the values"), -expected,
                 otherwise="the keys are right but the values are not.", atol=0)
