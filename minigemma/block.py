"""One decoder block: pre-norm attention and pre-norm GeGLU, each added back to the residual stream.

    h = h + attn(attn_norm(h))
    h = h + mlp(mlp_norm(h))

Gemma 3 wraps each sub-layer's *output* in one more RMSNorm ("sandwich" norms) before the residual add.
Checkpoint name map (Gemma 1, Hugging Face): attn_norm = input_layernorm, mlp_norm = post_attention_layernorm
(a misleading name: in Gemma 1 it is the norm *before* the MLP).
"""
from torch import nn

from .attention import Attention
from .mlp import GeGLU
from .rmsnorm import RMSNorm


class DecoderBlock(nn.Module):
    def __init__(self, config, layer: int = 0):
        super().__init__()
        self.layer = layer
        self.is_local = config.is_local(layer)
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config, layer)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = GeGLU(config.hidden_size, config.intermediate_size)
        if config.sandwich_norms:
            self.post_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
            self.post_mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        else:
            self.post_attn_norm = self.post_mlp_norm = None

    def forward(self, h, rope, mask, cache=None):
        """h (batch, seq, hidden) -> (batch, seq, hidden)."""
        attn_out = self.attn(self.attn_norm(h), rope, mask, cache, self.layer)
        if self.post_attn_norm is not None:
            attn_out = self.post_attn_norm(attn_out)
        h = h + attn_out
        mlp_out = self.mlp(self.mlp_norm(h))
        if self.post_mlp_norm is not None:
            mlp_out = self.post_mlp_norm(mlp_out)
        return h + mlp_out
