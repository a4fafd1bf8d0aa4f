"""Model configuration: every number that decides a Gemma model's shapes.

`GemmaConfig` holds the sizes (vocab, hidden, heads, ...) and the few numeric constants (RoPE base, RMSNorm
epsilon). Presets give the official Gemma 1 2B and 7B, and a `tiny` helper makes small test models.

Not here: Gemma 3's extra fields (`gemma3.Gemma3Config`), reading a checkpoint's config.json (`weights/layouts.py`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def check_config(config) -> None:
    """Every size a positive integer, the constants finite and > 0, heads that group, an even head_dim."""
    positive = ["vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                "num_kv_heads", "head_dim", "max_seq_len"]
    for name in positive:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"GemmaConfig.{name} must be a positive integer, got {value!r}")
    for name in ["rope_theta", "rms_norm_eps"]:                  # 0 or NaN here: NaN logits, silently
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < float("inf"):
            raise ValueError(f"GemmaConfig.{name} must be a finite number > 0, got {value!r}")
    if config.num_heads % config.num_kv_heads:
        raise ValueError(f"num_heads ({config.num_heads}) must be a multiple of num_kv_heads "
                         f"({config.num_kv_heads}): each KV head serves a whole group of query heads")
    if config.head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {config.head_dim}")


class ConfigConveniences:
    """Copies with changes, and a plain dict (for JSON): what every config offers besides its numbers."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GemmaConfig(ConfigConveniences):
    vocab_size: int = 256000
    hidden_size: int = 2048            # D: width of the residual stream
    intermediate_size: int = 16384     # F: width of *each* GeGLU branch (gate and up)
    num_layers: int = 18
    num_heads: int = 8                 # query heads
    num_kv_heads: int = 1              # 1 = MQA, num_heads = MHA, anything between = GQA
    head_dim: int = 256                # never derive it as hidden_size / num_heads (7B: 16 * 256 != 3072)
    max_seq_len: int = 8192
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6

    def __post_init__(self):
        check_config(self)                 # argument checks: named errors instead of NaN logits later

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def gemma_2b(cls) -> "GemmaConfig":
        return cls(hidden_size=2048, intermediate_size=16384, num_layers=18, num_heads=8, num_kv_heads=1)

    @classmethod
    def gemma_7b(cls) -> "GemmaConfig":
        return cls(hidden_size=3072, intermediate_size=24576, num_layers=28, num_heads=16, num_kv_heads=16)

    @classmethod
    def tiny(cls, **overrides) -> "GemmaConfig":
        """A few-thousand-parameter Gemma for tests and notebooks (MQA unless told otherwise)."""
        sizes = dict(vocab_size=128, hidden_size=64, intermediate_size=256, num_layers=2, num_heads=4,
                     num_kv_heads=1, head_dim=16, max_seq_len=128)
        return cls(**{**sizes, **overrides})

    # ---- derived quantities --------------------------------------------------------------------
    @property
    def attention_scale(self) -> float:
        """Scores are q.k / sqrt(head_dim): 1/16 for both Gemma 1 sizes."""
        return float(self.head_dim) ** -0.5
