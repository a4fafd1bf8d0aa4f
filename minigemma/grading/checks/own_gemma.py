"""Check for exercise 10, your own Gemma: the learner's model, built from their own pieces in their kernel, loads a
Gemma 1 checkpoint in the Hugging Face layout (a tiny one, random weights, written here by transformers) and must
give transformers' logits. While grading, minigemma's model modules are refused in the kernel, so only the
learner's code can compute them. Not here: task 2, Gemma 3 and the real 270M (own_gemma3.py).
"""
import random

import torch

from ...config import GemmaConfig
from ...reference.compare import hf_gemma_config
from ..compare import fresh_generator, largest_difference, matches, randn
from ..core import Mismatch, check, require_callable
from ..remote import RemoteError

HINTS = ("the usual suspects, in the order the forward pass meets them: the embedding times sqrt(hidden_size) "
         "(in the model's dtype), RMSNorm's weight used as (1 + weight), RoPE half-split on q and k, the causal "
         "mask, query head i reading KV head i // (heads / kv_heads), GeGLU with tanh-GELU on gate_proj, and the "
         "tied output head (logits = h @ embed_tokens.weight.T).")


@torch.no_grad()
def randomize(model, gen) -> None:
    """Every weight random, norms included (so a missing (1 + weight) shows): vectors 0.3, matrices 0.1 std."""
    for param in model.parameters():
        param.copy_(randn(*param.shape, gen=gen, scale=0.3 if param.dim() == 1 else 0.1))


def tiny_checkpoint(gen):
    """(config, transformers model, its state dict): a tiny Gemma 1 with every weight random, norms included."""
    from transformers import GemmaForCausalLM
    config = GemmaConfig.tiny(num_layers=2, num_heads=4, num_kv_heads=random.choice([1, 2, 4]), head_dim=16)
    reference = GemmaForCausalLM(hf_gemma_config(config, attn_implementation="eager")).eval()
    randomize(reference, gen)
    state = {name: t.detach().clone() for name, t in reference.state_dict().items() if name != "lm_head.weight"}
    return config, reference, state


def expect_logits_shape(out, expected: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(expected.shape):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise Mismatch(f"your model should return logits of shape {tuple(expected.shape)} (batch, seq, vocab); "
                       f"got {shape}.")


@check("own-gemma1")
def check_own_gemma1(load_gemma1):
    require_callable(load_gemma1, "load_gemma1")
    gen = fresh_generator()
    config, reference, state = tiny_checkpoint(gen)
    try:
        model = load_gemma1(config, state)
    except RemoteError as err:
        raise Mismatch(f"loading the checkpoint into your model failed: {err}{err.where}. Its tensors are named "
                       "as in Hugging Face's layout (model.embed_tokens.weight, model.layers.0.self_attn.q_proj."
                       "weight, ..., model.norm.weight).") from None
    ids = torch.randint(0, config.vocab_size, (2, random.randint(5, 9)), generator=gen)
    with torch.no_grad():
        expected = reference(ids).logits                               # (batch, seq, vocab), float32
    out = model(ids)
    expect_logits_shape(out, expected)
    # float32 on both sides; 1e-4 covers summation order across 2 layers, far below any real mistake (>1e-2)
    if not matches(out.float(), expected, rtol=1e-4, atol=1e-4):
        first = "the first position is right, so look at how positions interact (RoPE, mask); " if matches(
            out[:, 0].float(), expected[:, 0], rtol=1e-4, atol=1e-4) else ""
        raise Mismatch(f"your logits differ from transformers' ({largest_difference(out.float(), expected)}); "
                       f"{first}{HINTS}")
