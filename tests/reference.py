"""Helpers that build the reference (Hugging Face transformers) Gemma on random weights and save it to disk in the
official layouts, so minigemma can be checked against it through its own loader."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import minigemma as mg
from minigemma.reference.compare import hf_gemma_config


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded random weights everywhere, norms included (a zero norm weight would hide the `1 + w` convention).
    Linear weights get std 2/sqrt(fan_in) and embeddings 0.3/sqrt(hidden): with these, greedy text from a tiny random
    model varies instead of repeating one token, so token-for-token comparisons mean something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.dim() == 1:                                   # norm offsets: visibly non-zero
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif "embed" in name:                           # scaled by sqrt(hidden) on the way in
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 / p.shape[1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 2.0 / p.shape[1] ** 0.5)
    return model


def reference_model(cfg: mg.GemmaConfig, seed: int = 0, dtype=torch.float32, attn="eager"):
    from transformers import GemmaForCausalLM
    torch.manual_seed(seed)
    model = GemmaForCausalLM(hf_gemma_config(cfg, attn_implementation=attn))
    return randomize_(model, seed).to(dtype).eval()


def save_hf(model, directory: Path, max_shard_size=None) -> Path:
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, safe_serialization=True, **kwargs)
    return directory


def save_gemma_pytorch(model, path: Path, max_seq_len: int | None = None, theta: float = 10000.0) -> Path:
    """Write `model`'s weights as gemma_pytorch does: model_state_dict, embedder.weight, fused qkv_proj with rows
    [q | k | v], and the complex64 freqs_cis buffer (2 * max_seq_len, head_dim / 2)."""
    cfg = model.config
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        if name == "model.embed_tokens.weight":
            name = "embedder.weight"
        if ".self_attn.k_proj." in name or ".self_attn.v_proj." in name:
            continue
        if ".self_attn.q_proj." in name:
            prefix = name[: -len("q_proj.weight")]
            qkv = [model.state_dict()[prefix + p + "_proj.weight"] for p in "qkv"]
            state[prefix + "qkv_proj.weight"] = torch.cat(qkv, dim=0).clone()
            continue
        state[name] = tensor.clone()
    seq = max_seq_len or cfg.max_position_embeddings
    angles = torch.outer(torch.arange(2 * seq).float(),
                         1.0 / theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))
    state["freqs_cis"] = torch.polar(torch.ones_like(angles), angles)
    torch.save({"model_state_dict": state}, path)
    return path


def hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def hf_greedy(model, ids: torch.Tensor, n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0,
                             min_new_tokens=n)
    return out[0, ids.shape[1]:].tolist()


TOKENIZER_TEXT = """Gemma is a family of lightweight open models built from the research and technology used to create
Gemini models. They are text-to-text, decoder-only large language models, available in English, with open
weights. The capital of France is Paris. In 1998, 42 people counted 3.14159 apples and 2,718 pears.
Hello I am doing a project on the 1990s and I need to know what the most popular music was.
Café, naïve, façade; 東京 and 北京; emoji 🙂 follow the bytes.
"""


def train_tokenizer(directory: Path, vocab_size: int = 400) -> Path:
    """A small Gemma-style SentencePiece BPE model (byte fallback, split digits, no normalisation),
    with Gemma's special ids pad 0, eos 1, bos 2, unk 3. Returns the tokenizer.model path."""
    import io
    import sentencepiece as spm
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_TEXT.splitlines() * 20), model_writer=model, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        num_threads=1, minloglevel=2, hard_vocab_limit=False)
    path = Path(directory) / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return path


def save_example_checkpoints(directory: Path, cfg: mg.GemmaConfig | None = None) -> Path:
    """The checkpoints the CLI tests use, for trying `minigemma info` / `generate` by hand: a tiny random-weight
    Gemma as a Hugging Face directory (with a tokenizer.model) and the same weights as a gemma_pytorch .ckpt."""
    cfg = cfg or mg.GemmaConfig.tiny(vocab_size=400)
    directory = Path(directory)
    model = reference_model(cfg)
    save_hf(model, directory / "hf")
    train_tokenizer(directory / "hf", vocab_size=cfg.vocab_size)
    (directory / "kaggle").mkdir(exist_ok=True)
    save_gemma_pytorch(model, directory / "kaggle" / "model.ckpt", max_seq_len=cfg.max_seq_len)
    (directory / "kaggle" / "tokenizer.model").write_bytes((directory / "hf" / "tokenizer.model").read_bytes())
    return directory


if __name__ == "__main__":       # python tests/reference.py DIR
    import sys
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/reference.py DIR   (writes DIR/hf and DIR/kaggle/model.ckpt)")
    out = save_example_checkpoints(Path(sys.argv[1]))
    print(f"wrote {out / 'hf'} (Hugging Face layout) and {out / 'kaggle' / 'model.ckpt'} (gemma_pytorch layout)")
