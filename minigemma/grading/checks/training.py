"""Checks for exercise 12, training: the next-token loss (shift by one, padding ignored, a mean over the scored
positions) and the LoRA forward pass (alpha / r scaling, B A order). The references are minigemma.loss and
minigemma.lora."""
import random

import torch
import torch.nn.functional as F

from ..compare import diagnose, expect_tensor, fresh_generator, randn
from ..core import Mismatch, check, require_callable

PAD = 0


def loss_inputs(gen):
    batch, seq, vocab = 2, random.choice([6, 9]), random.choice([11, 17])
    logits = randn(batch, seq, vocab, gen=gen, scale=2.0)
    ids = torch.randint(1, vocab, (batch, seq), generator=gen)
    ids[1, -3:] = PAD                                             # right padding on the second row
    return logits, ids


def reference_loss(logits, ids, shift=True, ignore=True, reduction="mean"):
    pred, target = (logits[:, :-1], ids[:, 1:]) if shift else (logits, ids)
    target = target.masked_fill(target == PAD, -100) if ignore else target
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100,
                           reduction=reduction)


@check("loss-next-token")
def check_next_token_loss(next_token_loss):
    require_callable(next_token_loss, "next_token_loss")
    logits, ids = loss_inputs(fresh_generator())
    out = expect_tensor(next_token_loss(logits.clone(), ids.clone(), PAD), (), name="next_token_loss")
    wrong = [(reference_loss(logits, ids, shift=False), "off by one: the logits at position t predict the token "
              "at t + 1, so compare logits[:, :-1] with input_ids[:, 1:]."),
             (reference_loss(logits, ids, ignore=False), "the padding is scored: targets equal to pad_id must be "
              "ignored (ignore_index=-100 after masking them), not counted."),
             (reference_loss(logits, ids, reduction="sum"), "that is the sum: divide by the number of scored "
              "positions (the mean over non-padding targets).")]
    diagnose(out.float(), reference_loss(logits, ids), wrong, "your loss differs from the mean next-token "
             "cross-entropy over non-padding targets.", rtol=1e-5, atol=1e-6)


@check("lora-forward")
def check_lora_forward(lora_forward):
    require_callable(lora_forward, "lora_forward")
    gen = fresh_generator()
    d_in, d_out, r, alpha = random.choice([12, 16]), random.choice([8, 10]), random.choice([2, 4]), 8.0
    x, W = randn(3, d_in, gen=gen), randn(d_out, d_in, gen=gen)
    A, B = randn(r, d_in, gen=gen, scale=0.3), randn(d_out, r, gen=gen, scale=0.3)
    out = expect_tensor(lora_forward(x.clone(), W.clone(), A.clone(), B.clone(), alpha, r), (3, d_out),
                        name="lora_forward")
    update = (x @ A.T) @ B.T                                       # (3, d_out)
    base = x @ W.T
    wrong = [(base + alpha * update, "scale the update by alpha / r, not by alpha."),
             (base + (r / alpha) * update, "the scaling is alpha / r (you have r / alpha)."),
             (base + update, "the update must be scaled by alpha / r."),
             ((alpha / r) * update, "you dropped the frozen base: y = x W^T + (alpha / r) (x A^T) B^T.")]
    diagnose(out, base + (alpha / r) * update, wrong, "your output differs from x W^T + (alpha / r) x A^T B^T.",
             rtol=1e-5, atol=1e-5)
    if not torch.equal(lora_forward(x, W, A, torch.zeros_like(B), alpha, r), base) and not torch.allclose(
            lora_forward(x, W, A, torch.zeros_like(B), alpha, r), base, atol=1e-6):
        raise Mismatch("with B = 0 the adapted layer must equal the frozen one.")


@check("lora-merge")
def check_lora_merge(merge_lora_weight):
    require_callable(merge_lora_weight, "merge_lora_weight")
    gen = fresh_generator()
    d_in, d_out, r, alpha = random.choice([12, 16]), random.choice([8, 10]), random.choice([2, 4]), 8.0
    W, A, B = randn(d_out, d_in, gen=gen), randn(r, d_in, gen=gen, scale=0.3), randn(d_out, r, gen=gen, scale=0.3)
    out = expect_tensor(merge_lora_weight(W.clone(), A.clone(), B.clone(), alpha, r), (d_out, d_in),
                        name="merge_lora_weight")
    wrong = [(W + alpha * B @ A, "scale B A by alpha / r, not by alpha."),
             (W + B @ A, "the merged update is (alpha / r) B A, scaled."),
             ((alpha / r) * B @ A, "keep the frozen W: merged = W + (alpha / r) B A.")]
    diagnose(out, W + (alpha / r) * B @ A, wrong, "your merged weight differs from W + (alpha / r) B A.",
             rtol=1e-5, atol=1e-5)
