"""A quantized tied embedding: the same int8/int4 matrix serves the lookup at the bottom and the head at the top.

    lookup:  h = dequantize(E_q[ids]) * sqrt(D)     only the gathered rows are dequantized: (batch, seq, hidden)
    head:    logits = h @ dequantize(E_q).T          the quantized linear's kernel, reading 1 (or 1/2) byte/weight

It keeps `Embedding`'s interface (`forward`, `logits`, and an empty `weight` that carries dtype and device), so the model runs unchanged.
Not here: untied output heads (Gemma has none).
"""
import torch
from torch import nn

from ..embedding import embedding_scale


class QuantizedEmbedding(nn.Module):
    def __init__(self, table: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.table = table                  # an Int8Linear or Int4Linear of shape (vocab, hidden)
        self.compute_dtype = dtype
        self.vocab_size, self.hidden_size = table.out_features, table.in_features

    @property
    def weight(self) -> torch.Tensor:
        """Gemma.dtype / .device read `embed.weight`; a quantized table has no float matrix, so an empty tensor
        carries the compute dtype and the device (0 bytes)."""
        return torch.empty(0, dtype=self.compute_dtype, device=next(self.table.buffers()).device)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.table.rows(input_ids, self.compute_dtype)                    # (batch, seq, hidden)
        return h * embedding_scale(self.hidden_size, h.dtype)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.table(h)                                                  # (batch, seq, vocab)
