"""Check for exercise 05's last task, the attention module: q/k/v/o projections, RoPE on q and k, causal attention
with grouped KV heads (MQA/GQA). The learner's class is built in their kernel, given a reference module's weights
(the checkpoint names q_proj, k_proj, v_proj, o_proj) and run on the same input; the reference is
minigemma.attention.Attention. Known-wrong variants (no RoPE, RoPE on q only, interleaved RoPE, heads split or
merged without the transpose, KV heads tiled in the wrong order) are rebuilt here from the reference's own layers.
"""
import random

import torch

from ...attention import Attention as ReferenceAttention, attend_eager, causal_mask
from ...config import GemmaConfig
from ...rope import apply_rope, rope_angles
from ..compare import diagnose, expect_tensor, fresh_generator, randn
from ..core import Mismatch, check, require_callable
from ..remote import RemoteError
from .attention import SDPA
from .rope import interleaved_rope


def variant_forward(attn, x, cos, sin, rope=apply_rope, rope_q=True, rope_k=True, transpose_split=True,
                    transpose_merge=True, tile=False):
    """The attention forward pass from attn's own projections, with one step optionally done wrong."""
    batch, seq, _ = x.shape

    def split(t, heads):                              # (batch, seq, heads * head_dim) -> (batch, heads, seq, hd)
        if transpose_split:
            return t.view(batch, seq, heads, -1).transpose(1, 2)
        return t.view(batch, heads, seq, -1)
    q = split(attn.q_proj(x), attn.num_heads)
    k, v = split(attn.k_proj(x), attn.num_kv_heads), split(attn.v_proj(x), attn.num_kv_heads)
    q, k = (rope(q, cos, sin) if rope_q else q), (rope(k, cos, sin) if rope_k else k)
    group = attn.num_heads // attn.num_kv_heads
    expand = (lambda t: t.repeat(1, group, 1, 1)) if tile else (lambda t: t.repeat_interleave(group, dim=1))
    positions = torch.arange(seq)
    out = attend_eager(q, expand(k), expand(v), causal_mask(positions, positions), attn.scale)
    out = out.transpose(1, 2).reshape(batch, seq, -1) if transpose_merge else out.reshape(batch, seq, -1)
    return attn.o_proj(out)                           # (batch, seq, hidden)


def module_variants(attn, x, cos, sin):
    run = lambda **wrong: variant_forward(attn, x, cos, sin, **wrong)   # noqa: E731
    found = [(run(rope_q=False, rope_k=False), "no RoPE: rotate q and k by their positions before the scores."),
             (run(rope_k=False), "RoPE on q only: k must be rotated too (scores depend on the relative position)."),
             (run(rope_q=False), "RoPE on k only: q must be rotated too."),
             (run(rope=interleaved_rope), "your RoPE pairs neighbours (interleaved); Gemma pairs dimension i "
                                          "with i + head_dim/2 (half-split), as in exercise 04."),
             (run(transpose_split=False), "the heads are split wrongly: view the projection as (batch, seq, heads, "
                                          "head_dim), then move heads before seq."),
             (run(transpose_merge=False), "the heads are merged wrongly: move seq back before heads, then flatten "
                                          "to (batch, seq, heads * head_dim) before o_proj.")]
    if 1 < attn.num_kv_heads < attn.num_heads:
        found.append((run(tile=True), "query head i reads KV head i // (heads / kv_heads); you tiled the KV heads "
                                      "(repeat) instead of repeating each one in place (repeat_interleave)."))
    return found


def load_reference_weights(module, reference) -> None:
    try:
        module.load_state_dict({name: p.detach().clone() for name, p in reference.state_dict().items()})
    except (RemoteError, RuntimeError) as err:       # in the grader / in the learner's own kernel
        raise Mismatch("loading the checkpoint's weights into your module failed; keep the given layers q_proj, "
                       f"k_proj, v_proj, o_proj (bias=False) and their shapes ({err})") from None


@check("attention-module", forbid=[SDPA])
def check_attention_module(attention_class):
    require_callable(attention_class, "Attention class")
    gen = fresh_generator()
    for kv_heads in (random.choice([2, 1]), 4):
        config = GemmaConfig.tiny(hidden_size=48, num_heads=4, num_kv_heads=kv_heads, head_dim=8)
        reference = ReferenceAttention(config).eval()
        with torch.no_grad():
            for param in reference.parameters():
                param.copy_(randn(*param.shape, gen=gen, scale=0.3))
        module = attention_class(config.hidden_size, config.num_heads, kv_heads, config.head_dim)
        load_reference_weights(module, reference)
        seq = random.randint(4, 7)
        x = randn(2, seq, config.hidden_size, gen=gen)
        cos, sin = rope_angles(torch.arange(seq), config.head_dim)
        positions = torch.arange(seq)
        with torch.no_grad():
            expected = reference(x, (cos, sin), causal_mask(positions, positions))
            out = expect_tensor(module(x.clone(), cos, sin), x.shape, torch.float32,
                                name=f"your Attention with {config.num_heads} heads, {kv_heads} KV heads")
            # float32 throughout; 1e-4 relative covers a different order of the same matmuls
            diagnose(out, expected, module_variants(reference, x, cos, sin),
                     f"the output with {config.num_heads} query heads and {kv_heads} KV heads differs from "
                     "o_proj(attention(RoPE(q), RoPE(k), v)).", rtol=1e-4, atol=1e-5)
