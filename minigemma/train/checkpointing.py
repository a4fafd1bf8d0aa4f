"""Gradient checkpointing per decoder block, as a transform on a finished model.

Training normally keeps every block's intermediate activations (attention scores, the GeGLU's 3 wide tensors,
...) until the backward pass needs them. With checkpointing each block keeps only its *input*; in the backward
pass the block's forward runs again to rebuild what it needs. Memory per layer drops from "everything inside the
block" to one (batch, seq, hidden) tensor, for the cost of a second forward pass (~+33% compute).

    enable_checkpointing(model)     # wraps each block's forward; parameter names and results do not change
Not here: the model itself (model.py is unchanged), choosing which blocks to checkpoint (all or none).
"""
from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint


def checkpointed(plain_forward, h, rope, mask, cache=None):
    """Run a block keeping only its input for backward; plain when decoding (a cache) or without gradients."""
    if cache is not None or not torch.is_grad_enabled():
        return plain_forward(h, rope, mask, cache)
    return checkpoint(plain_forward, h, rope, mask, None, use_reentrant=False,
                      preserve_rng_state=False)                  # Gemma has no dropout: nothing random to replay


def enable_checkpointing(model):
    """Wrap every block of `model` (in place) so its activations are recomputed in the backward pass."""
    for block in model.layers:
        if "forward" not in vars(block):                       # not wrapped yet
            block.forward = functools.partial(checkpointed, block.forward)
    return model


def disable_checkpointing(model):
    """Undo enable_checkpointing."""
    for block in model.layers:
        vars(block).pop("forward", None)
    return model
