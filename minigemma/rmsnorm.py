"""RMSNorm as Gemma uses it: scale by the root-mean-square, then by `(1 + weight)`.

Three Gemma details, each a classic bug when missed:
  * the learned weight is stored as an offset from 1, and initialised to zero (a fresh norm is the identity scale);
  * the statistics are computed in float32 even when the model runs in bfloat16, then rounded back once;
  * epsilon is 1e-6 and sits inside the square root.
Not here: LayerNorm's mean subtraction and bias (Gemma has neither).
"""
import torch
from torch import nn


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    x32 = x.float()                                                   # (..., dim) statistics in float32
    inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (x32 * inv_rms * (1.0 + weight.float())).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))   # zero => scale (1 + 0) = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)
