"""Real Gemma 1 checkpoints (your own): minigemma against transformers on the same weights.

Gemma 1 weights are licence-gated, so the `real_weights` tests run only when MINIGEMMA_GEMMA_2B / MINIGEMMA_GEMMA_7B
name a checkpoint (Hugging Face directory or Kaggle .ckpt with tokenizer.model beside it); otherwise each is skipped
with a one-line reason. They check logits (bfloat16 tolerance, see minigemma/reference/compare.py), greedy
continuations of a few prompts token for token, the tokenizer on mixed-script text, and, for gemma-2b only, the
published float32 continuation of "Hello I am doing".

The second half proves this code path in every run: it saves a tiny random-weight Gemma in *both* official layouts,
with a SentencePiece tokenizer trained here, points the variables at them, and runs the very same test functions
and reference_check functions. Only the published continuation cannot run on random weights: it skips unless the
checkpoint really is a full-size gemma-2b.
"""
from __future__ import annotations

import shutil
import weakref

import pytest
import torch

import minigemma as mg
from minigemma.reference import compare as reference_check
from minigemma.weights.checkpoint import read_checkpoint
from minigemma.reference.compare import (ENV_VARS, PROMPTS, compare_logits_with_reference,
                                       compare_tokenizer_with_reference, enable_hint, greedy_continuation,
                                       real_checkpoint_path)
from reference import reference_model, save_gemma_pytorch, save_hf, train_tokenizer

SIZES = ["2b", "7b"]
# transformers' integration test for gemma-2b (float32, greedy); see the spec's "Known published reference points"
PUBLISHED_PROMPT = "Hello I am doing"
PUBLISHED_CONTINUATION = "a project on the 1990s and I need to know what the most popular music"


def checkpoint(size: str):
    path = real_checkpoint_path(size)
    if path is None:
        pytest.skip(enable_hint(size))
    return path


@pytest.mark.real_weights
@pytest.mark.parametrize("size", SIZES)
def test_logits_match_reference_bfloat16(size):
    result = compare_logits_with_reference(checkpoint(size), dtype=torch.bfloat16)
    assert result["ok"], result


@pytest.mark.real_weights
@pytest.mark.parametrize("size", SIZES)
def test_greedy_continuations_match_reference(size):
    path = checkpoint(size)
    for prompt in PROMPTS:
        result = greedy_continuation(path, prompt, max_new_tokens=16)
        assert result["ok"], (prompt, result)


@pytest.mark.real_weights
@pytest.mark.parametrize("size", SIZES)
def test_tokenizer_matches_reference(size):
    result = compare_tokenizer_with_reference(checkpoint(size))
    assert result["ok"], result


@pytest.mark.real_weights
def test_published_greedy_continuation_2b():
    path = checkpoint("2b")
    config, _ = read_checkpoint(path)
    full_size = mg.GemmaConfig.gemma_2b()
    if (config.vocab_size, config.hidden_size, config.num_layers) != (
            full_size.vocab_size, full_size.hidden_size, full_size.num_layers):
        pytest.skip(f"{path} is not a full-size gemma-2b; the published continuation needs the real weights")
    tok = mg.Tokenizer(reference_check.tokenizer_file(path))
    n = len(tok.encode(" " + PUBLISHED_CONTINUATION, add_bos=False))
    result = greedy_continuation(path, PUBLISHED_PROMPT, max_new_tokens=n, dtype=torch.float32)
    assert result["text"].strip() == PUBLISHED_CONTINUATION, result


# ---- the code path, proven on random weights ---------------------------------------------------------------
@pytest.fixture(scope="module")
def random_checkpoints(tmp_path_factory):
    """layout -> path: a tiny random Gemma saved as a Hugging Face directory and as a Kaggle .ckpt, each with
    tokenizer.model beside it (trained here, so the vocabulary is the model's)."""
    root = tmp_path_factory.mktemp("random-gemma1")
    tokenizer_path = train_tokenizer(root)
    cfg = mg.GemmaConfig.tiny(vocab_size=mg.Tokenizer(tokenizer_path).vocab_size, num_kv_heads=2)
    ref = reference_model(cfg, seed=11)
    hf_dir = save_hf(ref, root / "hf")
    kaggle = root / "kaggle"
    kaggle.mkdir()
    ckpt = save_gemma_pytorch(ref, kaggle / "gemma-tiny.ckpt")
    for folder in (hf_dir, kaggle):
        shutil.copy(tokenizer_path, folder / "tokenizer.model")
    return {"hf": hf_dir, "ckpt": ckpt}


