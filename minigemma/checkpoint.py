"""Load an official Gemma checkpoint into `minigemma.Gemma`, checking every tensor's name and shape.

Layouts understood:
  * Hugging Face directory: config.json + model.safetensors, or shards listed in model.safetensors.index.json;
  * gemma_pytorch / Kaggle `.ckpt`: a pickle {"model_state_dict": ...} with a fused qkv_proj (rows [q | k | v]),
    `embedder.weight`, an ignorable complex `freqs_cis` buffer and, in int8 variants, `weight_scaler`s. It has no
    config file: the config is read off the tensor shapes (the shapes decide, never a spec sheet);
  * `.gguf` (Gemma 3 from llama.cpp), handled in gguf.py.
The model is built on the meta device and each tensor is read once, cast, and assigned: weights are never held twice.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .config import GemmaConfig
from .model import Gemma
from .tensor_files import CheckpointError, iter_safetensors, load_pickle_checkpoint

# Hugging Face name (after the "model." prefix) -> minigemma name. Gemma 1's "post_attention_layernorm" is the norm
# *before* the MLP; Gemma 3 reuses that name for a real post-attention norm.
GEMMA1_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"}
GEMMA3_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attn_norm",
                "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "post_mlp_norm"}


def hf_to_minigemma_name(name: str, gemma3: bool) -> str | None:
    name = re.sub(r"^(model\.language_model\.|language_model\.model\.|model\.)", "", name)
    if name in ("embed_tokens.weight", "lm_head.weight"):
        return "embed.weight" if name == "embed_tokens.weight" else None
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
    """Translate a Hugging Face config.json (model_type gemma or gemma3_text) into a GemmaConfig."""
    text = hf.get("text_config", hf)
    rope = text.get("rope_parameters") or {}
    global_rope, local_rope = rope.get("full_attention", rope), rope.get("sliding_attention", {})
    fields = dict(vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
                  intermediate_size=text["intermediate_size"], num_layers=text["num_hidden_layers"],
                  num_heads=text["num_attention_heads"], num_kv_heads=text.get("num_key_value_heads", 1),
                  head_dim=text.get("head_dim", 256), max_seq_len=text.get("max_position_embeddings", 8192),
                  rope_theta=float(text.get("rope_theta", global_rope.get("rope_theta", 10000.0))),
                  rms_norm_eps=text.get("rms_norm_eps", 1e-6))
    if text.get("model_type", "gemma").startswith("gemma3"):
        types = text.get("layer_types") or [
            "full_attention" if (i + 1) % text.get("sliding_window_pattern", 6) == 0 else "sliding_attention"
            for i in range(text["num_hidden_layers"])]
        scaling = text.get("rope_scaling") or global_rope
        fields.update(qk_norm=True, sandwich_norms=True, sliding_window=text.get("sliding_window"),
                      layer_types=tuple("global" if t == "full_attention" else "local" for t in types),
                      rope_local_theta=float(text.get("rope_local_base_freq", local_rope.get("rope_theta", 10000.0))),
                      rope_scaling_factor=float(scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear"
                                                else 1.0),
                      query_pre_attn_scalar=text.get("query_pre_attn_scalar"))
    return GemmaConfig(**fields)


def config_from_shapes(shapes: dict[str, tuple], head_dim: int = 256, max_seq_len: int = 8192) -> GemmaConfig:
    """Read a Gemma 1 config off Hugging Face-named tensor shapes: the checkpoint itself says how many heads."""
    vocab, hidden = shapes["model.embed_tokens.weight"]
    layers = 1 + max(int(m.group(1)) for n in shapes if (m := re.match(r"model\.layers\.(\d+)\.", n)))
    heads = shapes["model.layers.0.self_attn.q_proj.weight"][0] // head_dim
    kv_heads = shapes["model.layers.0.self_attn.k_proj.weight"][0] // head_dim
    return GemmaConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads,
                       num_kv_heads=kv_heads, head_dim=head_dim, max_seq_len=max_seq_len,
                       intermediate_size=shapes["model.layers.0.mlp.gate_proj.weight"][0])


def gemma_pytorch_to_hf(state: dict[str, torch.Tensor]) -> tuple[dict, int, int]:
    """Rename a gemma_pytorch state dict to Hugging Face names, split qkv, dequantize int8. Also returns
    (head_dim, max_seq_len) read off the freqs_cis buffer (shape (2 * max_seq_len, head_dim / 2))."""
    freqs = state.get("freqs_cis")
    head_dim, max_len = (2 * freqs.shape[1], freqs.shape[0] // 2) if freqs is not None else (256, 8192)
    out = {}
    for name, tensor in state.items():
        if name == "freqs_cis" or name.endswith("weight_scaler"):
            continue
        scaler = state.get(name.replace(".weight", ".weight_scaler"))
        if scaler is not None:                                        # int8 variant: per-row scale
            tensor = tensor.to(scaler.dtype) * scaler.unsqueeze(-1)
        if name == "embedder.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name.endswith("self_attn.qkv_proj.weight"):
            prefix = name[: -len("qkv_proj.weight")]
            o_rows = state[prefix + "o_proj.weight"].shape[1]        # heads * head_dim
            kv_rows = (tensor.shape[0] - o_rows) // 2
            q, k, v = tensor.split([o_rows, kv_rows, kv_rows], dim=0)
            out.update({prefix + "q_proj.weight": q, prefix + "k_proj.weight": k, prefix + "v_proj.weight": v})
        else:
            out[name] = tensor
    return out, head_dim, max_len


def find_weights(path: Path) -> tuple[str, list[Path]]:
    """('hf' | 'ckpt' | 'gguf', files) for a checkpoint path, or a clear error."""
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_file():
        kinds = {".gguf": "gguf", ".safetensors": "hf", ".ckpt": "ckpt", ".pt": "ckpt", ".pth": "ckpt", ".bin": "ckpt"}
        if path.suffix not in kinds:
            raise CheckpointError(f"{path}: unknown checkpoint type (expected .safetensors, .ckpt or .gguf)")
        return kinds[path.suffix], [path]
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).exists()]
        if missing:
            raise CheckpointError(f"{path}: the index lists shards that are missing: {', '.join(missing)}")
        return "hf", [path / s for s in shards]
    for kind, pattern in (("hf", "*.safetensors"), ("ckpt", "*.ckpt"), ("gguf", "*.gguf")):
        files = sorted(path.glob(pattern))
        if files:
            return kind, files
    raise CheckpointError(f"{path}: no weights found (looked for *.safetensors with config.json, *.ckpt, *.gguf)")


def read_checkpoint(path) -> tuple[GemmaConfig, dict[str, torch.Tensor]]:
    """(config, Hugging Face-named tensors) for a HF directory or a gemma_pytorch .ckpt."""
    path = Path(path)
    kind, files = find_weights(path)
    if kind == "ckpt":
        state, head_dim, max_len = gemma_pytorch_to_hf(load_pickle_checkpoint(files[0]))
        config = config_from_shapes({n: tuple(t.shape) for n, t in state.items()}, head_dim, max_len)
        return config, iter(state.items())
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{config_file} is missing: a Hugging Face checkpoint needs its config.json")
    config = config_from_hf(json.loads(config_file.read_text()))
    return config, (item for file in files for item in iter_safetensors(file))


def load_model(path, dtype: torch.dtype | None = None, device="cpu") -> Gemma:
    """Build a Gemma from a checkpoint. dtype None keeps the checkpoint's own dtype."""
    kind, files = find_weights(Path(path))
    if kind == "gguf":                                                 # a .gguf, or a folder holding one
        from .gguf import load_gguf_model
        return load_gguf_model(files[0], dtype=dtype, device=device)
    config, tensors = read_checkpoint(path)
    with torch.device("meta"):
        model = Gemma(config)
    expected = {name: p.shape for name, p in model.state_dict().items()}
    state = {}
    for hf_name, tensor in tensors:
        name = hf_to_minigemma_name(hf_name, config.is_gemma3)
        if name is None:                                               # a tied lm_head copy: skip it
            continue
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {hf_name} (shape {tuple(tensor.shape)})")
        if tensor.shape != expected[name]:
            raise CheckpointError(f"{path}: tensor {hf_name} has shape {tuple(tensor.shape)}, but the config "
                                  f"expects {tuple(expected[name])}")
        state[name] = tensor.to(dtype or tensor.dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensors missing from the checkpoint, e.g. {missing[:3]}")
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()
