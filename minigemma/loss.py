"""The training objective: next-token cross-entropy, computed in chunks, and perplexity.

    loss = mean over kept positions t of  -log softmax(logits[t])[ids[t + 1]]

* Shift by one: the logits at position t predict the token at t + 1, so the last position predicts nothing and
  the first token is never a target.
* Ignore index: a label of -100 (transformers' convention) marks a position that is not scored: padding, or
  the prompt when only the answer should be learned. The mean is over the kept positions only.
* Chunks: the full logits are (batch, seq, 262144) float32 -- 1 GiB for 1k tokens of Gemma. We keep the final
  hidden states (batch, seq, hidden) instead and turn `chunk_size` positions at a time into float32 logits;
  with gradients on, each chunk is recomputed in the backward pass (torch.utils.checkpoint), so only one
  chunk's logits are ever alive.
* Perplexity = exp(mean loss): the number of equally likely tokens the model is "choosing between".
Not here: the optimizer and the training loop (train/loop.py), LoRA (lora.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .model import check_input

IGNORE_INDEX = -100


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """(batch, seq) labels -> (batch, seq) targets: targets[:, t] = labels[:, t + 1]; the last is ignored."""
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


def labels_for(input_ids: torch.Tensor, pad_id: int | None = 0, prompt_lengths=None) -> torch.Tensor:
    """Labels = input_ids with padding (and, per row, the first `prompt_lengths[i]` tokens) set to -100."""
    labels = input_ids.clone()
    if pad_id is not None:
        labels[input_ids == pad_id] = IGNORE_INDEX
    for row, length in enumerate(prompt_lengths or ()):
        labels[row, :length] = IGNORE_INDEX
    return labels


def chunk_nll_sum(hidden: torch.Tensor, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of -log p(target) for (n, hidden) states against the tied head (vocab, hidden); float32 logits."""
    logits = F.linear(hidden, head).float()                     # (n, vocab): the only logits alive
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def nll_from_hidden(hidden, head, labels, chunk_size: int = 256) -> tuple[torch.Tensor, int]:
    """(summed loss, number of scored positions) from final hidden states (batch, seq, hidden), chunk by chunk."""
    targets = shift_labels(labels).reshape(-1)                  # (batch * seq,)
    flat = hidden.reshape(-1, hidden.shape[-1])                 # (batch * seq, hidden)
    keep = targets != IGNORE_INDEX
    flat, targets = flat[keep], targets[keep]                   # unscored positions never reach the head
    total = flat.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), chunk_size):
        piece = slice(start, start + chunk_size)
        if torch.is_grad_enabled():
            total = total + checkpoint(chunk_nll_sum, flat[piece], head, targets[piece], use_reentrant=False,
                                       preserve_rng_state=False)     # nothing random to replay
        else:
            total = total + chunk_nll_sum(flat[piece], head, targets[piece])
    return total, int(keep.sum())


def final_hidden(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The normed last hidden states (batch, seq, hidden) -- model.forward without the output head."""
    check_input(input_ids, None, model.config)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    layer_inputs = model.rope_and_masks(positions, positions)    # [(rope, mask)] per layer
    h = model.embed(input_ids)                                  # (batch, seq, hidden)
    for block, (rope, mask) in zip(model.layers, layer_inputs):
        h = block(h, rope, mask, None)
    return model.norm(h)


def causal_lm_loss(model, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                   chunk_size: int = 256) -> torch.Tensor:
    """Mean next-token cross-entropy of `model` on input_ids (batch, seq); labels default to input_ids."""
    labels = input_ids if labels is None else labels
    if labels.shape != input_ids.shape:
        raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, "
                         f"got {tuple(labels.shape)}")
    total, count = nll_from_hidden(final_hidden(model, input_ids), model.embed.weight, labels, chunk_size)
    if count == 0:
        raise ValueError("no position is scored: every label after the first is -100 (ignored)")
    return total / count


@torch.no_grad()
def perplexity(model, token_ids: list[int], window: int = 512, progress: bool = False) -> dict:
    """Perplexity of a long token sequence, read in consecutive windows of `window` tokens (each window predicts
    its own tokens after the first; no context carries over). Returns nll, tokens scored and perplexity."""
    from tqdm.auto import tqdm
    if len(token_ids) < 2:
        raise ValueError(f"perplexity needs at least 2 tokens, got {len(token_ids)}")
    total, count = 0.0, 0
    starts = range(0, len(token_ids) - 1, window)
    for start in tqdm(starts, desc="perplexity", unit="window", disable=not progress):
        ids = torch.tensor([token_ids[start:start + window + 1]], device=model.device)   # +1: overlap one token
        nll, n = nll_from_hidden(final_hidden(model, ids), model.embed.weight, ids)
        total, count = total + float(nll), count + n
    return {"nll": total / count, "tokens": count, "perplexity": math.exp(total / count)}
