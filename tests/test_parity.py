"""minigemma against transformers' Gemma on random weights, loaded through minigemma's own checkpoint loader.

Tolerances:
* float32: rtol 1e-5 / atol 1e-5 on logits of magnitude ~0.3 (mean) to ~1.5 (max) for these random models; the
  observed differences are 1e-6 to 3e-6. Both sides compute the same float32 maths in different orders (fused
  attention, RoPE written as a rotation vs rotate-half), which costs a few float32 ulps (~1.2e-7 relative) per op.
* bfloat16: one bf16 ulp is 2**-8 relative (0.4%). We compare both bf16 implementations with the float32 reference
  and require minigemma's bf16 error to be no worse than 1.5x transformers' own bf16 error (plus 1 bf16 ulp of the
  logit scale), i.e. we are as exact as the reference can be in that precision.
"""
import copy

import pytest
import torch

import minigemma as mg
from reference import hf_greedy, hf_logits, reference_model, save_gemma_pytorch, save_hf

F32 = dict(rtol=1e-5, atol=1e-5)
TINY = {
    "mqa": mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1),
    "mha": mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=4),
    "gqa": mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=2),
}
# Full 2B / 7B widths (hidden, heads, head_dim 256, GeGLU width) with 1-2 layers and a small vocabulary, so that a
# test takes seconds; the vocabulary only changes the size of the embedding table, not any code path.
WIDE = {
    "2b-width": mg.GemmaConfig.gemma_2b().replace(num_layers=2, vocab_size=1024, max_seq_len=256),
    "7b-width": mg.GemmaConfig.gemma_7b().replace(num_layers=1, vocab_size=1024, max_seq_len=256),
}


