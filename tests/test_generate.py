"""Sampling: greedy, temperature, top-k, top-p, seeds, stopping; and the config presets' exact sizes."""
import pytest
import torch

import minigemma as mg
from minigemma.generate import sample_next
from reference import randomize_


def varied_model():
    """A tiny model whose greedy text varies (default init tends to repeat one token)."""
    return randomize_(mg.Gemma(mg.GemmaConfig.tiny()), seed=4)


def test_official_parameter_counts_on_meta_device():
    with torch.device("meta"):
        assert mg.Gemma(mg.GemmaConfig.gemma_2b()).num_parameters() == 2_506_172_416
        assert mg.Gemma(mg.GemmaConfig.gemma_7b()).num_parameters() == 8_537_680_896


def test_wrong_spec_sheet_head_counts_give_wrong_totals():
    """16/1 heads (2B) and 32/32 (7B), as some public pages list, cannot be the official models."""
    with torch.device("meta"):
        assert mg.Gemma(mg.GemmaConfig.gemma_2b().replace(num_heads=16)).num_parameters() != 2_506_172_416
        assert mg.Gemma(mg.GemmaConfig.gemma_7b().replace(num_heads=32, num_kv_heads=32)).num_parameters() \
            != 8_537_680_896


def test_config_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="head_dim must be even"):
        mg.GemmaConfig.tiny(head_dim=15)
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        mg.GemmaConfig.tiny(hidden_size=0)


LOGITS = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0, -1.0]])


def draws(n=2000, **kwargs):
    gen = torch.Generator().manual_seed(0)
    return torch.stack([sample_next(LOGITS, generator=gen, **kwargs) for _ in range(n)]).flatten()


def test_greedy_is_argmax():
    assert sample_next(LOGITS, temperature=0.0).item() == 0


def test_top_k_keeps_only_k_tokens():
    assert set(draws(temperature=1.0, top_k=2).tolist()) == {0, 1}


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = LOGITS.softmax(-1)[0]          # 0.64, 0.24, 0.09, ...
    assert probs[0] < 0.7 < probs[:2].sum()
    assert set(draws(temperature=1.0, top_p=0.7).tolist()) == {0, 1}
    assert set(draws(temperature=1.0, top_p=0.5).tolist()) == {0}


def test_temperature_flattens_the_distribution():
    cold = (draws(temperature=0.5) == 0).float().mean()
    hot = (draws(temperature=2.0) == 0).float().mean()
    expected_cold = (LOGITS / 0.5).softmax(-1)[0, 0]
    assert abs(cold - expected_cold) < 0.05 and hot < cold


def test_seeded_sampling_is_reproducible():
    model = varied_model()
    run = lambda seed: mg.generate(model, [2, 7, 9], max_new_tokens=12, temperature=1.0, top_k=50, seed=seed,
                                   stop_ids=()).tolist()
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_generation_stops_at_a_stop_id():
    model = varied_model()
    free = mg.generate(model, [2, 7, 9], max_new_tokens=10, stop_ids=()).tolist()
    assert len(set(free)) > 3
    stop = free[3]
    stopped = mg.generate(model, [2, 7, 9], max_new_tokens=10, stop_ids=(stop,)).tolist()
    assert stopped == free[: free.index(stop) + 1]


def test_batched_generation_matches_single():
    model = varied_model()
    prompts = torch.tensor([[2, 5, 6], [2, 9, 4]])
    batched = mg.generate(model, prompts, max_new_tokens=6, stop_ids=())
    assert batched.shape == (2, 6)
    assert batched[0].tolist() != batched[1].tolist()
    for row, prompt in zip(batched, prompts):
        assert row.tolist() == mg.generate(model, prompt, max_new_tokens=6, stop_ids=()).tolist()
