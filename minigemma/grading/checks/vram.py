"""Checks for exercise 09, memory arithmetic: parameter count, KV-cache bytes and the longest context that fits, for
the official configs and for random configs the learner has never seen. The reference builds minigemma's own
Gemma and KVCache on the meta device (shapes without memory) and counts."""
import functools
import random

import torch

from ...config import GemmaConfig
from ...kv_cache import KVCache
from ...model import Gemma
from ..compare import diagnose_value
from ..core import Mismatch, check, require_callable


def random_config() -> GemmaConfig:
    """A config unlike Gemma's: head_dim is never hidden/heads, and KV heads are a proper divisor of heads."""
    heads = random.choice([4, 6, 8, 12])
    kv_heads = random.choice([d for d in range(2, heads) if heads % d == 0])
    hidden = 64 * random.randint(4, 40)
    return GemmaConfig(vocab_size=random.randint(1000, 300000), hidden_size=hidden,
                       intermediate_size=hidden * random.choice([3, 4, 8]), num_layers=random.randint(2, 40),
                       num_heads=heads, num_kv_heads=kv_heads, head_dim=random.choice([64, 96, 128, 256]),
                       max_seq_len=random.choice([2048, 4096, 8192]))


def configs():
    return [random_config(), GemmaConfig.gemma_2b(), GemmaConfig.gemma_7b(), random_config()]


@functools.lru_cache(maxsize=64)
def reference_parameters(config) -> int:
    """Gemma(config).num_parameters(), from one- and two-layer models (every layer has the same parameters)."""
    with torch.device("meta"):
        one, two = (Gemma(config.replace(num_layers=n)).num_parameters() for n in (1, 2))
    return one + (config.num_layers - 1) * (two - one)


def parameter_variants(c):
    d, f, v, n, hd = c.hidden_size, c.intermediate_size, c.vocab_size, c.num_layers, c.head_dim
    attention = d * hd * (2 * c.num_heads + 2 * c.num_kv_heads)
    right = v * d + n * (attention + 3 * d * f + 2 * d) + d
    derived = d // c.num_heads
    return [(right + v * d, "Gemma ties the output head to the embedding: count that matrix once."),
            (right + n * 2 * d * hd * (c.num_heads - c.num_kv_heads),
             "k_proj and v_proj have num_kv_heads * head_dim rows, not num_heads * head_dim."),
            (v * d + n * (d * derived * (2 * c.num_heads + 2 * c.num_kv_heads) + 3 * d * f + 2 * d) + d,
             "never derive head_dim as hidden_size / num_heads (Gemma 7B: 16 x 256 != 3072); use config.head_dim."),
            (right - n * 2 * d - d, "you left out the RMSNorm weights: two per layer of hidden_size, plus the final "
                                    "norm."),
            (right - n * d * f, "GeGLU has three matrices (gate, up and down), each hidden_size x intermediate_size.")]


def as_int(value, what):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise Mismatch(f"{what} should return a whole number, got {value!r}.")
    return value


@check("vram-parameters")
def check_parameter_count(count_parameters):
    require_callable(count_parameters, "count_parameters")
    for config in configs():
        got = as_int(count_parameters(config), "count_parameters")
        diagnose_value(got, reference_parameters(config), parameter_variants(config),
                       f"wrong count for {config_text(config)}")


def config_text(c) -> str:
    return (f"GemmaConfig(vocab_size={c.vocab_size}, hidden_size={c.hidden_size}, intermediate_size="
            f"{c.intermediate_size}, num_layers={c.num_layers}, num_heads={c.num_heads}, num_kv_heads="
            f"{c.num_kv_heads}, head_dim={c.head_dim})")


def reference_kv_bytes(config, batch, seq_len, dtype) -> int:
    return KVCache(config, batch, seq_len, dtype=dtype, device="meta").nbytes


def kv_variants(c, batch, seq_len, size):
    per_position = c.num_layers * batch * seq_len * size
    right = 2 * per_position * c.num_kv_heads * c.head_dim
    return [(right // 2, "store both K and V: the cache holds two tensors per layer."),
            (2 * per_position * c.num_heads * c.head_dim, "only the KV heads are cached: num_kv_heads, not num_heads."),
            (2 * per_position * c.hidden_size, "a cached key has num_kv_heads * head_dim numbers, not hidden_size."),
            (right * 8, "that is bits; count bytes (bfloat16 is 2 bytes per number)."),
            (right // size, "that counts numbers; multiply by the bytes per number of the dtype.")]


@check("vram-kv-bytes")
def check_kv_cache_bytes(kv_cache_bytes):
    require_callable(kv_cache_bytes, "kv_cache_bytes")
    for i, config in enumerate(configs()):
        batch, seq_len = random.randint(1, 8), random.randint(1, config.max_seq_len)
        # float32 first: with 2-byte dtypes "forgot K and V" and "counted numbers, not bytes" give the same total
        dtype = torch.float32 if i == 0 else random.choice([torch.bfloat16, torch.float32, torch.float16])
        got = as_int(kv_cache_bytes(config, batch, seq_len, dtype), "kv_cache_bytes")
        size = dtype.itemsize
        expected = reference_kv_bytes(config, batch, seq_len, dtype)
        diagnose_value(got, expected, kv_variants(config, batch, seq_len, size),
                       f"wrong size for batch {batch}, {seq_len} positions, {dtype} and {config_text(config)}")


def context_that_fits(config, memory, batch, dtype, weights=True, cap=True, batch_aware=True, ceil=False) -> int:
    size = dtype.itemsize
    free = memory - (reference_parameters(config) * size if weights else 0)
    per_position = reference_kv_bytes(config, batch if batch_aware else 1, 1, dtype)
    fits = max(0, -(-free // per_position) if ceil else free // per_position)
    return min(fits, config.max_seq_len) if cap else fits


@check("vram-context")
def check_max_context(max_context):
    require_callable(max_context, "max_context")
    fractions = [0.3, 0.77, 2.0, random.uniform(0.1, 1.5)]          # of a full-context cache: some fit, some not
    for config, fraction in zip(configs(), fractions):
        batch, dtype = random.randint(2, 8), random.choice([torch.bfloat16, torch.float32])
        size = dtype.itemsize
        weights = reference_parameters(config) * size
        per_position = reference_kv_bytes(config, batch, 1, dtype)
        memory = weights + int(per_position * config.max_seq_len * fraction) + 1
        got = as_int(max_context(config, memory, batch, dtype), "max_context")
        variants = [(context_that_fits(config, memory, batch, dtype, weights=False),
                     "the weights take memory too: subtract them before filling the rest with KV cache."),
                    (context_that_fits(config, memory, batch, dtype, cap=False),
                     "the context cannot exceed config.max_seq_len."),
                    (context_that_fits(config, memory, batch, dtype, ceil=True),
                     "round down: a position whose cache does not fit entirely does not fit."),
                    (context_that_fits(config, memory, batch, dtype, batch_aware=False),
                     "the cache holds batch_size sequences: multiply the per-position bytes by the batch size.")]
        diagnose_value(got, context_that_fits(config, memory, batch, dtype), variants,
                       f"wrong context for {memory:,} bytes, batch {batch}, {dtype} and {config_text(config)}")
    if as_int(max_context(GemmaConfig.gemma_2b(), 1000, 1, torch.bfloat16), "max_context") != 0:
        raise Mismatch("when the weights alone do not fit, no context fits: return 0.")
