"""A one-token decode step with a fixed-size KV cache, so `torch.compile` builds one graph for every step.

The lesson's KVCache (kv_cache.py) returns keys[:, :, :length]: a shape that grows by one each step, so a compiled
step would be recompiled (or made shape-generic) as it grows. Here the cache always hands attention all `max_len`
positions, the new token's K/V are written at its position with index_copy_, and the causal mask hides the
positions not yet filled. Every step then has the same shapes and the same graph; the prompt is prefilled eagerly.

    fast = CompiledDecoding(model, max_len=512)      # compiles on the first decode step (tens of seconds)
    new_ids = mg.generate(fast, prompt_ids, max_new_tokens=64)

Exactness: masked keys get probability exactly 0, so the step computes the eager path's maths; the compiled
kernels fuse and reorder float sums, so logits agree to rounding, not bit for bit (tests/test_compiled_decode.py
states the tolerance) and float32 greedy continuations are the same tokens. In bfloat16 the reordered sums round
differently, so a near-tie can go the other way after a few tokens (seen on the native-GGUF 270M in bfloat16).
Not here: a compiled prefill, the int8 KV cache (quant/kv_int8.py), CUDA graphs, batches of changing size.
"""
from __future__ import annotations

import types
from numbers import Integral

import torch

from ..kv_cache import KVCache
from ..model import check_input


class StaticKVCache(KVCache):
    """A KVCache whose one-token updates write in place and return all max_len positions (static shapes)."""

    def __init__(self, config, batch_size: int, max_len: int, dtype=torch.float32, device="cpu"):
        super().__init__(config, batch_size, max_len, dtype, device)
        self.key_positions = torch.arange(max_len, device=device)      # (max_len,) every key a step may see
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.stepping = False                                           # True only inside decode_step

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        if not self.stepping:                                           # the eager prefill: the lesson's cache
            return super().update(layer, k, v)
        keys, values = self.layer_keys[layer], self.layer_values[layer]   # (batch, kv_heads, max_len, head_dim)
        keys.index_copy_(2, self.position, k)                             # k (batch, kv_heads, 1, head_dim)
        values.index_copy_(2, self.position, v)
        return keys, values


def decode_step(model, token: torch.Tensor, cache: StaticKVCache) -> torch.Tensor:
    """token (batch, 1) at position cache.position -> logits (batch, 1, vocab); its K/V written into the cache."""
    h = model.embed(token)                                                     # (batch, 1, hidden)
    layer_inputs = model.rope_and_masks(cache.position, cache.key_positions)    # masks (1, max_len)
    for block, (rope, mask) in zip(model.layers, layer_inputs):
        h = block(h, rope, mask, cache)
    return model.embed.logits(model.norm(h))


def own_copy(function):
    """The same function with a code object of its own: torch.compile keeps its graphs per code object, with a
    limit of 8, so sharing decode_step would let the 9th model or size of a process silently run uncompiled."""
    return types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__)


class CompiledDecoding:
    """A finished model (float or quantized) behind the interface generate() uses, its decode steps compiled.

    `max_len` is the static cache size: every generation with this object may use up to that many positions.
    `compile=False` runs the same static step eagerly (to check the compiled one against)."""

    def __init__(self, model, max_len: int = 512, compile: bool = True):
        if isinstance(max_len, bool) or not isinstance(max_len, Integral) or not 1 <= max_len <= model.config.max_seq_len:
            raise ValueError(f"max_len must be an integer in [1, {model.config.max_seq_len}] (the model's context), "
                             f"got {max_len!r}")
        if "new_cache" in vars(model):               # use_int8_kv_cache (quant/kv_int8.py) replaced the cache
            raise ValueError("CompiledDecoding keeps a float cache of its own; this model uses another KV cache "
                             "(use_int8_kv_cache): decode it with minigemma.generate, uncompiled")
        self.model, self.config, self.max_len = model, model.config, int(max_len)
        self.step = torch.compile(own_copy(decode_step), dynamic=False) if compile else decode_step

    @property
    def device(self) -> torch.device:
        return self.model.device

    def new_cache(self, batch_size: int, max_len: int) -> StaticKVCache:
        if max_len > self.max_len:
            raise ValueError(f"this generation needs {max_len} cache positions but CompiledDecoding was built with "
                             f"max_len={self.max_len}; build it with a larger max_len")
        return StaticKVCache(self.config, batch_size, self.max_len, dtype=self.model.dtype, device=self.device)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, cache: StaticKVCache | None = None, last_only: bool = False):
        if cache is None or cache.length == 0 or input_ids.shape[1] != 1:   # no cache, or the prompt: eager
            return self.model(input_ids, cache=cache, last_only=last_only)
        check_input(input_ids, cache, self.config)
        check_step_cache(cache, input_ids)
        cache.position.fill_(cache.length)
        cache.stepping = True
        try:
            logits = self.step(self.model, input_ids, cache)                # (batch, 1, vocab)
        finally:
            cache.stepping = False
        cache.advance(1)
        return logits


def check_step_cache(cache, input_ids: torch.Tensor) -> None:
    """One clear error for a cache the compiled step cannot write: not a StaticKVCache, another batch, or full."""
    if not isinstance(cache, StaticKVCache):
        raise ValueError(f"the compiled step needs the cache CompiledDecoding.new_cache makes (a StaticKVCache), "
                         f"got {type(cache).__name__}")
    if cache.keys.shape[1] != input_ids.shape[0]:
        raise ValueError(f"the cache holds a batch of {cache.keys.shape[1]} sequences, the input ids "
                         f"{input_ids.shape[0]}")
    if cache.length + 1 > cache.max_len:
        raise ValueError(f"KV cache is full: {cache.length + 1} positions needed, {cache.max_len} allocated")
