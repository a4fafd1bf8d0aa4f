"""Small valid checkpoints to break: a tiny Gemma 1 written as a Hugging Face folder or a gemma_pytorch .ckpt,
without transformers (so hostile-input and fuzz tests stay fast). Used by test_hostile_*.py and test_fuzz_*.py."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

import minigemma as mg

CFG = mg.GemmaConfig.tiny(vocab_size=32, hidden_size=16, intermediate_size=32, num_heads=2, head_dim=8,
                          max_seq_len=16)
TO_HF = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "attn": "self_attn"}


def hf_name(name: str) -> str:
    """minigemma name -> Hugging Face name (the inverse of weights.layouts.hf_to_minigemma_name, Gemma 1)."""
    if name == "embed.weight":
        return "model.embed_tokens.weight"
    parts = name.split(".")
    return "model." + ".".join(TO_HF.get(p, p) for p in parts)


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = mg.Gemma(CFG)
    return {hf_name(n): (torch.randn_like(t) * 0.1).contiguous() for n, t in model.state_dict().items()}


def hf_config(cfg: mg.GemmaConfig = CFG) -> dict:
    return {"model_type": "gemma", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
            "max_position_embeddings": cfg.max_seq_len, "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.rms_norm_eps}


def write_hf(folder: Path, state=None, config=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state if state is not None else tiny_state(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config if config is not None else hf_config()))
    return folder


def split_safetensors(path: Path) -> tuple[dict, bytes]:
    """(header dict, data bytes) of a .safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join_safetensors(path: Path, header_text: bytes, data: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(header_text)) + header_text + data)
    return path


def gemma_pytorch_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The tiny model as gemma_pytorch stores it: embedder.weight, fused qkv_proj, a complex freqs_cis."""
    hf, state = tiny_state(seed), {}
    for name, tensor in hf.items():
        if ".self_attn.q_proj." in name:
            prefix = name[: -len("q_proj.weight")]
            state[prefix + "qkv_proj.weight"] = torch.cat([hf[prefix + p + "_proj.weight"] for p in "qkv"])
        elif ".self_attn.k_proj." not in name and ".self_attn.v_proj." not in name:
            state["embedder.weight" if name == "model.embed_tokens.weight" else name] = tensor
    angles = torch.outer(torch.arange(2 * CFG.max_seq_len).float(), torch.ones(CFG.head_dim // 2))
    state["freqs_cis"] = torch.polar(torch.ones_like(angles), angles)
    return state
