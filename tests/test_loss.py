"""The loss, perplexity and gradients of minigemma against transformers' GemmaForCausalLM on random weights.

Loss on the real Gemma 3 270M is checked in tests/test_gemma3.py (test_loss_matches_transformers_on_real_weights),
which already has both models loaded: reading the GGUF into transformers costs ~1 min, so it is read once.

Tolerances (float32 on both sides):
* loss: rtol 1e-5 on a value ~4-10 (a mean of a few dozen log-probabilities, each exact to a few float32 ulps
  after the same maths in a different order); an off-by-one shift moves it by > 0.1, 10,000x that.
* gradients: per parameter tensor, |ours - theirs| <= 1e-4 x max|theirs| (+ rtol 1e-4). Backward doubles the
  float32 ops and sums over every position, so single entries near zero carry the rounding of much larger
  terms (one embedding entry of 4e-5 differed by 1.8e-6); measured against the tensor's own scale the
  differences stay near 1e-6 (printed by -s). A wrong gradient (e.g. a missing 1 + w in a norm) is O(1) off.
"""
import pytest
import torch

import minigemma as mg
from minigemma.loss import (IGNORE_INDEX, causal_lm_loss, labels_for, nll_from_hidden, final_hidden, perplexity,
                            shift_labels)
from minigemma.train import disable_checkpointing, enable_checkpointing
from minigemma.weights.layouts import hf_to_minigemma_name
from reference import reference_model

LOSS = dict(rtol=1e-5, atol=1e-6)
GRAD_SCALE = 1e-4
CONFIGS = {"mha": mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=4),
           "mqa": mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1)}


def pair(cfg, seed=0):
    """(transformers model, minigemma model) with the same float32 weights."""
    ref = reference_model(cfg, seed=seed)
    model = mg.Gemma(cfg)
    state = {hf_to_minigemma_name(n, gemma3=False): t for n, t in ref.state_dict().items()}
    state.pop(None)                                                  # lm_head: tied to the embedding
    model.load_state_dict(state)
    return ref.train(), model.train()


def batch(cfg, seq=16, seed=1):
    ids = torch.randint(3, cfg.vocab_size, (2, seq), generator=torch.Generator().manual_seed(seed))
    ids[1, -5:] = 0                                                  # right padding on the second row
    return ids


@pytest.fixture(scope="module", params=list(CONFIGS))
def models(request):
    return CONFIGS[request.param], *pair(CONFIGS[request.param])


def test_shift_labels_moves_targets_left_by_one():
    assert shift_labels(torch.tensor([[5, 6, 7]])).tolist() == [[6, 7, IGNORE_INDEX]]
    assert labels_for(torch.tensor([[2, 5, 6, 0]]), pad_id=0, prompt_lengths=[2]).tolist() == [[-100, -100, 6, -100]]


def test_loss_matches_transformers_with_padding_and_prompt_ignored(models):
    cfg, ref, model = models
    ids = batch(cfg)
    labels = labels_for(ids, pad_id=0, prompt_lengths=[3, 4])
    with torch.no_grad():
        expected = ref(ids, labels=labels).loss
        for chunk in (1, 7, 256):                                    # the chunking never changes the result
            torch.testing.assert_close(causal_lm_loss(model, ids, labels, chunk_size=chunk), expected, **LOSS)


def test_off_by_one_and_unmasked_padding_are_caught(models):
    """The two classic bugs give losses outside the tolerance, so the comparison above can fail. Random weights
    are nearly uniform, so the gap is small here (~1e-3 relative, still 100x the rtol); on the real 270M an
    off-by-one shift costs several nats (tests/test_gemma3.py)."""
    cfg, ref, model = models
    ids = batch(cfg)
    labels = labels_for(ids)
    with torch.no_grad():
        expected = ref(ids, labels=labels).loss
        hidden = final_hidden(model, ids)
        unshifted = torch.cat([torch.full_like(labels[:, :1], IGNORE_INDEX), labels[:, :-1]], dim=1)
        no_shift, n = nll_from_hidden(hidden, model.embed.weight, unshifted)      # predicts the token it sees
        padded, m = nll_from_hidden(hidden, model.embed.weight, ids)             # scores the padding too
    for wrong in (no_shift / n, padded / m):
        assert abs(float(wrong - expected)) > 100 * LOSS["rtol"] * float(expected)


def gradients_by_hf_name(model):
    return {n: p.grad for n, p in model.named_parameters()}


def test_gradients_match_transformers(models):
    cfg, ref, model = models
    ids = batch(cfg)
    labels = labels_for(ids)
    ref.zero_grad(), model.zero_grad()
    ref(ids, labels=labels).loss.backward()
    causal_lm_loss(model, ids, labels, chunk_size=5).backward()
    ours = gradients_by_hf_name(model)
    checked, worst = 0, 0.0
    for name, param in ref.named_parameters():
        mine = hf_to_minigemma_name(name, gemma3=False)
        if mine is None:                                             # lm_head is the embedding: one tensor
            continue
        scale = float(param.grad.abs().max())
        worst = max(worst, float((ours[mine] - param.grad).abs().max()) / scale)
        torch.testing.assert_close(ours[mine], param.grad, rtol=GRAD_SCALE, atol=GRAD_SCALE * scale,
                                   msg=lambda m: f"{name}: {m}")
        checked += 1
    print(f"largest gradient difference / tensor scale: {worst:.1e}")
    assert checked == len(ours) and all(g.abs().max() > 0 for g in ours.values())   # every parameter learns


def test_gradient_checkpointing_gives_the_same_gradients(models):
    cfg, _, model = models
    ids = batch(cfg, seed=3)

    def grads():
        model.zero_grad()
        causal_lm_loss(model, ids).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}
    plain = grads()
    enable_checkpointing(model)
    try:
        assert set(model.state_dict()) == set(plain)                 # parameter names unchanged
        recomputed = grads()
    finally:
        disable_checkpointing(model)
    for name in plain:      # the same ops on the same inputs: equal up to float32 rounding (observed: bit-exact)
        torch.testing.assert_close(recomputed[name], plain[name], rtol=1e-6, atol=1e-8)


def test_perplexity_is_exp_of_the_loss_and_reads_every_token_once():
    cfg = CONFIGS["mqa"]
    _, model = pair(cfg)
    ids = torch.randint(3, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        loss = causal_lm_loss(model, ids)
    whole = perplexity(model, ids[0].tolist(), window=64)
    assert whole["tokens"] == 39
    assert whole["perplexity"] == pytest.approx(float(loss.exp()), rel=1e-5)
    windowed = perplexity(model, ids[0].tolist(), window=10)
    assert windowed["tokens"] == 39 and windowed["perplexity"] != pytest.approx(whole["perplexity"], rel=1e-5)


def test_bad_labels_are_named():
    cfg = CONFIGS["mqa"]
    model = mg.Gemma(cfg)
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"labels must have the shape of input_ids \(1, 4\), got \(1, 3\)"):
        causal_lm_loss(model, ids, ids[:, :3])
    with pytest.raises(ValueError, match="no position is scored"):
        causal_lm_loss(model, ids, torch.full_like(ids, IGNORE_INDEX))
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(model, [2])


def test_eval_command_names_a_missing_file(capsys):
    from minigemma.cli import main
    assert main(["eval", "no/such/text.txt"]) == 2
    err = capsys.readouterr().err
    assert "text file no/such/text.txt not found" in err and "Traceback" not in err
