"""Checks for exercise 02, embeddings: the scaled lookup (with the scale rounded to the compute dtype), the exact
scale a given dtype produces, and the tied output head. The reference is minigemma.embedding."""
import math
import random
import struct

import torch
import torch.nn.functional as F

from ...embedding import Embedding, embedding_scale as reference_scale
from ..compare import diagnose, diagnose_value, expect_tensor, fresh_generator, randn
from ..core import Mismatch, check, require_callable


def reference_embedding(weight):
    module = Embedding(*weight.shape).to(weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
    return module


def embed_variants(weight, ids):
    rows, hidden = F.embedding(ids, weight), weight.shape[1]
    return [(rows, "you forgot the scale: Gemma multiplies every embedding by sqrt(hidden_size)."),
            (rows * hidden, "multiply by the square root of hidden_size, not by hidden_size itself."),
            (rows / math.sqrt(hidden), "multiply by sqrt(hidden_size); you divided."),
            (rows * math.sqrt(hidden),
             f"round the scale to the compute dtype first: in bfloat16 sqrt({hidden}) is "
             f"{reference_scale(hidden, torch.bfloat16).item():g}, not {math.sqrt(hidden):.6g}; "
             "use torch.tensor(math.sqrt(hidden), dtype=weight.dtype).")]


@check("embedding-lookup")
def check_embed(embed):
    require_callable(embed, "embed")
    gen = fresh_generator()
    for dtype in (torch.float32, torch.bfloat16):
        vocab, hidden = random.randint(20, 40), random.choice([2048, 3072])   # sqrt not exact in bfloat16
        weight = randn(vocab, hidden, gen=gen, dtype=dtype)
        ids = torch.randint(0, vocab, (2, random.randint(3, 6)), generator=gen)
        expected = reference_embedding(weight)(ids).detach()
        out = expect_tensor(embed(weight.clone(), ids), expected.shape, dtype, name=f"embed ({dtype})")
        tolerance = 1e-6 if dtype == torch.float32 else 0.0
        diagnose(out, expected, embed_variants(weight, ids), f"the {dtype} embeddings differ from "
                 "E[ids] * sqrt(hidden_size).", rtol=tolerance, atol=tolerance)


def truncated_bf16(value: float) -> float:
    """value rounded toward zero to bfloat16 (the wrong rounding)."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0] & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


@check("embedding-scale")
def check_embedding_scale(embedding_scale):
    require_callable(embedding_scale, "embedding_scale")
    sizes = [2048, 3072] + random.sample([640, 1152, 2304, 3584, 4608, 5376, 1000 + random.randint(0, 999)], 3)
    for hidden in sizes:
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            got = embedding_scale(hidden, dtype)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if not isinstance(got, (int, float)):
                raise Mismatch(f"embedding_scale should return a number, got {type(got).__name__}.")
            expected = reference_scale(hidden, dtype).item()
            variants = [(math.sqrt(hidden), f"that is sqrt({hidden}) exactly; the model multiplies by sqrt(hidden) "
                                            f"rounded to {str(dtype).replace('torch.', '')}.")]
            if dtype == torch.bfloat16:
                variants.append((truncated_bf16(math.sqrt(hidden)),
                                 "you rounded toward zero (dropped bits); bfloat16 rounds to the nearest value."))
            diagnose_value(float(got), expected, variants,
                           f"wrong scale for hidden_size={hidden} in {str(dtype).replace('torch.', '')}")


@check("embedding-head")
def check_tied_logits(tied_logits):
    require_callable(tied_logits, "tied_logits")
    gen = fresh_generator()
    vocab, hidden = random.randint(20, 50), random.choice([16, 32])
    weight = randn(vocab, hidden, gen=gen)
    h = randn(2, random.randint(2, 5), hidden, gen=gen)
    expected = reference_embedding(weight).logits(h).detach()
    out = expect_tensor(tied_logits(h, weight.clone()), expected.shape, torch.float32, name="tied_logits")
    diagnose(out, expected, [
        (expected * math.sqrt(hidden), "the output head is not scaled: sqrt(hidden) is applied on the way in only."),
        (expected / math.sqrt(hidden), "the output head is not scaled: logits are simply h @ E^T."),
        (expected.softmax(-1), "return logits, not probabilities: no softmax here.")],
        "the logits differ from h @ E^T.", rtol=1e-5, atol=1e-5)
