"""The official Gemma checkpoint layouts: tensor names, and the config each layout implies.

* Hugging Face: names like `model.layers.3.self_attn.q_proj.weight`, sizes in config.json (`config_from_hf`).
* gemma_pytorch / Kaggle: `embedder.weight`, a fused `qkv_proj` with rows [q heads | k heads | v heads], a complex
  `freqs_cis` buffer, optional int8 weights with per-row `weight_scaler`s, and no config file at all: the config is
  read off the tensor shapes (`config_from_shapes`) -- the checkpoint's shapes decide, never a spec sheet.
Everything is renamed to Hugging Face names first, then to minigemma's (`hf_to_minigemma_name`).
Not here: reading files (tensor_files.py) or building the model (checkpoint.py).
"""
from __future__ import annotations

import re

import torch

from ..config import GemmaConfig
from ..gemma3 import Gemma3Config

SUPPORTED_MODEL_TYPES = ("gemma", "gemma3_text", "gemma3")

# Hugging Face name (after the "model." prefix) -> minigemma name. Gemma 1's "post_attention_layernorm" is the norm
# *before* the MLP; Gemma 3 reuses that name for a real post-attention norm.
GEMMA1_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"}
GEMMA3_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attn_norm",
                "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "post_mlp_norm"}


def hf_to_minigemma_name(name: str, gemma3: bool) -> str | None:
    """minigemma's name for a Hugging Face tensor name; None for the output head (tied to the embedding);
    a name starting with "?" for anything minigemma does not know."""
    name = re.sub(r"^(model\.language_model\.|language_model\.model\.|language_model\.|model\.)", "", name)
    if name == "lm_head.weight":
        return None
    if name == "embed_tokens.weight":
        return "embed.weight"
    if name == "norm.weight":
        return name
    match = re.fullmatch(r"layers\.(\d+)\.(\w+)\.(.+)", name)
    if match is None:
        return "?" + name
    layer, part, rest = match.groups()
    if part == "self_attn":
        return f"layers.{layer}.attn.{rest}"
    if part == "mlp":
        return f"layers.{layer}.mlp.{rest}"
    renamed = (GEMMA3_NAMES if gemma3 else GEMMA1_NAMES).get(part)
    return f"layers.{layer}.{renamed}.{rest}" if renamed else "?" + name


def config_from_hf(hf: dict) -> GemmaConfig:
    """Translate a Hugging Face config.json into a GemmaConfig (model_type gemma) or a Gemma3Config (gemma3)."""
    text = hf.get("text_config", hf)
    model_type = text.get("model_type", hf.get("model_type", "gemma"))
    if not isinstance(model_type, str) or model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported "
                         f"(minigemma reads {', '.join(SUPPORTED_MODEL_TYPES)})")
    rope = json_object(text, "rope_parameters")
    global_rope, local_rope = json_object(rope, "full_attention", rope), json_object(rope, "sliding_attention")
    fields = dict(vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
                  intermediate_size=text["intermediate_size"], num_layers=text["num_hidden_layers"],
                  num_heads=text["num_attention_heads"], num_kv_heads=text.get("num_key_value_heads", 1),
                  head_dim=text.get("head_dim", 256), max_seq_len=text.get("max_position_embeddings", 8192),
                  rope_theta=number(text.get("rope_theta", global_rope.get("rope_theta", 10000.0)), "rope_theta"),
                  rms_norm_eps=text.get("rms_norm_eps", 1e-6))
    if model_type.startswith("gemma3"):
        pattern = text.get("sliding_window_pattern", 6)
        if isinstance(pattern, bool) or not isinstance(pattern, int) or pattern < 1:
            raise ValueError(f"sliding_window_pattern should be a positive integer, found {pattern!r:.40}")
        types = text.get("layer_types") or [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
            for i in range(text["num_hidden_layers"])]
        if not isinstance(types, (list, tuple)) or not all(isinstance(t, str) for t in types):
            raise ValueError(f"layer_types should be a list of strings, found {types!r:.60}")
        scaling = json_object(text, "rope_scaling", global_rope)
        fields.update(sliding_window=text.get("sliding_window"),
                      layer_types=tuple("global" if t == "full_attention" else "local" for t in types),
                      rope_local_theta=number(text.get("rope_local_base_freq", local_rope.get("rope_theta", 10000.0)),
                                              "rope_local_base_freq"),
                      rope_scaling_factor=number(scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear"
                                                else 1.0, "rope_scaling.factor"),
                      query_pre_attn_scalar=text.get("query_pre_attn_scalar", fields["head_dim"]))
        return Gemma3Config(**fields)
    return GemmaConfig(**fields)


