"""Checks of minigemma against the reference (transformers) on a *real* Gemma 1 checkpoint of your own.

Gemma 1 weights are licence-gated, so nothing here runs unless you point an environment variable at a checkpoint
you downloaded: MINIGEMMA_GEMMA_2B or MINIGEMMA_GEMMA_7B = a Hugging Face directory or a Kaggle .ckpt file (with
tokenizer.model beside it). Used by tests/test_real_weights.py and by the real-weight cells of notebooks 07 and 08.

The reference is transformers' GemmaForCausalLM on the same weights: from_pretrained on a Hugging Face directory;
for a .ckpt, the state dict renamed to Hugging Face names (checkpoint.gemma_pytorch_to_hf). Memory: minigemma and
the reference run *one after the other*, and only their logits / token ids are kept, so the peak is one model
(7B in bfloat16: ~17 GB, inside 24 GB of RAM).
Tolerances (logits of the same prompt, both sides in the same dtype):
  * bfloat16: 0.05 x max|reference logit|. One bf16 ulp is 0.4%; minigemma rotates RoPE in float32 and rounds once
    while transformers rounds cos/sin to bf16 first, so every layer differs by a few ulps (README "Tolerances").
  * float32: 1e-4 x max|reference logit|. Same maths in another summation order: float32 ulps (6e-8) accumulated
    over 2048-24576-long dot products and 18-28 layers stay well below it.
Not here: Gemma 3 (tests/test_gemma3.py checks the 270M GGUF in every run).
"""
from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path

import torch

ENV_VARS = {"2b": "MINIGEMMA_GEMMA_2B", "7b": "MINIGEMMA_GEMMA_7B"}
PROMPTS = ("Hello I am doing", "The capital of France is", "def fibonacci(n):")
MIXED_TEXT = "Gemma's tokenizer:  two  spaces,\ttabs\n\nnewlines, 12345 digits, café naïve Ærø, 東京 北京 日本語, 🙂👍🏽"
RELATIVE_TOLERANCE = {torch.bfloat16: 0.05, torch.float32: 1e-4}
LARGEST_FLOAT32_PARAMS = 3_000_000_000     # greedy_continuation's default: float32 up to 2B (10 GB), else bf16


def real_checkpoint_path(size: str) -> Path | None:
    """The checkpoint named by MINIGEMMA_GEMMA_2B / _7B, or None when the variable is unset or empty."""
    value = os.environ.get(ENV_VARS[size.lower()], "").strip()
    return Path(value).expanduser() if value else None


def enable_hint(size: str) -> str:
    """The one line printed when real-weight checks are off."""
    var = ENV_VARS[size.lower()]
    return (f"Real-weight check skipped: set {var}=/path/to/gemma-{size.lower()} (Hugging Face directory or Kaggle "
            f".ckpt, see README 'Real Gemma 1 weights') to run it.")


def run_if_available(size: str, check) -> dict | None:
    """`check(path)` on the checkpoint MINIGEMMA_GEMMA_<SIZE> names, printed and required ok; without the
    variable, the one-line hint saying how to switch the check on (the notebooks' real-weight cells)."""
    path = real_checkpoint_path(size)
    if path is None:
        print(enable_hint(size))
        return None
    report = check(path)
    print(f"gemma-{size}: {report}")
    assert report["ok"], report
    return report


# ---- loading both sides ----------------------------------------------------------------------------------
def tokenizer_file(path) -> Path:
    path = Path(path)
    found = (path if path.is_dir() else path.parent) / "tokenizer.model"
    if not found.exists():
        raise FileNotFoundError(f"no tokenizer.model beside the checkpoint {path} (expected {found})")
    return found


def hf_gemma_config(cfg, **extra):
    """transformers' GemmaConfig for a minigemma GemmaConfig (Gemma 1); `extra`, e.g. attn_implementation="eager",
    goes to transformers as it is."""
    from transformers import GemmaConfig as HFGemmaConfig
    return HFGemmaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         head_dim=cfg.head_dim, max_position_embeddings=cfg.max_seq_len, rope_theta=cfg.rope_theta,
                         rms_norm_eps=cfg.rms_norm_eps, hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
                         eos_token_id=1, bos_token_id=2, tie_word_embeddings=True, **extra)


