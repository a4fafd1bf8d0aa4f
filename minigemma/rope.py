"""Rotary position embedding (RoPE) in Gemma's half-split layout.

Each query/key head vector of size head_dim is cut into two halves x1 = x[:half], x2 = x[half:], and pair i
(x1[i], x2[i]) is rotated by the angle  position * theta ** (-2i / head_dim).  The rotation is done in float32 and
rounded once to the input dtype, as gemma_pytorch does (Hugging Face rounds cos/sin to bfloat16 first and rotates
in bfloat16: the results differ by about one bfloat16 ulp).
Not here: the interleaved (even, odd) pairing used by some other models; it is wrong for Gemma checkpoints.
"""
import torch


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq, head_dim // 2), float32, for token `positions` (seq,)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim
    inv_freq = 1.0 / (theta ** exponents)                             # (head_dim // 2,)
    angles = positions.float()[:, None] * inv_freq[None, :]         # (seq, head_dim // 2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (batch, heads, seq, head_dim) by the angles in cos/sin (seq, head_dim // 2)."""
    half = x.shape[-1] // 2
    x32 = x.float()
    x1, x2 = x32[..., :half], x32[..., half:]                        # (batch, heads, seq, half) each
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return rotated.to(x.dtype)
