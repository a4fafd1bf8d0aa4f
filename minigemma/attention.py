"""Causal self-attention with grouped K/V heads: MHA, MQA and GQA from one code path.

`num_kv_heads` decides the flavour: Gemma 7B has 16 query heads and 16 KV heads (MHA); Gemma 2B has 8 query heads
sharing a single KV head (MQA); anything in between is GQA. Query head i reads KV head i // (num_heads/num_kv_heads).
The shared K/V are *broadcast* to their group of query heads, never copied. Scores are
softmax(float32(q k^T * scale + mask)), rounded back to the compute dtype before multiplying V.
Not here: dropout (Gemma uses none at inference), padding masks for ragged batches, and Gemma 3's QK-norm and
sliding window (gemma3.py extends `Attention.project` and the mask).
"""
import torch
from torch import nn
import torch.nn.functional as F

from .rope import apply_rope


def causal_mask(q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
    """Boolean (q_len, k_len) mask, True where query may attend key: k <= q."""
    return q_positions[:, None] >= k_positions[None, :]


def attend_eager(q, k, v, mask, scale):
    """q (batch, heads, q_len, head_dim); k, v (batch, kv_heads, k_len, head_dim); mask (q_len, k_len) bool."""
    batch, heads, q_len, head_dim = q.shape
    kv_heads = k.shape[1]
    q = q.view(batch, kv_heads, heads // kv_heads, q_len, head_dim)   # group query heads by their KV head
    k, v = k.unsqueeze(2), v.unsqueeze(2)                             # (batch, kv_heads, 1, k_len, head_dim)
    scores = (q @ k.transpose(-1, -2)) * scale                         # (batch, kv_heads, group, q_len, k_len)
    scores = scores.float().masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1).to(v.dtype)
    out = probs @ v                                                    # (batch, kv_heads, group, q_len, head_dim)
    return out.reshape(batch, heads, q_len, head_dim)


def attend_sdpa(q, k, v, mask, scale):
    """Same maths through PyTorch's fused scaled_dot_product_attention (no (q_len, k_len) score tensor kept).

    A CPU without bfloat16 instructions runs a decode step's reduced-precision attention 3-10x slower than float32
    (0.27 vs 2.7 ms at 512 cached positions). Its inputs are one query and one layer's K/V, so there we compute in
    float32 and round the output once (scores are then never rounded to bfloat16: slightly *more* accurate)."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and q.shape[2] == 1:
        return attend_sdpa(q.float(), k.float(), v.float(), mask, scale).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                          enable_gqa=k.shape[1] != q.shape[1])


ATTENTION_IMPLEMENTATIONS = {"eager": attend_eager, "sdpa": attend_sdpa}


def attend(q, k, v, mask, scale, impl: str = "sdpa"):
    return ATTENTION_IMPLEMENTATIONS[impl](q, k, v, mask, scale)


class Attention(nn.Module):
    def __init__(self, config, layer: int = 0):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.scale = config.attention_scale
        self.impl = "sdpa"
        d, hd = config.hidden_size, config.head_dim
        self.q_proj = nn.Linear(d, config.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, config.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, config.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(config.num_heads * hd, d, bias=False)

    def split_heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, heads, self.head_dim).transpose(1, 2)   # (batch, heads, seq, head_dim)

    def project(self, x):
        """x (batch, seq, hidden) -> q (batch, heads, seq, head_dim), k and v (batch, kv_heads, seq, head_dim)."""
        q = self.split_heads(self.q_proj(x), self.num_heads)
        k = self.split_heads(self.k_proj(x), self.num_kv_heads)
        v = self.split_heads(self.v_proj(x), self.num_kv_heads)
        return q, k, v

    def forward(self, x, rope, mask, cache=None, layer: int = 0):
        """x (batch, seq, hidden); rope = (cos, sin) for these positions; mask (seq, k_len) bool."""
        q, k, v = self.project(x)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(layer, k, v)                           # (batch, kv_heads, k_len, head_dim)
        out = attend(q, k, v, mask, self.scale, self.impl)            # (batch, heads, seq, head_dim)
        batch, _, seq, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, -1))
