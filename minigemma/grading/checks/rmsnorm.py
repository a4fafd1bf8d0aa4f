"""Checks for exercise 03, RMSNorm: the function (with (1 + weight), epsilon inside the root, float32 statistics),
the module (zero-initialised weight) and folding the norm's scale into the next linear layer.
The reference is minigemma.rmsnorm."""
import random

import torch
import torch.nn.functional as F

from ...rmsnorm import rms_norm as reference_norm
from ..compare import diagnose, expect_tensor, fresh_generator, matches_bf16, randn
from ..remote import is_module
from ..core import Mismatch, check, require_callable

EPS = 1e-6
NO_PLUS_ONE = "scale by (1 + weight), not weight: Gemma stores the learned scale as an offset from 1."


def norm_inputs(gen, dim):
    """Three rows of ordinary size and one tiny row, where epsilon matters."""
    x = randn(2, 4, dim, gen=gen, scale=2.0)
    x[:, -1] *= 1e-4
    return x


def norm_variants(x, weight):
    ms = x.pow(2).mean(-1, keepdim=True)
    centred = x - x.mean(-1, keepdim=True)
    return [(x * torch.rsqrt(ms + EPS) * weight, NO_PLUS_ONE),
            (x / (ms.sqrt() + EPS) * (1 + weight),
             "epsilon goes inside the square root: x / sqrt(mean(x^2) + eps)."),
            (x * torch.rsqrt(ms) * (1 + weight), "you left out epsilon (1e-6, inside the square root)."),
            (centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + EPS) * (1 + weight),
             "that is LayerNorm: RMSNorm does not subtract the mean."),
            (x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + EPS) * (1 + weight),
             "use the *mean* of the squares, not their sum.")]


@check("rmsnorm-function")
def check_rms_norm(rms_norm):
    require_callable(rms_norm, "rms_norm")
    gen = fresh_generator()
    dim = random.choice([16, 64, 256])
    x, weight = norm_inputs(gen, dim), randn(dim, gen=gen, scale=0.5)
    out = expect_tensor(rms_norm(x.clone(), weight.clone(), EPS), x.shape, torch.float32, name="rms_norm")
    diagnose(out, reference_norm(x, weight, EPS), norm_variants(x, weight),
             "your output differs from x / sqrt(mean(x^2) + eps) * (1 + weight).", rtol=1e-4, atol=1e-6)
    x16, w16 = randn(3, 8, 512, gen=gen, scale=3.0, dtype=torch.bfloat16), randn(512, gen=gen, dtype=torch.bfloat16)
    out16 = expect_tensor(rms_norm(x16.clone(), w16.clone(), EPS), x16.shape, torch.bfloat16, name="rms_norm")
    if not matches_bf16(out16, reference_norm(x16, w16, EPS)):
        raise Mismatch("right in float32 but not in bfloat16: compute the statistics and the scaling in float32 "
                       "(x.float()) and round to bfloat16 once, at the end.")


@check("rmsnorm-module")
def check_rmsnorm_module(RMSNorm):
    require_callable(RMSNorm, "RMSNorm class")
    dim = random.choice([16, 32])
    norm = RMSNorm(dim)
    if not is_module(norm):
        raise Mismatch("RMSNorm should subclass torch.nn.Module, so its weight is a registered parameter.")
    weight = dict(norm.state_dict()).get("weight")
    if weight is None:
        raise Mismatch("the module needs an nn.Parameter named `weight` (checkpoints store it under that name).")
    if tuple(weight.shape) != (dim,):
        raise Mismatch(f"the weight should have shape ({dim},), got {tuple(weight.shape)}.")
    if torch.all(weight == 1):
        raise Mismatch("initialise the weight to zeros: the scale is (1 + weight), so zero is the identity scale.")
    if not torch.all(weight == 0):
        raise Mismatch("initialise the weight to zeros (a fresh norm must scale by exactly 1).")
    gen = fresh_generator()
    x = norm_inputs(gen, dim)
    with torch.no_grad():
        diagnose(expect_tensor(norm(x), x.shape, name="RMSNorm(x)"), reference_norm(x, weight, EPS),
                 norm_variants(x, weight)[1:], "a fresh norm should return x / sqrt(mean(x^2) + eps).",
                 rtol=1e-4, atol=1e-6)
        weight = randn(dim, gen=gen, scale=0.5)
        norm.load_state_dict({"weight": weight})               # as a checkpoint would set it
        diagnose(expect_tensor(norm(x), x.shape, name="RMSNorm(x)"), reference_norm(x, weight, EPS),
                 norm_variants(x, weight), "after training (weight != 0) your module's output is wrong.",
                 rtol=1e-4, atol=1e-6)


@check("rmsnorm-fold")
def check_fold_norm(fold_norm_weight):
    require_callable(fold_norm_weight, "fold_norm_weight")
    gen = fresh_generator()
    dim = random.choice([8, 16])
    norm_weight, linear_weight = randn(dim, gen=gen, scale=0.5), randn(dim, dim, gen=gen)
    new_weight = expect_tensor(fold_norm_weight(norm_weight.clone(), linear_weight.clone()), linear_weight.shape,
                               name="fold_norm_weight")
    x = randn(3, dim, gen=gen)
    expected = F.linear(reference_norm(x, norm_weight, EPS), linear_weight)   # (3, dim)
    unit = reference_norm(x, torch.zeros(dim), EPS)                          # the norm with scale 1
    diagnose(F.linear(unit, new_weight), expected, [
        (F.linear(unit, linear_weight * norm_weight[None, :]), NO_PLUS_ONE),
        (F.linear(unit, linear_weight * (1 + norm_weight)[:, None]),
         "you scaled the rows (output features) of the linear weight; the norm's scale multiplies each *input* "
         "feature of x, so which axis of W meets x? (rows or columns)"),
        (F.linear(unit, linear_weight), "the weight came back unchanged.")],
        "linear(rms_norm(x, 0), your weight) differs from linear(rms_norm(x, w), W).", rtol=1e-4, atol=1e-5)
