"""How much memory Gemma inference needs, in bytes, from the config alone: weights, KV cache, temporary buffers.

    total = weights + KV cache + (buffers alive at the peak of prefill or decode) + overhead (a labelled assumption)

* Weights: every tensor's shape follows from the config (`weight_tensors`); its bytes from the storage format
  (`memory.formats`: fp32, bf16, int8, int4, NF4, GGUF mixes).
* KV cache: 2 (K and V) x layers x batch x kv_heads x tokens x head_dim x bytes, exactly what
  `minigemma.kv_cache.KVCache` pre-allocates.
* Buffers: `forward_phases` lists the tensors alive at each step of minigemma's forward pass (traced from the code,
  checked against torch.profiler by `memory.measure`); the largest step is the peak. The traps: eager attention
  keeps batch x heads x tokens^2 float32 scores, and logits for every position cost tokens x 256k vocab.
* Overhead: the CUDA context and kernels, outside PyTorch's allocator; an assumption you can change.
Not here: allocator rounding and fragmentation, kernel workspaces (cuBLAS, fused attention tiles), tensors of
size O(hidden) or smaller, Gemma 3's QK-norm and extra norm temporaries, paged KV caches, the int8 cache's
dequantized copy, and the float32 K/V copies of a bfloat16 decode step on the CPU (attention.attend_sdpa;
GPUs attend in bfloat16).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..config import GemmaConfig
from ..gemma3 import Gemma3Config, model_class
from .formats import Tensor, storage_for

GiB, GB = 2**30, 10**9
DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp8": 1}
CUDA_CONTEXT_BYTES = GiB // 2   # assumption: CUDA context + loaded kernels; nvidia-smi shows it, PyTorch does not


def dtype_bytes(dtype) -> int:
    """Bytes per element of 'bf16' / 'fp32' / ... or of a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype.itemsize
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def describe(nbytes: int) -> str:
    return f"{nbytes / GiB:.2f} GiB ({nbytes / GB:.2f} GB)"


def weight_tensors(config: GemmaConfig) -> list[Tensor]:
    """Every weight tensor of the model, named as in minigemma's state_dict, with its shape: read off the model
    itself, built on the meta device (no memory), so this list cannot drift from the code."""
    with torch.device("meta"):
        model = model_class(config)(config)
    return [Tensor(name, weight_group(name), tuple(p.shape), layer_of(name)) for name, p in model.named_parameters()]


def weight_group(name: str) -> str:
    """'embedding', 'norms', 'attention' or 'mlp': the rows of the VRAM table."""
    if name == "embed.weight":
        return "embedding"
    if name.endswith("norm.weight"):
        return "norms"
    return "attention" if ".attn." in name else "mlp"


