"""A training loop: AdamW on the trainable parameters, linear warm-up then linear decay, gradient clipping,
a tqdm bar showing the loss, and the loss of every step returned for plotting.
Not here: mixed precision, gradient accumulation, distributed training, evaluation during training.
"""
from __future__ import annotations

import torch

from ..loss import causal_lm_loss


def warmup_then_decay(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: 0 -> 1 over `warmup` steps, then 1 -> 0 linearly until `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(model, batches, steps: int, lr: float = 1e-3, warmup: int = 5, clip: float = 1.0,
          weight_decay: float = 0.0, progress: bool = True) -> list[float]:
    """Run `steps` optimizer steps over (ids, labels) batches; returns the loss of each step."""
    from tqdm.auto import tqdm
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter requires a gradient: add LoRA adapters or unfreeze the model first")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_then_decay(s, warmup, steps))
    model.train()
    losses = []
    bar = tqdm(zip(range(steps), batches), total=steps, desc="training", disable=not progress)
    for _, (ids, labels) in bar:
        loss = causal_lm_loss(model, ids, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses
