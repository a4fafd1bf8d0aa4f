"""GeGLU feed-forward: down( gelu_tanh(gate(x)) * up(x) ).

Two parallel projections widen the vector to intermediate_size; the GELU of one gates the other elementwise; a third
projects back. Gemma was trained with the tanh approximation of GELU (`approximate="tanh"`); the exact erf GELU
gives slightly different numbers (an early transformers bug). No biases.
"""
import torch
from torch import nn
import torch.nn.functional as F


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class GeGLU(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:     # (batch, seq, hidden)
        gated = gelu_tanh(self.gate_proj(x)) * self.up_proj(x)   # (batch, seq, intermediate)
        return self.down_proj(gated)
