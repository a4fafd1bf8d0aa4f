"""`minigemma eval [--checkpoint PATH] FILE`: perplexity of a model on a text file, with a progress bar.

    minigemma eval notebooks/data/tokenizer_corpus.txt            # the Gemma 3 270M demo model
    minigemma eval --checkpoint path/to/gemma-2b --window 1024 my_text.txt
The text is tokenized (BOS first) and read in consecutive windows (minigemma.loss.perplexity).
Not here: batching several files, sliding windows with overlap.
"""
from __future__ import annotations

from pathlib import Path

COMMAND = "eval"
HELP = "perplexity of a checkpoint on a text file"


def add_arguments(parser) -> None:
    parser.add_argument("file", help="a UTF-8 text file")
    parser.add_argument("--checkpoint", help="HF directory, .ckpt or .gguf (default: the Gemma 3 270M demo)")
    parser.add_argument("--tokenizer", help="tokenizer.model (default: beside the checkpoint)")
    parser.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..cli.generate import default_checkpoint, find_tokenizer
    from ..loss import perplexity
    from ..weights.checkpoint import find_weights, load_model
    text_file = Path(args.file)
    if not text_file.is_file():
        raise FileNotFoundError(f"text file {text_file} not found")
    if args.window < 1:
        raise ValueError(f"--window must be a positive integer, got {args.window}")
    text = text_file.read_text(encoding="utf-8")
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    find_weights(path)
    tokenizer = find_tokenizer(path, args.tokenizer)
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise ValueError(f"{text_file} is empty: nothing to score")
    model = load_model(path)
    result = perplexity(model, ids, window=min(args.window, model.config.max_seq_len - 1), progress=True)
    print(f"{text_file}: {result['tokens']:,} tokens scored, loss {result['nll']:.4f} nats/token, "
          f"perplexity {result['perplexity']:.3f}")
    return 0
