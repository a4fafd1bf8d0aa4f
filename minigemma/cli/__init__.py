"""The `minigemma` command line: every subcommand, imported directly (a broken import fails loudly).

    minigemma generate --checkpoint PATH "prompt"   stream a continuation (greedy unless --temperature > 0)
    minigemma info PATH                            config, parameter count, dtype and bytes of a checkpoint
    minigemma vram --model 2b --context 1k,8k      will it fit on my GPU? (the work: memory/vram_cli.py)
    minigemma grade exercises/ --json report.json  grade exercise notebooks (the work: grading/runner.py)
Every flag is declared here, with an argparse type that checks it; errors about the user's input are printed as
one line (exit code 2), never as a traceback; Ctrl-C ends quietly with exit code 130.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import grading
from ..memory import vram_cli
from ..train import eval_cli
from . import generate, info
from .args import output_file, real_number, token_counts, whole_number


def add_vram(sub) -> None:
    vram = sub.add_parser("vram", help=vram_cli.HELP)
    vram.add_argument("--model", default="2b", help="2b, 7b, or a checkpoint path (HF directory or .ckpt)")
    vram.add_argument("--context", type=token_counts, default="1024,4096,8192",
                      help="comma-separated token counts (k = 1024)")
    vram.add_argument("--dtype", default="bf16", choices=vram_cli.FLOAT_FORMATS,
                      help="activations (and KV cache) of quantized formats; float formats use their own")
    vram.add_argument("--kv-dtype", choices=(*vram_cli.FLOAT_FORMATS, "fp8", "int8"),
                      help="KV cache dtype (default: as compute); int8: minigemma.quant.Int8KVCache")
    vram.add_argument("--batch", type=whole_number(1), default=1, help="sequences decoded together")
    vram.add_argument("--formats", type=vram_cli.weight_formats, default=vram_cli.DEFAULT_FORMATS,
                      help=f"weight formats, from: {', '.join(vram_cli.WEIGHT_FORMATS)}")
    vram.add_argument("--attention", default="sdpa", choices=("sdpa", "eager"))
    vram.add_argument("--all-logits", action="store_true", help="keep logits for every position (the trap)")
    vram.add_argument("--overhead-gib", type=real_number(0), default=0.5,
                      help="assumed CUDA context, GiB (0 to leave it out)")
    vram.add_argument("--train", choices=("full", "lora", "qlora"),
                      help="training memory instead: 2B and 7B at 1k/4k/8k (memory/training_cli.py)")
    vram.set_defaults(func=vram_cli.run)


def add_grade(sub) -> None:
    grade = sub.add_parser("grade", help=grading.HELP)
    grade.add_argument("paths", nargs="+", metavar="PATH", help="an exercise notebook, or a folder of them")
    grade.add_argument("--json", type=output_file, metavar="FILE", help="also write the report as JSON to FILE")
    grade.add_argument("--time-limit", type=real_number(0, low_open=True), default=20.0, metavar="SECONDS",
                       help="per task; a task still running then scores zero (default 20)")
    grade.add_argument("--jobs", type=whole_number(1), default=2, help="notebooks graded at once (default 2)")
    grade.add_argument("--kernel", help="Jupyter kernel to run the notebooks in (default: the notebook's own)")
    grade.set_defaults(func=grading.run)


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage dump: `minigemma vram: error: argument --batch: expected ...` (exit code 2)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="minigemma", description="Gemma, built to be read.")
    sub = parser.add_subparsers(dest="command", required=True)
    generate.add_arguments(sub)
    info.add_arguments(sub)
    add_vram(sub)
    add_grade(sub)
    eval_cli.add_arguments(sub.add_parser(eval_cli.COMMAND, help=eval_cli.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:                          # --help (0) or a rejected argument (2, already printed)
        return stop.code
    try:
        code = args.func(args)
        sys.stdout.flush()                              # inside the try: a closed pipe shows here, not at exit
        return code
    except (ValueError, FileNotFoundError) as err:     # CheckpointError and TokenizerError are ValueErrors
        print(f"minigemma {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                           # Ctrl-C: no traceback, the shell's usual code
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:                             # output piped into `head` or similar, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so the flush at exit cannot fail again
        return 1
