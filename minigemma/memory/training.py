"""How much memory training Gemma needs, in bytes, from the config: weights, gradients, optimizer states,
the activations kept for the backward pass (with and without gradient checkpointing) and the chunked loss.

    total = weights + gradients (trainable only) + AdamW states + saved activations + loss chunk
* full fine-tuning: every parameter trains. AdamW keeps exp_avg and exp_avg_sq per parameter (2 x 4 bytes in
  float32; 8-bit optimizers: 2 x 1 byte plus one float32 scale per 2048-value block, a formula, not measured).
* LoRA: the base is frozen (no gradients, no states); only r x (in + out) values per adapted projection train.
* QLoRA: LoRA over a base stored in a quantized format (memory.formats), the adapters in float32.
* Activations: what autograd saves in one decoder block, traced from minigemma's code (`saved_per_block`) and
  checked tensor by tensor against torch.autograd.graph.saved_tensors_hooks (tests/test_training_memory.py).
  Counting rule: each distinct storage saved for backward, once; parameters excluded (they are "weights").
  With checkpointing a block keeps only its input, and one block's activations exist again while it is
  recomputed in the backward pass.
* Loss: the scored final hidden states, plus one chunk of float32 logits and its gradient (chunk x vocab x 8).
Not here: allocator rounding, kernel workspaces, gradient buffers transient during the backward pass, Gemma 3's
extra norms, eager attention's scores (sdpa assumed), mixed-precision master weights.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import GemmaConfig
from .inference import dtype_bytes, parameter_count, weight_bytes

ADAM_BLOCK = 2048                                 # 8-bit Adam (bitsandbytes): one fp32 scale per block of values
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_shapes(config: GemmaConfig) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each projection of one block."""
    D, F, q, kv = (config.hidden_size, config.intermediate_size, config.num_heads * config.head_dim,
                   config.num_kv_heads * config.head_dim)
    return {"q_proj": (D, q), "k_proj": (D, kv), "v_proj": (D, kv), "o_proj": (q, D),
            "gate_proj": (D, F), "up_proj": (D, F), "down_proj": (F, D)}


def lora_parameter_count(config: GemmaConfig, targets=("q_proj", "v_proj"), r: int = 8) -> int:
    """r x (in + out) per adapted projection, in every layer."""
    shapes = projection_shapes(config)
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise ValueError(f"unknown LoRA targets {unknown}; choose from {', '.join(PROJECTIONS)}")
    return config.num_layers * sum(r * sum(shapes[t]) for t in targets)


def optimizer_state_bytes(trainable: int, optimizer: str = "adamw") -> int:
    """AdamW in float32: exp_avg + exp_avg_sq = 8 bytes per value (torch.optim.AdamW with float32 parameters);
    'adamw8bit': 2 bytes per value + one float32 scale per block of 2048, for each of the two states."""
    if optimizer == "adamw":
        return 8 * trainable
    if optimizer == "adamw8bit":
        return 2 * trainable + 2 * 4 * -(-trainable // ADAM_BLOCK)
    raise ValueError(f"optimizer must be 'adamw' or 'adamw8bit', got {optimizer!r}")


def saved_per_block(config: GemmaConfig, tokens: int, batch: int = 1, dtype="fp32") -> dict[str, int]:
    """Bytes autograd keeps for one Gemma 1 decoder block (sdpa attention): {what: bytes}."""
    b, B, S = dtype_bytes(dtype), batch, tokens
    D, F, H, KV, hd = (config.hidden_size, config.intermediate_size, config.num_heads, config.num_kv_heads,
                       config.head_dim)
    x = B * S * D * b                                                 # one (batch, seq, hidden) tensor
    norm = {"input": x, "x * rsqrt (fp32)": B * S * D * 4, "rsqrt (fp32)": B * S * 4, "1 + w": D * b,
            "output": x}
    return {
        **{f"attention norm {k}": v for k, v in norm.items()},
        "additive mask (fp32, made from the bool mask)": S * S * 4,
        "rotated q, rotated k, v": B * (H + 2 * KV) * S * hd * b,
        "attention output, logsumexp": B * H * S * hd * b + B * H * S * 4,
        "heads merged (o_proj input)": B * S * H * hd * b,
        **{f"MLP norm {k}": v for k, v in norm.items()},
        "gate, up, GELU(gate), product": 4 * B * S * F * b,
    }


def saved_outside_blocks(config: GemmaConfig, tokens: int, batch: int = 1, dtype="fp32") -> dict[str, int]:
    b, B, S, D, hd = dtype_bytes(dtype), batch, tokens, config.hidden_size, config.head_dim
    return {"input ids (int64)": 8 * B * S, "embedding scale": b, "RoPE cos, sin (fp32, shared)": 2 * S * hd // 2 * 4,
            "final norm (input, x * rsqrt, rsqrt, 1 + w)": B * S * D * (b + 4) + B * S * 4 + D * b}


def loss_bytes(config: GemmaConfig, scored: int, batch_tokens: int, chunk: int = 256, dtype="fp32") -> dict:
    """The chunked loss: scored hidden states and targets kept, and one chunk's float32 logits + gradient."""
    b, D, V = dtype_bytes(dtype), config.hidden_size, config.vocab_size
    rows = min(chunk, scored)
    return {"scored hidden states": scored * D * b, "targets (int64) and kept mask": 8 * scored + batch_tokens,
            "one chunk of fp32 logits and their gradient": 2 * rows * V * 4}


def activation_bytes(config, tokens: int, batch: int = 1, dtype="fp32", checkpointing: bool = False) -> int:
    """Saved activations of the whole forward pass (the loss excluded)."""
    block = sum(saved_per_block(config, tokens, batch, dtype).values())
    outside = sum(saved_outside_blocks(config, tokens, batch, dtype).values())
    if not checkpointing:
        return config.num_layers * block + outside
    x = batch * tokens * config.hidden_size * dtype_bytes(dtype)
    mask = tokens * tokens                                           # the bool mask, saved once for the recompute
    return config.num_layers * x + mask + outside + block          # inputs kept; one block recomputed at a time


@dataclass(frozen=True)
class TrainingEstimate:
    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def training_estimate(config: GemmaConfig, tokens: int, batch: int = 1, mode: str = "lora", dtype="bf16",
                      weights: str | None = None, optimizer: str = "adamw", targets=("q_proj", "v_proj"),
                      r: int = 8, checkpointing: bool = True, chunk: int = 256) -> TrainingEstimate:
    """Memory of one training step of `batch` sequences of `tokens` tokens, every position scored."""
    if mode not in ("full", "lora", "qlora"):
        raise ValueError(f"mode must be 'full', 'lora' or 'qlora', got {mode!r}")
    weights = weights or ("nf4" if mode == "qlora" else dtype)
    trainable = parameter_count(config) if mode == "full" else lora_parameter_count(config, targets, r)
    grad_bytes = dtype_bytes(dtype) if mode == "full" else 4          # adapters train in float32
    loss = loss_bytes(config, batch * (tokens - 1), batch * tokens, chunk, dtype)
    parts = {"weights": sum(weight_bytes(config, weights).values()),
             "trainable (adapters)": 0 if mode == "full" else 4 * trainable,
             "gradients": grad_bytes * trainable,
             "optimizer states": optimizer_state_bytes(trainable, optimizer),
             "activations": activation_bytes(config, tokens, batch, dtype, checkpointing),
             "loss": sum(loss.values())}
    return TrainingEstimate(parts)


def measured_saved_bytes(model, fn) -> int:
    """Bytes autograd saves while fn() runs: each distinct storage once, the model's parameters excluded."""
    import torch
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(seen.values())
