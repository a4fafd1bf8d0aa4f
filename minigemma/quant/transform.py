"""`quantize(model, "int8" | "int4")`: swap a finished model's linear layers (and optionally its tied embedding) for
weight-only quantized ones, in place, the way gpt-fast does: the model classes never know.

    model = mg.quantize(mg.load_model(path, dtype=torch.bfloat16), "int8")        # linears + tied head
    model = mg.quantize(model, "int4", group_size=32, include_embedding=False)

The compute dtype stays the model's (activations, norms, the KV cache); scales are stored in it too, because
PyTorch's packed kernels want them there. Not here: which layers to leave in float (every projection is
quantized), calibration, saving a quantized model (quantizing takes seconds).
"""
from torch import nn

from .embedding import QuantizedEmbedding
from .int4 import Int4Linear
from .int8 import Int8Linear

SCHEMES = ("int8", "int4")


def quantized_linear(linear: nn.Linear, scheme: str, group_size: int) -> nn.Module:
    if scheme == "int8":
        return Int8Linear.from_linear(linear)
    return Int4Linear.from_linear(linear, group_size)


def check_options(model, scheme: str, group_size: int) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"quantize: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if not isinstance(group_size, int) or group_size < 2 or group_size % 2:
        raise ValueError(f"quantize: group_size must be an even integer >= 2, got {group_size!r}")
    if scheme == "int4":
        cfg = model.config
        for width in {cfg.hidden_size, cfg.intermediate_size, cfg.num_heads * cfg.head_dim}:
            if width % group_size:
                raise ValueError(f"quantize: group_size {group_size} must divide every row length; "
                                 f"{width} (a row of this model's weights) is not a multiple of it")
    if not isinstance(model.embed, nn.Module) or not hasattr(model.embed, "weight") or \
            isinstance(model.embed, QuantizedEmbedding):
        raise ValueError("quantize: this model is already quantized; quantize the float model once")


def quantize(model, scheme: str = "int8", group_size: int = 32, include_embedding: bool = True):
    """Replace every nn.Linear in `model` (and the tied embedding if `include_embedding`); returns the model.

    group_size applies to int4 only (int8 keeps one scale per row)."""
    check_options(model, scheme, group_size)
    dtype = model.dtype
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, quantized_linear(child, scheme, group_size))
    if include_embedding:
        table = nn.Linear(model.embed.weight.shape[1], model.embed.weight.shape[0], bias=False, device="meta")
        table.weight = model.embed.weight                               # (vocab, hidden): the head's layout
        model.embed = QuantizedEmbedding(quantized_linear(table, scheme, group_size), dtype)
    model.quantization = dict(scheme=scheme, group_size=group_size if scheme == "int4" else None,
                              include_embedding=include_embedding)
    return model
