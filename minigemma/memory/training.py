"""How much memory training Gemma needs, in bytes, from the config: weights, gradients, optimizer states,
the activations kept for the backward pass (with and without gradient checkpointing) and the chunked loss.

    total = weights + gradients (trainable only) + AdamW states + saved activations + loss chunk
* full fine-tuning: every parameter trains. AdamW keeps exp_avg and exp_avg_sq per parameter, in the
  parameter's dtype as torch.optim.AdamW does (2 x 2 bytes for bf16 weights; 8-bit optimizers: 2 x 1 byte plus
  one float32 scale per 2048-value block, a formula, not measured).
* LoRA: the base is frozen (no gradients, no states); only r x (in + out) values per adapted projection train.
* QLoRA: LoRA over a base stored in a quantized format (memory.formats), the adapters in float32.
* Activations: what autograd saves in each decoder block, traced from minigemma's code (`saved_per_block`):
  the rule it follows is that an operation saves an operand only if the gradient of another operand needs it,
  so with LoRA a block saves far less (frozen weights need no inputs) and blocks before the first adapted one
  save nothing. Each distinct storage counts once; parameters are "weights". With checkpointing a block keeps
  only its input, and one block's activations exist again while it is recomputed in the backward pass.
* Loss: the scored final hidden states and targets, the loss and its divisor, plus one chunk of float32 logits
  and its gradient (chunk x vocab x 8) at a time.

What is counted, and how it is checked (tests/test_training_memory.py, tiny models on the CPU, to the byte):
the bytes alive *between* the phases of a step, measured with torch.profiler (memory.measure): after the
forward pass (activations + loss kept), after backward (the gradients), after the first AdamW step (the states,
plus one 4-byte step counter per tensor). The total is every part alive at once, as with gradient accumulation
(gradients kept while the next forward runs). Not here: transient peaks inside a phase (an operator's output
before its inputs are freed, AdamW's foreach temporaries), allocator rounding, kernel workspaces, Gemma 3's
extra norms, eager attention's scores (sdpa assumed), mixed precision (an fp32 master copy and fp32 states of
bf16 weights: the recipe behind the 16-bytes-per-parameter rule).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import GemmaConfig
from .inference import dtype_bytes, parameter_count, weight_bytes

ADAM_BLOCK = 2048                                 # 8-bit Adam (bitsandbytes): one fp32 scale per block of values
PYTHON_SCALARS = "alpha / r per adapter (a Python number autograd keeps as a float64 tensor)"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_shapes(config: GemmaConfig) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each projection of one block."""
    D, F, q, kv = (config.hidden_size, config.intermediate_size, config.num_heads * config.head_dim,
                   config.num_kv_heads * config.head_dim)
    return {"q_proj": (D, q), "k_proj": (D, kv), "v_proj": (D, kv), "o_proj": (q, D),
            "gate_proj": (D, F), "up_proj": (D, F), "down_proj": (F, D)}


def lora_parameter_count(config: GemmaConfig, targets=("q_proj", "v_proj"), r: int = 8, layers=None) -> int:
    """r x (in + out) per adapted projection, in every layer (or in `layers`)."""
    shapes = projection_shapes(config)
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise ValueError(f"unknown LoRA targets {unknown}; choose from {', '.join(PROJECTIONS)}")
    adapted = config.num_layers if layers is None else len(set(layers))
    return adapted * sum(r * sum(shapes[t]) for t in targets)