def layer_of(name: str) -> int | None:
    match = re.match(r"layers\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def parameter_count(config: GemmaConfig) -> int:
    """Parameters of the model (the tied head counted once): 2,506,172,416 for 2B, 8,537,680,896 for 7B."""
    return sum(t.numel for t in weight_tensors(config))


def tensor_bytes(config: GemmaConfig, fmt: str = "bf16") -> dict[str, int]:
    """{tensor name: bytes} in weight format `fmt` (see formats.WEIGHT_FORMATS)."""
    return {t.name: storage_for(t, config.num_layers, fmt).nbytes(t.shape) for t in weight_tensors(config)}


def weight_bytes(config: GemmaConfig, fmt: str = "bf16") -> dict[str, int]:
    """Bytes of the weights by group: embedding, attention, mlp, norms."""
    groups = dict.fromkeys(("embedding", "attention", "mlp", "norms"), 0)
    for t in weight_tensors(config):
        groups[t.group] += storage_for(t, config.num_layers, fmt).nbytes(t.shape)
    return groups


def kv_cache_bytes(config: GemmaConfig, tokens: int, batch: int = 1, dtype="bf16") -> int:
    """K and V for `tokens` positions of every layer: the size of KVCache(config, batch, tokens, dtype); "int8":
    quant.kv_int8.Int8KVCache, int8 codes plus one float32 scale per position and KV head."""
    vectors = 2 * config.num_layers * batch * config.num_kv_heads * tokens       # one per (K|V, layer, b, head, t)
    if dtype == "int8":
        return vectors * (config.head_dim + 4)
    return vectors * config.head_dim * dtype_bytes(dtype)


def forward_phases(config: GemmaConfig, new_tokens: int, batch: int = 1, dtype="bf16", past_tokens: int = 0,
                   attention: str = "sdpa", last_only: bool = True, cache: bool = True) -> dict[str, dict[str, int]]:
    """{step of minigemma's forward pass: {buffer: bytes}} for the tensors alive at that step, weights and KV cache
    excluded. Prefill: new_tokens = prompt, past_tokens = 0. Decode: new_tokens = 1, past_tokens = context - 1."""
    if attention not in ("sdpa", "eager"):
        raise ValueError(f"attention must be 'sdpa' or 'eager', got {attention!r}")
    b, B, S, T = dtype_bytes(dtype), batch, new_tokens, past_tokens + new_tokens
    D, F, V, H, KV, hd = (config.hidden_size, config.intermediate_size, config.vocab_size, config.num_heads,
                          config.num_kv_heads, config.head_dim)
    f32_copy = 4 if b < 4 else 0          # .float() copies a bf16 tensor; on a float32 tensor it is a no-op
    kinds = 2 if isinstance(config, Gemma3Config) else 1             # Gemma 3: global and local tables/masks
    fixed = {"positions (int64)": 8 * (S + T), "RoPE cos/sin (fp32)": kinds * 4 * S * hd,
             "causal mask (bool)": kinds * S * T}
    x, q, k = B * S * D * b, B * H * S * hd * b, B * KV * S * hd * b   # bytes of (B,S,D), (B,H,S,hd), (B,KV,S,hd)
    in_attention = {**fixed, "block input": x, "normed input": x,
                    "q (+ k, v without cache)": q + (0 if cache else 2 * k)}
    n_scores = B * H * S * T                                          # (B, H, S, T) attention scores
    if attention == "eager":              # scores rounded, copied to fp32, masked, softmaxed, rounded back
        attend = {"attention scores (eager)": {**in_attention, "inverted mask": S * T,
                                               "scores and probabilities": n_scores * (b + 8 if b < 4 else 8)},
                  "attention values (eager)": {**in_attention, "scores and probabilities": n_scores * (4 + b),
                                               "V expanded to every query head (copy)": expanded_kv_copy(
                                                   config, B, T, b, cache), "heads output": q}}
    else:                                 # fused kernel: no scores kept; the bool mask becomes an additive one
        attend = {"attention (sdpa)": {**in_attention, "additive mask": S * T * b, "heads output": q}}
    logit_rows = B * (1 if last_only else S)
    return {
        "causal mask": {**fixed, "key distances (int64)": 8 * S * T},
        "embedding": {**fixed, "lookup": x, "scaled lookup": x},
        "attention norm": {**fixed, "block input": x, "fp32 temporaries": B * S * D * (8 + f32_copy)},
        "RoPE on q": {**fixed, "block input": x, "normed input": x, "q, k, v": q + 2 * k,
                      "fp32 temporaries": B * H * S * hd * (8 + f32_copy)},
        "RoPE on k": {**fixed, "block input": x, "normed input": x, "q, k, v, rotated q": 2 * q + 2 * k,
                      "fp32 temporaries": B * KV * S * hd * (8 + f32_copy)},
        **attend,
        "attention output": {**in_attention, "heads output + transposed copy": 2 * q, "o_proj output": x},
        "MLP": {**fixed, "block input": x, "after attention": x, "normed input": x,
                "gate, GELU(gate), up, product (3 alive)": 3 * B * S * F * b},
        "logits": {**fixed, "final hidden": x, "final norm": logit_rows * D * b, "logits": logit_rows * V * b},
    }


def expanded_kv_copy(config: GemmaConfig, batch: int, keys: int, nbytes: int, cache: bool) -> int:
    """Bytes of the copy torch.matmul makes of K (then V) when broadcasting a KV head to its group of query heads
    cannot be a view: the (batch, kv_heads, group) dims must merge into one strided batch dim."""
    group = config.num_heads // config.num_kv_heads
    sizes = (batch, config.num_kv_heads, group)
    mergeable = sum(n > 1 for n in sizes) <= 1 or (cache and group == 1)   # cache layout: batch, then kv heads
    return 0 if mergeable else batch * config.num_heads * keys * config.head_dim * nbytes


def peak_phase(phases: dict[str, dict[str, int]]) -> tuple[str, int]:
    name = max(phases, key=lambda p: sum(phases[p].values()))
    return name, sum(phases[name].values())


@dataclass(frozen=True)
class Estimate:
    weights: dict[str, int]        # by group
    kv_cache: int
    buffers: dict[str, int]        # alive at the peak, besides weights and cache
    peak_at: str                   # "prefill: MLP", "decode: logits", ...
    overhead: dict[str, int]       # labelled assumptions

    @property
    def total(self) -> int:
        return sum(self.weights.values()) + self.kv_cache + sum(self.buffers.values()) + sum(self.overhead.values())


def estimate(config: GemmaConfig, context: int, batch: int = 1, weights: str = "bf16", dtype="bf16",
             kv_dtype=None, attention: str = "sdpa", last_only: bool = True,
             overhead: int = CUDA_CONTEXT_BYTES) -> Estimate:
    """Memory to prefill a `context`-token prompt (the worst case: it fills the cache) and decode at that length."""
    for name, value in (("context", context), ("batch", batch)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if context > config.max_seq_len:
        raise ValueError(f"context of {context} tokens exceeds the model's maximum of {config.max_seq_len}")
    steps = {"prefill": forward_phases(config, context, batch, dtype, 0, attention, last_only),
             "decode": forward_phases(config, 1, batch, dtype, context - 1, attention)}
    peaks = {step: peak_phase(phases) for step, phases in steps.items()}     # step -> (phase, bytes)
    step = max(peaks, key=lambda s: peaks[s][1])
    phase = peaks[step][0]
    return Estimate(weights=weight_bytes(config, weights), kv_cache=kv_cache_bytes(config, context, batch,
                    kv_dtype or dtype), buffers=steps[step][phase], peak_at=f"{step}: {phase}",
                    overhead={"CUDA context (assumed)": overhead} if overhead else {})
