"""One negative test per Gemma convention: flip it, and the parity check against transformers must fail.

Each test first shows parity holds with the convention right, then patches in the classic mistake and shows the
same comparison (same tolerance as tests/test_parity.py) catches it. This proves the parity tests can see each
mistake rather than passing by accident.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import minigemma as mg
from minigemma import attention, embedding, mlp, model as model_module, rmsnorm
from reference import hf_logits, reference_model, save_hf

F32 = dict(rtol=1e-5, atol=1e-5)     # as in test_parity.py
GQA = mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=2)     # 2 KV heads: a wrong head->KV mapping is visible
IDS = torch.randint(0, GQA.vocab_size, (2, 16), generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = reference_model(GQA, seed=11)
    return ref, save_hf(ref, tmp_path_factory.mktemp("gqa"))


def matches(model, ref, ids=IDS) -> bool:
    try:
        torch.testing.assert_close(model(ids), hf_logits(ref, ids), **F32)
        return True
    except AssertionError:
        return False


def assert_mistake_is_caught(pair, monkeypatch, target, name, wrong):
    ref, directory = pair
    assert matches(mg.load_model(directory), ref), "parity must hold before the convention is broken"
    monkeypatch.setattr(target, name, wrong)
    assert not matches(mg.load_model(directory), ref), f"parity did not notice the wrong {name}"


def interleaved_rope(x, cos, sin):
    """Rotate (even, odd) pairs instead of (first half, second half): the other common layout."""
    x32 = x.float()
    even, odd = x32[..., 0::2], x32[..., 1::2]
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2).to(x.dtype)


def norm_without_one(x, weight, eps=1e-6):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


def tiled_kv_attention(q, k, v, mask, scale, impl="sdpa"):
    """Query head i reads KV head i % kv_heads (torch.repeat) instead of i // group (repeat_interleave)."""
    group = q.shape[1] // k.shape[1]
    return attention.attend_eager(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), mask, scale)


def untied_logits(self, h):
    head = torch.randn(self.weight.shape, generator=torch.Generator().manual_seed(0)) * self.weight.std()
    return F.linear(h, head.to(h.dtype))


def test_rope_half_split_layout(pair, monkeypatch):
    assert_mistake_is_caught(pair, monkeypatch, attention, "apply_rope", interleaved_rope)


def test_rmsnorm_one_plus_weight(pair, monkeypatch):
    assert_mistake_is_caught(pair, monkeypatch, rmsnorm, "rms_norm", norm_without_one)


def test_gelu_tanh_approximation(pair, monkeypatch):
    assert_mistake_is_caught(pair, monkeypatch, mlp, "gelu_tanh", lambda x: F.gelu(x))


def test_embedding_is_scaled(pair, monkeypatch):
    assert_mistake_is_caught(pair, monkeypatch, embedding, "embedding_scale",
                             lambda hidden, dtype: torch.tensor(1.0, dtype=dtype))


def test_output_head_is_tied(pair, monkeypatch):
    assert_mistake_is_caught(pair, monkeypatch, embedding.Embedding, "logits", untied_logits)


def test_kv_head_sharing(pair, monkeypatch):
    assert_mistake_is_caught(pair, monkeypatch, attention, "attend", tiled_kv_attention)


def test_kv_cache_positions(pair, monkeypatch):
    """Decoding with the cache must give the reference's logits at every position; an off-by-one RoPE position for
    the tokens after the prompt does not."""
    ref, directory = pair
    expected = hf_logits(ref, IDS)

    def cached_logits():
        model = mg.load_model(directory)
        cache = model.new_cache(IDS.shape[0], IDS.shape[1])
        steps = [model(IDS[:, :6], cache=cache)] + [model(IDS[:, i:i + 1], cache=cache) for i in range(6, 16)]
        return torch.cat(steps, dim=1)

    torch.testing.assert_close(cached_logits(), expected, **F32)

    def off_by_one(cache, seq_len, device="cpu"):
        start = 0 if cache is None or cache.length == 0 else cache.length + 1
        return torch.arange(start, start + seq_len, device=device)

    monkeypatch.setattr(model_module, "positions_for", off_by_one)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(cached_logits(), expected, **F32)


def test_embedding_scale_rounded_to_bfloat16(tmp_path, monkeypatch):
    """sqrt(2048) must be rounded to bf16 (45.25) before multiplying, as the checkpoints were trained; multiplying by
    the Python float 45.2548... changes the last bit of a share of the outputs (how many depends on the weights; a
    few percent for these random ones). Compared bit for bit."""
    cfg = mg.GemmaConfig.gemma_2b().replace(num_layers=1, intermediate_size=256, vocab_size=512, max_seq_len=64)
    ref = reference_model(cfg).to(torch.bfloat16)
    directory = save_hf(ref, tmp_path)
    ids = torch.randint(0, cfg.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(ids, output_hidden_states=True).hidden_states[0]

    def embedded():
        return mg.load_model(directory)(ids, return_hidden=True)[1][0]

    assert torch.equal(embedded(), expected)
    monkeypatch.setattr(embedding, "embedding_scale", lambda hidden, dtype: math.sqrt(hidden))
    differing = (embedded() != expected).float().mean().item()
    assert differing > 0, "a float32 scale gave bit-identical bf16 embeddings: the check cannot see this mistake"