def load_reference(path, dtype: torch.dtype):
    """transformers' Gemma on the checkpoint's weights (Hugging Face directory or gemma_pytorch .ckpt)."""
    from transformers import AutoModelForCausalLM, GemmaForCausalLM
    from ..weights.checkpoint import config_from_shapes, find_weights, gemma_pytorch_to_hf
    from ..weights.tensor_files import load_pickle_checkpoint
    path = Path(path)
    kind, files = find_weights(path)
    if kind == "hf":
        folder = path if path.is_dir() else path.parent
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager").eval()
    state, head_dim, max_len = gemma_pytorch_to_hf(load_pickle_checkpoint(files[0]))
    config = hf_gemma_config(config_from_shapes({n: tuple(t.shape) for n, t in state.items()}, head_dim, max_len))
    return GemmaForCausalLM.from_pretrained(None, config=config, state_dict=state, dtype=dtype,
                                            attn_implementation="eager").eval()


def load_minigemma(path, dtype: torch.dtype):
    from ..weights.checkpoint import load_model
    return load_model(path, dtype=dtype)


def with_model(load, path, dtype: torch.dtype, work):
    """Load a model, apply `work` to it and return only the result: the model is freed before this returns,
    so the other side never shares the memory with it."""
    result = work(load(path, dtype))
    gc.collect()
    return result


# ---- the checks ------------------------------------------------------------------------------------------
@torch.no_grad()
def compare_logits_with_reference(path, dtype: torch.dtype = torch.bfloat16, prompts=PROMPTS) -> dict:
    """Logits of minigemma and transformers on `prompts` (BOS + text), each in `dtype`, one model at a time."""
    from ..tokenizer import Tokenizer
    tok = Tokenizer(tokenizer_file(path))
    inputs = [torch.tensor([tok.encode(p)]) for p in prompts]
    ours = with_model(load_minigemma, path, dtype, lambda model: [model(ids).float() for ids in inputs])
    theirs = with_model(load_reference, path, dtype, lambda ref: [ref(ids).logits.float() for ids in inputs])
    max_diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
    tolerance = RELATIVE_TOLERANCE[dtype] * max(b.abs().max().item() for b in theirs)
    same_top1 = sum((a.argmax(-1) == b.argmax(-1)).sum().item() for a, b in zip(ours, theirs))
    positions = sum(b.shape[1] for b in theirs)
    return {"max_abs_diff": max_diff, "tolerance": tolerance, "ok": max_diff <= tolerance,
            "dtype": str(dtype).replace("torch.", ""), "top1_agreement": same_top1 / positions}


def default_greedy_dtype(path) -> torch.dtype:
    """float32 when the model has at most 3B parameters (2B: 10 GB), bfloat16 above (7B float32 needs 34 GB)."""
    from ..weights.checkpoint import read_checkpoint
    config, _ = read_checkpoint(path)                                 # tensors are read lazily: none read here
    embedding = config.vocab_size * config.hidden_size
    per_layer = (config.hidden_size * config.head_dim * (2 * config.num_heads + 2 * config.num_kv_heads)
                 + 3 * config.hidden_size * config.intermediate_size)
    params = embedding + config.num_layers * per_layer
    return torch.float32 if params <= LARGEST_FLOAT32_PARAMS else torch.bfloat16


@torch.no_grad()
def greedy_continuation(path, prompt: str = "Hello I am doing", max_new_tokens: int = 16,
                        dtype: torch.dtype | None = None) -> dict:
    """Greedy tokens after `prompt` from minigemma (with its KV cache) and from transformers' generate()."""
    from ..generate import generate
    from ..tokenizer import Tokenizer
    dtype = dtype or default_greedy_dtype(path)
    tok = Tokenizer(tokenizer_file(path))
    prompt_ids = tok.encode(prompt)
    ids = with_model(load_minigemma, path, dtype, lambda model: generate(
        model, prompt_ids, max_new_tokens=max_new_tokens, stop_ids=()).tolist())
    out = with_model(load_reference, path, dtype, lambda ref: ref.generate(
        torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
        eos_token_id=None, pad_token_id=0))
    reference_ids = out[0, len(prompt_ids):].tolist()
    return {"text": tok.decode(ids), "ids": ids, "reference_ids": reference_ids, "ok": ids == reference_ids,
            "dtype": str(dtype).replace("torch.", "")}


def compare_tokenizer_with_reference(path, text: str = MIXED_TEXT) -> dict:
    """minigemma's Tokenizer and transformers' GemmaTokenizer, both built from the same tokenizer.model."""
    from transformers import GemmaTokenizer
    from ..tokenizer import Tokenizer
    model_file = tokenizer_file(path)
    ids = Tokenizer(model_file).encode(text, add_bos=False)
    with tempfile.TemporaryDirectory() as folder:                    # only tokenizer.model: no tokenizer.json
        shutil.copy(model_file, Path(folder) / "tokenizer.model")
        reference = GemmaTokenizer.from_pretrained(folder)
        reference_ids = reference(text, add_special_tokens=False)["input_ids"]
    return {"text": text, "ids": ids, "reference_ids": reference_ids, "ok": ids == reference_ids}
