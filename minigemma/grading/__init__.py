"""Graded exercises: checks that explain mistakes, and the `minigemma grade` command.

Learners call a check after each task of an exercise notebook (exercises/*.ipynb):

    from minigemma.grading import check_rope
    check_rope(apply_rope)      # ✓ rope-apply: passed.   or   ✗ rope-apply: your output matches the interleaved ...

Each check runs the learner's function on fresh random inputs against minigemma's own modules, and when the answer
is wrong compares it with known-wrong variants (interleaved RoPE, norm without +1, exact GELU, ...) to say which
mistake it is. Instructors grade whole notebooks, each in a fresh sandboxed kernel:

    minigemma grade exercises/solutions/ --json report.json

Grading trusts nothing in the submission but its solution code: the release's cells are restored (release), each
check is judged in the grader's process while the learner's functions run in the kernel (session, remote, probe),
the references are not importable there, and the kernel is sandboxed and limited (sandbox). exercises/README.md
says what is and is not protected.

Modules: core (the check decorator, results, time limit), compare (tensor comparison and diagnosis), checks/*
(one per exercise), toy_tokenizer, notebook (nbgrader metadata, reading scores), runner (kernels), report.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .checks.attention import check_attention, check_causal_mask, check_gqa, check_sliding_window_mask
from .checks.attention_module import check_attention_module
from .checks.block import check_decoder_block, check_gemma_forward, check_hf_names
from .checks.embedding import check_embed, check_embedding_scale, check_tied_logits
from .checks.generation import check_greedy_generate
from .checks.kv_cache import check_kv_cache, check_rolling_kv_cache
from .checks.own_gemma import check_own_gemma1
from .checks.own_gemma3 import check_own_gemma3
from .checks.mlp import check_geglu, check_geglu_fused, check_gelu_tanh
from .checks.quant import check_dequantize_q4_k, check_dequantize_q8_0, check_quantize_int8
from .checks.rmsnorm import check_fold_norm, check_rms_norm, check_rmsnorm_module
from .checks.rope import check_interleaved_to_half_split, check_rope, check_rope_angles
from .checks.sampling import check_temperature_top_k, check_top_p
from .checks.training import check_lora_forward, check_lora_merge, check_next_token_loss
from .checks.tokenizer import check_bpe_encode, check_byte_fallback, check_chat_prompt, check_encode
from .checks.vram import check_kv_cache_bytes, check_max_context, check_parameter_count
from .core import REGISTRY, CheckFailed, CheckResult
from .toy_tokenizer import piece_scores, toy_processor

HELP = "grade exercise notebooks (a file or a folder) in fresh kernels: points per task and the reasons"


def run(args) -> int:
    from .report import format_report, write_json
    from .runner import grade
    try:
        import ipykernel, nbclient, nbformat  # noqa: F401, E401  (grading runs notebooks in Jupyter kernels)
    except ImportError as err:
        raise ValueError(f"grading needs nbclient, nbformat and ipykernel ({err}); "
                         "pip install nbclient nbformat ipykernel (all in minigemma[test])") from None
    started = time.perf_counter()
    reports = grade(args.paths, time_limit=args.time_limit, jobs=args.jobs, kernel=args.kernel)
    seconds = time.perf_counter() - started
    print(format_report(reports, seconds))
    if args.json:
        try:
            write_json(reports, seconds, args.json)
            print(f"wrote {args.json}")
        except OSError as err:                         # a folder, a full disk: the report above still stands
            print(f"minigemma grade: error: could not write {args.json} ({err.strerror or err}); the report "
                  "above is complete", file=sys.stderr)
            return 2
    for report in reports:
        if report.unreadable:                          # graded the rest; still, say so and exit non-zero
            print(f"minigemma grade: error: {report.error}", file=sys.stderr)
    return 2 if any(report.unreadable for report in reports) else 0


__all__ = ["HELP", "run", "CheckFailed", "CheckResult", "REGISTRY", "toy_processor",
           "piece_scores"] + sorted(name for name in dir() if name.startswith("check_"))
