"""Token embedding with Gemma's sqrt(hidden_size) scale, and the tied output head.

The same matrix E (vocab, hidden) turns ids into vectors at the bottom of the model and vectors into logits at the
top (`logits = h @ E.T`). On the way in, vectors are multiplied by sqrt(hidden_size) *rounded to the compute dtype*:
in bfloat16 that is 45.25 for 2B (not 45.2548...) and 55.5 for 7B; the checkpoints were trained that way.
Not here: positional information (that is RoPE, applied inside attention).
"""
import math

import torch
from torch import nn
import torch.nn.functional as F


def embedding_scale(hidden_size: int, dtype: torch.dtype) -> torch.Tensor:
    """sqrt(hidden_size) as a 0-d tensor in `dtype` (the rounding is deliberate)."""
    return torch.tensor(math.sqrt(hidden_size), dtype=dtype)


class Embedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        if not self.weight.is_meta:         # a meta tensor (checkpoint loading) has no values to draw, and drawing
            nn.init.normal_(self.weight, std=0.02)    # them there imports sympy: ~2 s on the first load_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = F.embedding(input_ids, self.weight)                 # (batch, seq, hidden)
        return h * embedding_scale(self.weight.shape[1], h.dtype)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The tied output head: (batch, seq, hidden) -> (batch, seq, vocab), no bias."""
        return F.linear(h, self.weight)
