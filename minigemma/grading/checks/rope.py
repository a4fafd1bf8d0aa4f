"""Checks for exercise 04, rotary position embedding: the angle tables, the half-split rotation, and converting
interleaved-layout q/k weights to Gemma's half-split layout. The reference is minigemma.rope."""
import random

import torch

from ...rope import apply_rope as reference_rope, rope_angles as reference_angles
from ..compare import diagnose, expect_tensor, fresh_generator, matches_bf16, randn
from ..core import Mismatch, check, require_callable


def angle_tables(positions, head_dim, theta, exponent_step):
    exponents = torch.arange(head_dim // 2).float() * exponent_step / head_dim
    angles = positions.float()[:, None] * theta ** exponents[None, :]
    return angles.cos(), angles.sin()


@check("rope-angles")
def check_rope_angles(rope_angles):
    require_callable(rope_angles, "rope_angles")
    head_dim, theta = random.choice([8, 16, 64, 256]), random.choice([10000.0, 500000.0])
    positions = torch.randint(0, 1000, (random.randint(3, 9),), generator=fresh_generator())
    cos, sin = reference_angles(positions, head_dim, theta)
    out = rope_angles(positions, head_dim, theta)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise Mismatch("rope_angles should return the pair (cos, sin).")
    shape = (len(positions), head_dim // 2)
    got_cos = expect_tensor(out[0], shape, name="the cos table")
    got_sin = expect_tensor(out[1], shape, name="the sin table")
    if torch.allclose(got_cos.float(), sin, atol=1e-3) and torch.allclose(got_sin.float(), cos, atol=1e-3):
        raise Mismatch("you returned (sin, cos); return (cos, sin).")
    wrong = [(angle_tables(positions, head_dim, theta, -1.0)[0],
              "your frequencies use i / head_dim; the exponent is 2i / head_dim (one frequency per *pair*)."),
             (angle_tables(positions, head_dim, theta, 2.0)[0],
              "your frequencies grow with i; they must shrink: inv_freq[i] = theta ** (-2i / head_dim)."),
             (angle_tables(positions, head_dim, 10000.0, -2.0)[0],
              "you ignored the theta argument (RoPE base); use it instead of a fixed 10000.")]
    diagnose(got_cos, cos, wrong, "your cos table differs from cos(position * theta ** (-2i / head_dim)).",
             rtol=1e-4, atol=1e-3)
    diagnose(got_sin, sin, otherwise="your cos table is right but the sin table is not.", rtol=1e-4, atol=1e-3)


def interleaved_rope(x, cos, sin):
    """The layout Gemma does NOT use: pairs (x[2i], x[2i+1])."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)


def rope_variants(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return [(interleaved_rope(x, cos, sin),
             "your output matches the interleaved layout (pairs 2i, 2i+1); Gemma rotates the two halves: "
             "pair i is (x[i], x[i + head_dim/2])."),
            (torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), -1),
             "you rotate by -angle: the first half is x1*cos - x2*sin, the second x2*cos + x1*sin."),
            (torch.cat((x2 * cos + x1 * sin, x1 * cos - x2 * sin), -1),
             "your two output halves are swapped: first x1*cos - x2*sin, then x2*cos + x1*sin."),
            (x, "your output equals the input: nothing was rotated.")]


@check("rope-apply")
def check_rope(apply_rope):
    require_callable(apply_rope, "apply_rope")
    gen = fresh_generator()
    batch, heads, seq, head_dim = 2, random.randint(1, 4), random.randint(3, 7), random.choice([8, 16, 32])
    cos, sin = reference_angles(torch.randint(0, 500, (seq,), generator=gen), head_dim)
    x = randn(batch, heads, seq, head_dim, gen=gen)
    out = expect_tensor(apply_rope(x, cos, sin), x.shape, torch.float32, name="apply_rope")
    diagnose(out, reference_rope(x, cos, sin), rope_variants(x, cos, sin),
             "the rotated values differ from the reference.", atol=1e-5)
    x16 = randn(batch, heads, seq, head_dim, gen=gen, scale=4.0, dtype=torch.bfloat16)
    out16 = expect_tensor(apply_rope(x16, cos, sin), x16.shape, torch.bfloat16, name="apply_rope")
    if not matches_bf16(out16, reference_rope(x16, cos, sin)):
        raise Mismatch("right in float32 but not in bfloat16: rotate in float32 (x.float()) and round to the "
                       "input dtype once, at the end.")


def half_split_order(head_dim: int) -> torch.Tensor:
    """Row order that turns one head's interleaved rows (x0, y0, x1, y1, ...) into halves (x0, x1, ... y0, y1, ...)."""
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


@check("rope-convert")
def check_interleaved_to_half_split(interleaved_to_half_split):
    require_callable(interleaved_to_half_split, "interleaved_to_half_split")
    gen = fresh_generator()
    heads, head_dim, hidden = random.randint(2, 4), random.choice([8, 16]), 2 * random.choice([8, 16])
    weight = randn(heads * head_dim, hidden, gen=gen)
    order = half_split_order(head_dim)
    per_head = weight.view(heads, head_dim, hidden)
    expected = per_head[:, order].reshape(heads * head_dim, hidden)
    out = expect_tensor(interleaved_to_half_split(weight.clone(), head_dim), weight.shape,
                        name="interleaved_to_half_split")
    inverse = torch.argsort(order)
    whole = torch.cat((torch.arange(0, heads * head_dim, 2), torch.arange(1, heads * head_dim, 2)))
    diagnose(out, expected, [
        (per_head[:, inverse].reshape(weight.shape),
         "that is the inverse permutation (half-split -> interleaved): new row i of a head must be old row "
         "2i for i < head_dim/2, and old row 2(i - head_dim/2) + 1 after."),
        (weight[whole], "you permuted the rows of the whole matrix at once; permute within each head "
                        "(rows h*head_dim .. (h+1)*head_dim - 1)."),
        (weight, "the weight came back unchanged.")], "the rows are not in half-split order.", atol=0)
    check_same_scores(interleaved_to_half_split, heads, head_dim, hidden, gen)


def check_same_scores(convert, heads, head_dim, hidden, gen):
    """The point of the conversion: interleaved RoPE on the old weights gives the same q.k as Gemma's on the new."""
    wq, wk = randn(heads * head_dim, hidden, gen=gen), randn(heads * head_dim, hidden, gen=gen)
    x = randn(5, hidden, gen=gen)
    cos, sin = reference_angles(torch.arange(5), head_dim)

    def scores(q_weight, k_weight, rope):
        q = rope((x @ q_weight.T).view(5, heads, head_dim).transpose(0, 1), cos, sin)
        k = rope((x @ k_weight.T).view(5, heads, head_dim).transpose(0, 1), cos, sin)
        return q @ k.transpose(-1, -2)

    before = scores(wq, wk, interleaved_rope)
    after = scores(convert(wq.clone(), head_dim), convert(wk.clone(), head_dim), reference_rope)
    if not torch.allclose(before, after, rtol=1e-4, atol=1e-3):
        raise Mismatch("attention scores change after your conversion; they must not.")