def number(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} should be a number, found {value!r:.40}")
    return float(value)


def json_object(parent: dict, key: str, default=None) -> dict:
    """parent[key] when it is a JSON object (empty or missing: `default`, else {}); anything else is an error."""
    value = parent.get(key) or (default if default is not None else {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} should be a JSON object, found {value!r:.60}")
    return value


def config_from_shapes(shapes: dict[str, tuple], head_dim: int = 256, max_seq_len: int = 8192) -> GemmaConfig:
    """Read a Gemma 1 config off Hugging Face-named tensor shapes: the checkpoint itself says how many heads."""
    if len(shapes["model.embed_tokens.weight"]) != 2:
        raise ValueError(f"tensor embedder.weight has shape {shapes['model.embed_tokens.weight']}, expected "
                         "(vocab, hidden)")
    vocab, hidden = shapes["model.embed_tokens.weight"]
    layer_ids = [int(m.group(1)) for n in shapes if (m := re.match(r"model\.layers\.(\d+)\.", n))]
    if not layer_ids:
        raise KeyError("model.layers.0.*")
    layers = 1 + max(layer_ids)
    q_rows, kv_rows = (shapes[f"model.layers.0.self_attn.{p}_proj.weight"][0] for p in "qk")
    if q_rows % head_dim or kv_rows % head_dim:
        raise ValueError(f"q_proj ({q_rows} rows) and k_proj ({kv_rows} rows) should be whole heads of "
                         f"head_dim {head_dim} (read off freqs_cis)")
    heads, kv_heads = q_rows // head_dim, kv_rows // head_dim
    return GemmaConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads,
                       num_kv_heads=kv_heads, head_dim=head_dim, max_seq_len=max_seq_len,
                       intermediate_size=shapes["model.layers.0.mlp.gate_proj.weight"][0])


def gemma_pytorch_to_hf(state: dict[str, torch.Tensor]) -> tuple[dict, int, int]:
    """Rename a gemma_pytorch state dict to Hugging Face names, split qkv, dequantize int8. Also returns
    (head_dim, max_seq_len) read off the freqs_cis buffer (shape (2 * max_seq_len, head_dim / 2))."""
    freqs = state.get("freqs_cis")
    if freqs is not None and (freqs.dim() != 2 or freqs.shape[0] < 2 or freqs.shape[1] < 1):
        raise ValueError(f"tensor freqs_cis has shape {tuple(freqs.shape)}, expected (2 * max_seq_len, head_dim / 2)")
    head_dim, max_len = (2 * freqs.shape[1], freqs.shape[0] // 2) if freqs is not None else (256, 8192)
    out = {}
    for name, tensor in state.items():
        if name == "freqs_cis" or name.endswith("weight_scaler"):
            continue
        scaler = state.get(name.replace(".weight", ".weight_scaler"))
        if scaler is not None:                                        # int8 variant: per-row scale
            if tensor.dim() != 2 or tuple(scaler.shape) != tensor.shape[:1] or not scaler.is_floating_point():
                raise ValueError(f"tensor {name.replace('.weight', '.weight_scaler')} has shape "
                                 f"{tuple(scaler.shape)} ({scaler.dtype}), expected one float per row of {name} "
                                 f"{tuple(tensor.shape)}")
            tensor = tensor.to(scaler.dtype) * scaler.unsqueeze(-1)
        if name == "embedder.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name.endswith("self_attn.qkv_proj.weight"):
            prefix = name[: -len("qkv_proj.weight")]
            o_rows = state[prefix + "o_proj.weight"].shape[1]        # heads * head_dim
            kv_rows = (tensor.shape[0] - o_rows) // 2
            if tensor.dim() != 2 or kv_rows < 1 or o_rows + 2 * kv_rows != tensor.shape[0]:
                raise ValueError(f"tensor {name} has shape {tuple(tensor.shape)}: expected {o_rows} query rows "
                                 "(o_proj's width) plus two equal, non-empty blocks of key and value rows")
            q, k, v = tensor.split([o_rows, kv_rows, kv_rows], dim=0)
            out.update({prefix + "q_proj.weight": q, prefix + "k_proj.weight": k, prefix + "v_proj.weight": v})
        else:
            out[name] = tensor
    return out, head_dim, max_len
