"""Gemma 3, as Gemma 1 plus a few named changes: each one a subclass that overrides one small step.

    Gemma3Config      Gemma 1's sizes + a sliding window, per-layer "local"/"global" types, a second RoPE base,
                      linear RoPE scaling on global layers, and the attention scale 1/sqrt(query_pre_attn_scalar)
    Gemma3Attention   `project` also RMS-normalises every query and key head (QK-norm), before RoPE
    Gemma3Block       one more RMSNorm on each sub-layer's *output* ("sandwich" norms), before the residual add
    Gemma3            `rope_and_masks` gives local layers their own RoPE table (base 10k) and a windowed causal mask

Everything else (embedding x sqrt(D), (1 + w) RMSNorm, GeGLU, the tied head, MQA) is Gemma 1's code, inherited.
Notebook 10 builds this file on the real Gemma 3 270M.
Not here: Gemma 3's vision tower and its 262k-piece tokenizer specifics (tokenizer.py reads any SentencePiece model).
"""
from __future__ import annotations

from dataclasses import dataclass

from .attention import Attention, causal_mask
from .block import DecoderBlock
from .config import GemmaConfig
from .model import Gemma
from .rmsnorm import RMSNorm
from .rope import rope_angles


@dataclass(frozen=True)
class Gemma3Config(GemmaConfig):
    sliding_window: int = 512               # local layers see only the last `sliding_window` tokens
    layer_types: tuple[str, ...] = ()      # per layer "global" or "local"; () = the 5-local-1-global pattern
    rope_local_theta: float = 10000.0       # RoPE base of the local layers (global layers use rope_theta)
    rope_scaling_factor: float = 1.0        # linear position scaling on global layers (1 = none)
    query_pre_attn_scalar: float = 256.0    # the attention scale is this ** -0.5 (not always head_dim)

    def __post_init__(self):
        super().__post_init__()
        types = tuple(self.layer_types) or tuple("global" if (i + 1) % 6 == 0 else "local"
                                                 for i in range(self.num_layers))
        object.__setattr__(self, "layer_types", types)
        if len(types) != self.num_layers or set(types) - {"global", "local"}:
            raise ValueError(f"layer_types must list 'global' or 'local' for each of the {self.num_layers} "
                             f"layers, got {self.layer_types!r}")
        if not isinstance(self.sliding_window, int) or self.sliding_window <= 0:
            raise ValueError(f"Gemma3Config.sliding_window must be a positive integer, got {self.sliding_window!r}")

    @classmethod
    def gemma3_270m(cls) -> "Gemma3Config":
        """Gemma 3 270M text model: MQA, QK-norm, sandwich norms, 5 local layers per global one."""
        return cls(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_layers=18, num_heads=4,
                   num_kv_heads=1, head_dim=256, max_seq_len=32768, rope_theta=1_000_000.0, sliding_window=512,
                   query_pre_attn_scalar=256)

    @classmethod
    def tiny(cls, **overrides) -> "Gemma3Config":
        return super().tiny(**{"num_layers": 6, "sliding_window": 5, "query_pre_attn_scalar": 16, **overrides})

    @property
    def attention_scale(self) -> float:
        return float(self.query_pre_attn_scalar) ** -0.5

    def is_local(self, layer: int) -> bool:
        return self.layer_types[layer] == "local"


def sliding_window_mask(q_positions, k_positions, window: int):
    """Causal, and no further back than `window` tokens: query q may attend key k when 0 <= q - k < window."""
    recent = q_positions[:, None] - k_positions[None, :] < window     # (q_len, k_len)
    return causal_mask(q_positions, k_positions) & recent


class Gemma3Attention(Attention):
    def __init__(self, config: Gemma3Config, layer: int = 0):
        super().__init__(config, layer)
        self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps)

    def project(self, x):
        """Gemma 1's projections, then QK-norm: each query and key head scaled to unit RMS, before RoPE."""
        q, k, v = super().project(x)                   # (batch, heads or kv_heads, seq, head_dim)
        return self.q_norm(q), self.k_norm(k), v


class Gemma3Block(DecoderBlock):
    attention_class = Gemma3Attention

    def __init__(self, config: Gemma3Config, layer: int = 0):
        super().__init__(config, layer)
        self.post_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, h, rope, mask, cache=None):
        """h (batch, seq, hidden): each sub-layer's output is normalised once more before it joins the stream."""
        h = h + self.post_attn_norm(self.attn(self.attn_norm(h), rope, mask, cache, self.layer))
        return h + self.post_mlp_norm(self.mlp(self.mlp_norm(h)))


class Gemma3(Gemma):
    block_class = Gemma3Block

    def rope_and_masks(self, positions, k_positions):
        """Global layers: RoPE base rope_theta (positions scaled), full causal mask. Local layers: base 10k and a
        causal mask that also hides keys more than `sliding_window` tokens back."""
        cfg = self.config
        global_inputs = (rope_angles(positions / cfg.rope_scaling_factor, cfg.head_dim, cfg.rope_theta),
                         causal_mask(positions, k_positions))
        local_inputs = (rope_angles(positions, cfg.head_dim, cfg.rope_local_theta),
                        sliding_window_mask(positions, k_positions, cfg.sliding_window))
        return [local_inputs if cfg.is_local(i) else global_inputs for i in range(cfg.num_layers)]


def model_class(config: GemmaConfig) -> type[Gemma]:
    """The model a config describes: loaders choose by the config's type."""
    return Gemma3 if isinstance(config, Gemma3Config) else Gemma
