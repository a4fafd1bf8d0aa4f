"""Comparing a learner's output with the reference, and naming the mistake when it matches a known-wrong variant.

    out = expect_tensor(learner_fn(x), shape=(2, 3), dtype=torch.float32, name="apply_rope")
    diagnose(out, reference, [(interleaved_rope(x), "your output matches the interleaved layout; ...")],
             otherwise="the rotated values differ from the reference.")

`diagnose` passes silently when `out` matches the reference; otherwise it raises Mismatch with the message of the
first known-wrong variant that `out` matches, or with `otherwise` plus where the largest difference is.
Inputs are fresh random tensors from `fresh_generator()` (a new seed every call), so a check cannot be passed by
hard-coding answers.
Not here: the variants themselves (each checks/*.py module builds its own).
"""
from __future__ import annotations

import random

import torch

from .core import Mismatch

BF16_ULP = 2.0 ** -7          # spacing of bfloat16 numbers relative to their magnitude (worst case)


def fresh_generator() -> torch.Generator:
    return torch.Generator().manual_seed(random.SystemRandom().randrange(2**63))


def randn(*shape, gen: torch.Generator, dtype=torch.float32, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen) * scale).to(dtype)


def describe(obj) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {str(obj.dtype).replace('torch.', '')} tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def expect_tensor(out, shape=None, dtype=None, name: str = "your function") -> torch.Tensor:
    """`out` itself when it is a tensor of this shape and dtype; otherwise Mismatch saying what came back."""
    if isinstance(out, tuple) and len(out) == 1 and isinstance(out[0], torch.Tensor):
        raise Mismatch(f"{name} returned a 1-tuple holding a tensor; return the tensor itself (a stray comma?).")
    if not isinstance(out, torch.Tensor):
        raise Mismatch(f"{name} should return a torch.Tensor, but returned {describe(out)}.")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise Mismatch(f"{name} returned shape {tuple(out.shape)}, expected {tuple(shape)}.")
    if dtype is not None and out.dtype != dtype:
        raise Mismatch(f"{name} returned {str(out.dtype).replace('torch.', '')} for this input, expected "
                       f"{str(dtype).replace('torch.', '')}: return the input's dtype.")
    return out


def matches(out: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5) -> bool:
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        return False
    return torch.allclose(out.detach().float(), expected.float(), rtol=rtol, atol=atol, equal_nan=False)


def matches_bf16(out: torch.Tensor, expected: torch.Tensor, min_exact: float = 0.99) -> bool:
    """Equal to the bfloat16 reference in almost every element, and never more than one bf16 step away."""
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        return False
    a, b = out.detach().float(), expected.float()
    exact = (a == b).float().mean().item()
    within_ulp = ((a - b).abs() <= BF16_ULP * b.abs() + 1e-30).all().item()
    return exact >= min_exact and within_ulp


def largest_difference(out: torch.Tensor, expected: torch.Tensor) -> str:
    diff = (out.detach().float() - expected.float()).abs()
    if torch.isnan(diff).any():
        return "your output contains NaN"
    flat = int(diff.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))
    yours, wanted = out.detach().float().flatten()[flat].item(), expected.float().flatten()[flat].item()
    return f"largest difference {diff.max().item():.3g} at index {index}: yours {yours:.5g}, expected {wanted:.5g}"


def diagnose(out, expected, variants=(), otherwise: str = "the values differ from the reference.",
             rtol: float = 1e-5, atol: float = 1e-5) -> None:
    """Pass if out ~ expected; else raise Mismatch naming the first (variant, message) that out matches."""
    expect_tensor(out, shape=expected.shape)
    if matches(out, expected, rtol, atol):
        return
    for variant, message in variants:
        if matches(out, variant, rtol, atol):
            raise Mismatch(message)
    raise Mismatch(f"{otherwise} ({largest_difference(out, expected)})")


def diagnose_value(got, expected, variants=(), otherwise: str = "that is not the right number.") -> None:
    """The same for plain Python values (ints, floats, strings, lists)."""
    if got == expected:
        return
    for variant, message in variants:
        if got == variant:
            raise Mismatch(message)
    raise Mismatch(f"{otherwise} (yours: {got!r}, expected: {expected!r})")
