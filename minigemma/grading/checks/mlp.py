"""Checks for exercise 06, the GeGLU feed-forward: tanh-approximated GELU, the gated MLP, and the same MLP from a
fused [gate | up] weight. The reference is minigemma.mlp."""
import math
import random

import torch
import torch.nn.functional as F

from ...mlp import GeGLU, gelu_tanh as reference_gelu
from ..compare import diagnose, expect_tensor, fresh_generator, randn
from ..core import check, require_callable

EXACT_GELU = ("that is the exact (erf) GELU; Gemma was trained with the tanh approximation "
              "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).")


def gelu_variants(x):
    inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return [(F.gelu(x), EXACT_GELU),
            (x * torch.sigmoid(1.702 * x), "that is the sigmoid approximation x * sigmoid(1.702 x); Gemma uses "
                                           "the tanh approximation."),
            (x * (1 + torch.tanh(inner)), "missing the factor 0.5 in front."),
            (0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x)), "missing the cubic term 0.044715 x^3."),
            (F.silu(x), "that is SiLU (Swish), LLaMA's activation; Gemma uses GELU (tanh approximation).")]


@check("geglu-gelu")
def check_gelu_tanh(gelu_tanh):
    require_callable(gelu_tanh, "gelu_tanh")
    x = torch.cat((torch.linspace(-6, 6, 97), randn(64, gen=fresh_generator(), scale=3.0)))
    out = expect_tensor(gelu_tanh(x.clone()), x.shape, torch.float32, name="gelu_tanh")
    diagnose(out, reference_gelu(x), gelu_variants(x), "your GELU differs from the tanh approximation.",
             rtol=1e-5, atol=1e-6)


def random_mlp(hidden, intermediate, gen):
    mlp = GeGLU(hidden, intermediate)
    with torch.no_grad():
        for linear in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            linear.weight.copy_(randn(*linear.weight.shape, gen=gen, scale=linear.weight.shape[1] ** -0.5))
    return mlp


def mlp_variants(x, gate, up, down):
    g, u = x @ gate.T, x @ up.T                                   # (batch, seq, intermediate)
    return [((F.gelu(g) * u) @ down.T, EXACT_GELU),
            ((F.gelu(u, approximate="tanh") * g) @ down.T,
             "the GELU goes on the gate projection, not the up projection: gelu(gate(x)) * up(x)."),
            ((F.silu(g) * u) @ down.T, "that is SwiGLU (SiLU gate, LLaMA); Gemma's gate is GELU (tanh)."),
            (F.gelu(g, approximate="tanh") @ down.T, "the up projection is missing: multiply gelu(gate(x)) by up(x)."),
            (F.gelu(g * u, approximate="tanh") @ down.T, "GELU applies to gate(x) alone, before multiplying by "
                                                         "up(x), not to the product.")]


def fresh_mlp_case():
    """A random GeGLU of a random small size, an input x (2, seq, hidden), and copies of its three weights."""
    gen = fresh_generator()
    hidden, intermediate = random.choice([8, 16]), random.choice([24, 40])
    mlp = random_mlp(hidden, intermediate, gen)
    x = randn(2, random.randint(2, 5), hidden, gen=gen)
    weights = [w.detach().clone() for w in (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)]
    return mlp, x, weights


@check("geglu-mlp")
def check_geglu(geglu):
    require_callable(geglu, "geglu")
    mlp, x, weights = fresh_mlp_case()
    out = expect_tensor(geglu(x, *weights), x.shape, torch.float32, name="geglu")
    with torch.no_grad():
        diagnose(out, mlp(x), mlp_variants(x, *weights), "the MLP output differs from "
                 "down(gelu_tanh(gate(x)) * up(x)).", rtol=1e-4, atol=1e-5)


@check("geglu-fused")
def check_geglu_fused(geglu_fused):
    require_callable(geglu_fused, "geglu_fused")
    mlp, x, (gate, up, down) = fresh_mlp_case()
    fused = torch.cat((gate, up), dim=0)                          # (2 * intermediate, hidden): rows [gate | up]
    out = expect_tensor(geglu_fused(x, fused.clone(), down), x.shape, torch.float32, name="geglu_fused")
    alternating = (fused[0::2], fused[1::2])
    with torch.no_grad():
        diagnose(out, mlp(x), [
            ((F.gelu(x @ up.T, approximate="tanh") * (x @ gate.T)) @ down.T,
             "the first `intermediate` rows of the fused weight are the gate, the next ones the up projection; "
             "you swapped them."),
            ((F.gelu(x @ alternating[0].T, approximate="tanh") * (x @ alternating[1].T)) @ down.T,
             "split the fused weight into two contiguous halves (chunk along dim 0), not alternating rows."),
            (mlp_variants(x, gate, up, down)[0][0], EXACT_GELU)],
            "the output differs from the unfused GeGLU with the same weights.", rtol=1e-4, atol=1e-5)