def prompt(cfg, batch=2, seq=24, seed=1):
    return torch.randint(0, cfg.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


CONFIGS = {**TINY, **WIDE}


@pytest.fixture(scope="module")
def checkpoint_of(tmp_path_factory):
    """name -> (config, float32 transformers model, directory of its safetensors checkpoint); built once each."""
    built = {}

    def get(name):
        if name not in built:
            cfg = CONFIGS[name]
            ref = reference_model(cfg, seed=len(name))
            built[name] = cfg, ref, save_hf(ref, tmp_path_factory.mktemp(name))
        return built[name]
    return get


@pytest.fixture(params=list(CONFIGS))
def saved(request, checkpoint_of):
    return checkpoint_of(request.param)


def test_logits_match_reference_float32(saved):
    cfg, ref, directory = saved
    model = mg.load_model(directory)
    assert model.config == cfg
    ids = prompt(cfg)
    torch.testing.assert_close(model(ids), hf_logits(ref, ids), **F32)


def test_eager_and_sdpa_attention_agree_with_reference(saved):
    cfg, ref, directory = saved
    ids = prompt(cfg, seed=2)
    expected = hf_logits(ref, ids)
    model = mg.load_model(directory)
    for impl in ("eager", "sdpa"):
        model.set_attention(impl)
        torch.testing.assert_close(model(ids), expected, **F32, msg=lambda m: f"{impl}: {m}")


@pytest.mark.parametrize("name", list(TINY))
def test_sharded_checkpoint_loads_to_same_logits(name, tmp_path):
    cfg = TINY[name]
    ref = reference_model(cfg)
    directory = save_hf(ref, tmp_path, max_shard_size="100KB")
    assert (directory / "model.safetensors.index.json").exists()
    assert len(list(directory.glob("model-*.safetensors"))) > 1
    ids = prompt(cfg)
    torch.testing.assert_close(mg.load_model(directory)(ids), hf_logits(ref, ids), **F32)


@pytest.mark.parametrize("name", list(TINY) + ["2b-width"])
def test_gemma_pytorch_ckpt_loads_to_same_logits(name, tmp_path, checkpoint_of):
    cfg, ref, _ = checkpoint_of(name)
    path = save_gemma_pytorch(ref, tmp_path / "model.ckpt", max_seq_len=cfg.max_seq_len)
    model = mg.load_model(path)
    assert (model.config.num_heads, model.config.num_kv_heads) == (cfg.num_heads, cfg.num_kv_heads)
    ids = prompt(cfg)
    torch.testing.assert_close(model(ids), hf_logits(ref, ids), **F32)


def test_int8_gemma_pytorch_ckpt_is_dequantized(tmp_path, checkpoint_of):
    """Kaggle's int8 variants store int8 weights with a per-row float `weight_scaler`: w = int8 * scaler."""
    cfg, ref, _ = checkpoint_of("gqa")
    path = save_gemma_pytorch(ref, tmp_path / "fp.ckpt", max_seq_len=cfg.max_seq_len)
    state = torch.load(path, weights_only=True)["model_state_dict"]
    quantized = {}
    for name, tensor in state.items():
        if name.endswith("proj.weight") or name == "embedder.weight":
            scaler = tensor.abs().amax(dim=1) / 127
            quantized[name] = torch.round(tensor / scaler[:, None]).to(torch.int8)
            quantized[name.replace(".weight", ".weight_scaler")] = scaler
            state[name] = quantized[name].float() * scaler[:, None]          # what the loader must rebuild
        else:
            quantized[name] = tensor
    torch.save({"model_state_dict": quantized}, tmp_path / "int8.ckpt")
    torch.save({"model_state_dict": state}, tmp_path / "dequantized.ckpt")
    ids = prompt(cfg)
    model = mg.load_model(tmp_path / "int8.ckpt")
    assert model.dtype == torch.float32
    torch.testing.assert_close(model(ids), mg.load_model(tmp_path / "dequantized.ckpt")(ids), rtol=0, atol=0)


def bf16_errors(cfg, directory, ref):
    ids = prompt(cfg, seed=3)
    exact = hf_logits(ref, ids)
    ours = mg.load_model(directory, dtype=torch.bfloat16)(ids).float()
    theirs = hf_logits(copy.deepcopy(ref).to(torch.bfloat16), ids).float()
    return (ours - exact).abs().max().item(), (theirs - exact).abs().max().item(), exact.abs().max().item()


@pytest.mark.parametrize("name", ["mqa", "mha", "gqa", "2b-width", "7b-width"])
def test_bfloat16_as_exact_as_the_reference(name, checkpoint_of):
    cfg, ref, directory = checkpoint_of(name)
    ours, theirs, scale = bf16_errors(cfg, directory, ref)
    ulp = scale * 2 ** -8
    assert ours <= 1.5 * theirs + ulp, f"bf16 error {ours:.4f} vs reference's {theirs:.4f} (logit scale {scale:.1f})"


def test_bfloat16_embedding_output_is_bit_exact(tmp_path):
    """The sqrt(hidden) scale is rounded to bf16 (45.25 for 2B), exactly as the reference does it."""
    cfg = WIDE["2b-width"].replace(num_layers=1, intermediate_size=256)
    ref = reference_model(cfg).to(torch.bfloat16)
    model = mg.load_model(save_hf(ref, tmp_path))
    assert model.dtype == torch.bfloat16                      # dtype=None keeps the checkpoint's dtype
    ids = prompt(cfg)
    _, hidden = model(ids, return_hidden=True)
    with torch.no_grad():
        expected = ref(ids, output_hidden_states=True).hidden_states[0]
    assert torch.equal(hidden[0], expected)


@pytest.mark.parametrize("name", list(TINY))
def test_greedy_generation_matches_reference_and_no_cache(name, checkpoint_of):
    cfg, ref, directory = checkpoint_of(name)
    model = mg.load_model(directory)
    ids = prompt(cfg, batch=1, seq=8)
    cached = mg.generate(model, ids[0], max_new_tokens=24, stop_ids=())
    uncached = mg.generate(model, ids[0], max_new_tokens=24, stop_ids=(), use_cache=False)
    assert cached.tolist() == hf_greedy(ref, ids, 24)
    assert cached.tolist() == uncached.tolist()
    assert len(set(cached.tolist())) > 3, "degenerate random model: the comparison would prove little"


def test_cached_decoding_logits_equal_full_forward(checkpoint_of):
    cfg, _, directory = checkpoint_of("gqa")
    model = mg.load_model(directory)
    ids = prompt(cfg, batch=2, seq=12)
    full = model(ids)
    cache = model.new_cache(batch_size=2, max_len=12)
    pieces = [model(ids[:, :5], cache=cache)] + [model(ids[:, i:i + 1], cache=cache) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, **F32)
