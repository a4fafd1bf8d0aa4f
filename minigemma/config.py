"""Model configuration: every number that decides a Gemma model's shapes.

`GemmaConfig` holds the sizes (vocab, hidden, heads, ...) and the few numeric constants (RoPE base, RMSNorm
epsilon). Presets give the official Gemma 1 2B and 7B, and a `tiny` helper makes small test models.
Gemma 3 fields (QK-norm, extra norms, sliding-window layers) default to "off", so a plain `GemmaConfig` is Gemma 1.

Not here: reading a checkpoint's config.json (see `checkpoint.py`) or any weights.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class GemmaConfig:
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
    # --- Gemma 3 additions; the defaults are Gemma 1 ---
    qk_norm: bool = False              # RMSNorm on each query/key head before RoPE
    sandwich_norms: bool = False       # extra norms after attention and after the MLP
    sliding_window: int | None = None  # local layers see only the last `sliding_window` tokens
    layer_types: tuple[str, ...] | None = None   # per layer "global" or "local"; None: all global
    rope_local_theta: float = 10000.0  # RoPE base of the local layers
    rope_scaling_factor: float = 1.0   # linear position scaling on global layers (1 = none)
    query_pre_attn_scalar: float | None = None   # attention scale is this ** -0.5; None: head_dim

    def __post_init__(self):
        positive = ["vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                    "num_kv_heads", "head_dim", "max_seq_len"]
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"GemmaConfig.{name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                             f"({self.num_kv_heads}): each KV head serves a whole group of query heads")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
        if self.layer_types is not None:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
            if len(self.layer_types) != self.num_layers or set(self.layer_types) - {"global", "local"}:
                raise ValueError(f"layer_types must list 'global' or 'local' for each of the "
                                 f"{self.num_layers} layers, got {self.layer_types!r}")

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

    @classmethod
    def gemma3_270m(cls) -> "GemmaConfig":
        """Gemma 3 270M text model: MQA, QK-norm, sandwich norms, 5 local layers per global one."""
        layer_types = tuple("global" if (i + 1) % 6 == 0 else "local" for i in range(18))
        return cls(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_layers=18, num_heads=4,
                   num_kv_heads=1, head_dim=256, max_seq_len=32768, rope_theta=1_000_000.0,
                   qk_norm=True, sandwich_norms=True, sliding_window=512, layer_types=layer_types,
                   rope_local_theta=10000.0, query_pre_attn_scalar=256)

    # ---- derived quantities --------------------------------------------------------------------
    @property
    def is_gemma3(self) -> bool:
        return self.qk_norm or self.sandwich_norms or self.layer_types is not None

    @property
    def attention_scale(self) -> float:
        return float(self.query_pre_attn_scalar or self.head_dim) ** -0.5

    def is_local(self, layer: int) -> bool:
        return self.layer_types is not None and self.layer_types[layer] == "local"

    def replace(self, **changes) -> "GemmaConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