def optimizer_state_bytes(trainable: int, optimizer: str = "adamw", dtype="fp32") -> int:
    """AdamW: exp_avg + exp_avg_sq in the parameters' dtype (torch.optim.AdamW: 8 bytes per float32 value);
    'adamw8bit': 2 bytes per value + one float32 scale per block of 2048, for each of the two states."""
    if optimizer == "adamw":
        return 2 * dtype_bytes(dtype) * trainable
    if optimizer == "adamw8bit":
        return 2 * trainable + 2 * 4 * -(-trainable // ADAM_BLOCK)
    raise ValueError(f"optimizer must be 'adamw' or 'adamw8bit', got {optimizer!r}")


@dataclass(frozen=True)
class Adapters:
    """Which projections carry LoRA adapters (rank r), in which layers (None: every layer); the base is frozen."""
    targets: tuple = ("q_proj", "v_proj")
    r: int = 8
    layers: tuple | None = None

    def in_layer(self, layer: int) -> frozenset:
        return frozenset(self.targets) if self.layers is None or layer in self.layers else frozenset()


def norm_saves(config, B, S, b, grad_input: bool, weight_trains: bool, output_saved: bool) -> dict[str, int]:
    """An RMSNorm (computed in float32): its input, rsqrt and (1 + w) if a gradient flows through it;
    x * rsqrt if w trains; its output (back in the compute dtype) if the next projection needs it."""
    D = config.hidden_size
    parts = {"input (fp32)": B * S * D * 4, "rsqrt (fp32)": B * S * 4, "1 + w (fp32)": D * 4} if grad_input else {}
    if weight_trains:
        parts["x * rsqrt (fp32)"] = B * S * D * 4
    if output_saved:
        parts["output"] = B * S * D * b
    return parts


def saved_per_block(config: GemmaConfig, tokens: int, batch: int = 1, dtype="fp32", trained=None,
                    grad_in: bool = True, r: int = 8) -> dict[str, int]:
    """Bytes autograd keeps for one Gemma 1 decoder block (sdpa attention): {what: bytes}.

    trained=None is full fine-tuning (every weight trains). Otherwise the weights are frozen and `trained` names
    the projections with a rank-r adapter; grad_in says whether a gradient flows into the block's input (False
    in the first adapted block: nothing before it trains). The rule autograd follows: an operation saves an
    operand only if the gradient of another operand it multiplies needs it.
    """
    b, B, S = dtype_bytes(dtype), batch, tokens
    D, F, H, KV, hd = (config.hidden_size, config.intermediate_size, config.num_heads, config.num_kv_heads,
                       config.head_dim)
    full = trained is None
    has = set(PROJECTIONS) if full else set(trained)
    own_input = full or b == 4          # a projection's input is kept as is (else each adapter keeps an fp32 copy)
    shapes = projection_shapes(config)
    attention = grad_in or bool(has & {"q_proj", "k_proj", "v_proj"})        # a gradient reaches q, k or v
    middle = attention or "o_proj" in has                                    # ... the residual after attention
    gate = middle or "gate_proj" in has
    up = middle or "up_proj" in has
    qkv_inputs = own_input and bool(has & {"q_proj", "k_proj", "v_proj"})   # the attention norm's output is kept
    mlp_inputs = own_input and bool(has & {"gate_proj", "up_proj"})         # the MLP norm's output is kept
    parts = {f"attention norm {k}": v for k, v in norm_saves(config, B, S, b, grad_in, full, qkv_inputs).items()}
    if attention:
        parts["additive mask (made from the bool mask)"] = S * S * b
        parts["rotated q, rotated k, v"] = B * (H + 2 * KV) * S * hd * b
        parts["attention output, logsumexp"] = B * H * S * hd * b + B * H * S * 4
    if "o_proj" in has and own_input:
        parts["heads merged (o_proj input)"] = B * S * H * hd * b
    parts |= {f"MLP norm {k}": v for k, v in norm_saves(config, B, S, b, middle, full, mlp_inputs).items()}
    parts["gate, up"] = 2 * gate * B * S * F * b                 # GELU saves gate; GELU(gate) x up saves up
    parts["GELU(gate)"] = up * B * S * F * b
    if "down_proj" in has and own_input:
        parts["product (down_proj input)"] = B * S * F * b
    if not full:
        parts["adapter x @ A.T (fp32)"] = len(has) * B * S * r * 4
        parts[PYTHON_SCALARS] = 8 * len(has)                      # the "* scaling" keeps alpha / r
        if not own_input:                                          # each adapter casts its input to fp32
            parts["adapter inputs cast to fp32"] = sum(B * S * shapes[t][0] * 4 for t in has)
    return {k: v for k, v in parts.items() if v}


def saved_outside_blocks(config: GemmaConfig, tokens: int, batch: int = 1, dtype="fp32", full: bool = True,
                         rotation: bool = True) -> dict[str, int]:
    """The embedding (full fine-tuning only), the shared RoPE tables (if some q or k needs a gradient: `rotation`)
    and the final norm."""
    b, B, S, D, hd = dtype_bytes(dtype), batch, tokens, config.hidden_size, config.head_dim
    parts = {"input ids (int64)": 8 * B * S, "embedding scale": b} if full else {}
    if rotation:
        parts["RoPE cos, sin (fp32, shared)"] = 2 * S * hd // 2 * 4
    final = norm_saves(config, B, S, b, True, full, False)
    parts[f"final norm ({', '.join(final)})"] = sum(final.values())
    return parts


def loss_bytes(config: GemmaConfig, scored: int, batch_tokens: int, chunk: int = 256, dtype="fp32") -> dict:
    """The chunked loss: scored hidden states and targets kept, and one chunk's float32 logits + gradient."""
    b, D, V = dtype_bytes(dtype), config.hidden_size, config.vocab_size
    rows = min(chunk, scored)
    return {"scored hidden states": scored * D * b, "targets (int64) and kept mask": 8 * scored + batch_tokens,
            "the loss (fp32) and the count it is divided by (int64)": 4 + 8,
            "one chunk of fp32 logits and their gradient": 2 * rows * V * 4}


def block_plan(config: GemmaConfig, adapters: Adapters | None) -> list[tuple]:
    """(trained, grad_in) per layer; blocks before the first adapted one keep nothing at all."""
    if adapters is None:
        return [(None, True)] * config.num_layers
    plan, flowing = [], False
    for layer in range(config.num_layers):
        plan.append((adapters.in_layer(layer), flowing))
        flowing = flowing or bool(adapters.in_layer(layer))
    return plan


def activation_bytes(config, tokens: int, batch: int = 1, dtype="fp32", checkpointing: bool = False,
                     adapters: Adapters | None = None, recomputed: bool = True) -> int:
    """Saved activations of the whole forward pass (the loss excluded); adapters=None is full fine-tuning.
    With checkpointing, `recomputed` adds the one block whose activations exist again in the backward pass."""
    r = adapters.r if adapters else 8
    plan = block_plan(config, adapters)
    saved = [saved_per_block(config, tokens, batch, dtype, trained, grad_in, r) for trained, grad_in in plan]
    blocks = [sum(parts.values()) for parts in saved]
    rotation = any(grad_in or (trained is None or trained & {"q_proj", "k_proj"}) for trained, grad_in in plan)
    outside = sum(saved_outside_blocks(config, tokens, batch, dtype, adapters is None, rotation).values())
    if not checkpointing:
        return sum(blocks) + outside
    x = batch * tokens * config.hidden_size * dtype_bytes(dtype)
    kept = sum(1 for block in blocks if block)                     # a block that saves nothing keeps no input
    mask = tokens * tokens                                           # the bool mask, saved once for the recompute
    scalars = sum(parts.get(PYTHON_SCALARS, 0) for parts in saved)   # autograd keeps them past the checkpoint
    again = max(blocks) if recomputed else 0                         # one block recomputed at a time
    return kept * x + mask + scalars + outside + again


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
             "optimizer states": optimizer_state_bytes(trainable, optimizer, dtype if mode == "full" else "fp32"),
             "activations": activation_bytes(config, tokens, batch, dtype, checkpointing,
                                             None if mode == "full" else Adapters(tuple(targets), r)),
             "loss": sum(loss.values())}
    return TrainingEstimate(parts)
