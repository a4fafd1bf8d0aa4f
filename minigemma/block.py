"""One decoder block: pre-norm attention and pre-norm GeGLU, each added back to the residual stream.

    h = h + attn(attn_norm(h))
    h = h + mlp(mlp_norm(h))

Checkpoint name map (Gemma 1, Hugging Face): attn_norm = input_layernorm, mlp_norm = post_attention_layernorm
(a misleading name: in Gemma 1 it is the norm *before* the MLP).
Not here: Gemma 3's extra "sandwich" norms (gemma3.Gemma3Block).
"""
from torch import nn

from .attention import Attention
from .mlp import GeGLU
from .rmsnorm import RMSNorm


class DecoderBlock(nn.Module):
    attention_class = Attention

    def __init__(self, config, layer: int = 0):
        super().__init__()
        self.layer = layer
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = self.attention_class(config, layer)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = GeGLU(config.hidden_size, config.intermediate_size)

    def forward(self, h, rope, mask, cache=None):
        """h (batch, seq, hidden) -> (batch, seq, hidden)."""
        h = h + self.attn(self.attn_norm(h), rope, mask, cache, self.layer)
        return h + self.mlp(self.mlp_norm(h))
