"""The whole Gemma decoder: embed -> N decoder blocks -> final RMSNorm -> tied logits.

    h = E[ids] * sqrt(D)             (embedding.py)
    h = block_i(h)  for each layer   (block.py: attention.py + mlp.py, with rmsnorm.py and rope.py inside)
    logits = rmsnorm(h) @ E.T        (the output head *is* the embedding matrix: no separate lm_head)

RoPE tables and the causal mask are built once per forward pass and shared by all layers.
Not here: loading weights (weights/), sampling (generate.py), Gemma 3's per-layer tables and masks (gemma3.py).
"""
import torch
from torch import nn

from .attention import causal_mask
from .block import DecoderBlock
from .config import GemmaConfig
from .embedding import Embedding
from .kv_cache import KVCache, positions_for
from .rmsnorm import RMSNorm
from .rope import rope_angles


def check_input(input_ids: torch.Tensor, cache: KVCache | None, config: GemmaConfig) -> None:
    """One clear error for ids the model cannot take: wrong type or shape, empty, out of vocabulary, too long."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError("input_ids must be an int64 tensor of shape (batch, seq), got "
                         f"{getattr(input_ids, 'dtype', type(input_ids))} {tuple(getattr(input_ids, 'shape', ()))}")
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids is empty: give at least one token (normally BOS, id 2)")
    if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= config.vocab_size):
        raise ValueError(f"token ids must lie in [0, {config.vocab_size}), got "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")
    total = input_ids.shape[1] + (cache.length if cache is not None else 0)
    if total > config.max_seq_len:
        raise ValueError(f"sequence of {total} tokens exceeds the context of {config.max_seq_len}")


class ModelConveniences(nn.Module):
    """What every Gemma model offers besides its forward pass: dtype, device, size, attention choice, a cache."""

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_attention(self, impl: str) -> "ModelConveniences":
        """'sdpa' (fused, default) or 'eager' (explicit scores; easier to inspect)."""
        for block in self.layers:
            block.attn.impl = impl
        return self

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        return KVCache(self.config, batch_size, max_len, dtype=self.dtype, device=self.device)


class Gemma(ModelConveniences):
    block_class = DecoderBlock

    def __init__(self, config: GemmaConfig):
        super().__init__()
        self.config = config
        self.embed = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(self.block_class(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def rope_and_masks(self, positions, k_positions):
        """One (cos/sin table, causal mask) pair per layer; in Gemma 1 every layer shares the same pair."""
        shared = (rope_angles(positions, self.config.head_dim, self.config.rope_theta),
                  causal_mask(positions, k_positions))
        return [shared] * self.config.num_layers

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None, last_only: bool = False,
                return_hidden: bool = False):
        """input_ids (batch, seq) -> logits (batch, seq, vocab), or (batch, 1, vocab) when last_only. With a cache,
        input_ids are the *new* tokens (their K/V are appended to it). With return_hidden, also returns the
        residual stream after the embedding and after each block."""
        check_input(input_ids, cache, self.config)
        seq_len = input_ids.shape[1]
        positions = positions_for(cache, seq_len, input_ids.device)
        k_len = seq_len + (cache.length if cache is not None else 0)   # every key the new tokens may see
        k_positions = torch.arange(k_len, device=input_ids.device)
        layer_inputs = self.rope_and_masks(positions, k_positions)      # [(rope, mask)] per layer

        h = self.embed(input_ids)                                     # (batch, seq, hidden)
        hidden = [h] if return_hidden else None                      # kept only when asked: L+1 activations
        for block, (rope, mask) in zip(self.layers, layer_inputs):
            h = block(h, rope, mask, cache)
            if hidden is not None:
                hidden.append(h)
        if cache is not None:
            cache.advance(seq_len)
        if last_only:
            h = h[:, -1:]
        logits = self.embed.logits(self.norm(h))                      # (batch, seq, vocab)
        return (logits, hidden) if return_hidden else logits