def test_real_weight_tests_skip_with_a_clear_reason(monkeypatch):
    for size in SIZES:
        monkeypatch.delenv(ENV_VARS[size], raising=False)
        with pytest.raises(pytest.skip.Exception, match=f"set {ENV_VARS[size]}=/path/to/gemma-{size}"):
            test_logits_match_reference_bfloat16(size)


@pytest.mark.parametrize("size, layout", [("2b", "hf"), ("7b", "ckpt")])
def test_real_weight_tests_run_on_random_checkpoints(size, layout, random_checkpoints, monkeypatch):
    monkeypatch.setenv(ENV_VARS[size], str(random_checkpoints[layout]))
    test_logits_match_reference_bfloat16(size)
    test_greedy_continuations_match_reference(size)
    test_tokenizer_matches_reference(size)
    if size == "2b":
        with pytest.raises(pytest.skip.Exception, match="not a full-size gemma-2b"):
            test_published_greedy_continuation_2b()


@pytest.mark.parametrize("layout", ["hf", "ckpt"])
def test_reference_check_results_on_random_checkpoints(layout, random_checkpoints):
    path = random_checkpoints[layout]
    float32 = compare_logits_with_reference(path, dtype=torch.float32)
    assert float32["ok"] and float32["max_abs_diff"] < 1e-4 and float32["top1_agreement"] == 1.0, float32
    bf16 = compare_logits_with_reference(path)                       # default: bfloat16 on both sides
    assert bf16["ok"] and bf16["dtype"] == "bfloat16" and bf16["max_abs_diff"] > 0, bf16
    greedy = greedy_continuation(path, prompt="Hello I am doing", max_new_tokens=16)
    assert greedy["ok"] and len(greedy["ids"]) == 16 and greedy["dtype"] == "float32", greedy
    assert greedy["text"] == mg.Tokenizer(path.parent / "tokenizer.model" if layout == "ckpt"
                                          else path / "tokenizer.model").decode(greedy["ids"])
    tokens = compare_tokenizer_with_reference(path)
    assert tokens["ok"] and len(set(tokens["ids"])) > 20, tokens         # mixed text: many distinct pieces


def test_the_checks_can_fail(random_checkpoints, monkeypatch):
    """A minigemma with one wrong convention (RMSNorm without the `1 +`) must be caught by both checks."""
    real_loader = reference_check.load_minigemma

    def broken(path, dtype):
        model = real_loader(path, dtype)
        with torch.no_grad():
            for block in model.layers:
                block.attn_norm.weight.add_(1.0)                       # scale (2 + w) instead of (1 + w)
        return model
    monkeypatch.setattr(reference_check, "load_minigemma", broken)
    path = random_checkpoints["hf"]
    assert not compare_logits_with_reference(path, dtype=torch.float32)["ok"]
    assert not greedy_continuation(path, max_new_tokens=16)["ok"]


def test_only_one_model_is_alive_at_a_time(random_checkpoints, monkeypatch):
    """The 7B must fit in 24 GB: minigemma's copy is released before the reference is loaded."""
    alive = []
    real_minigemma, real_reference = reference_check.load_minigemma, reference_check.load_reference

    def tracked_minigemma(path, dtype):
        model = real_minigemma(path, dtype)
        alive.append(weakref.ref(model))
        return model

    def checked_reference(path, dtype):
        assert all(ref() is None for ref in alive), "minigemma's model is still alive while the reference loads"
        return real_reference(path, dtype)
    monkeypatch.setattr(reference_check, "load_minigemma", tracked_minigemma)
    monkeypatch.setattr(reference_check, "load_reference", checked_reference)
    compare_logits_with_reference(random_checkpoints["ckpt"])
    greedy_continuation(random_checkpoints["ckpt"], max_new_tokens=4)
    assert len(alive) == 2
