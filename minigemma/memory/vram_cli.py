"""`minigemma vram`: will Gemma fit on my GPU? A table of weight format x context length -> memory, from the config.

    minigemma vram --model 2b --context 1024,4096,8192 --dtype bf16 --batch 1
    minigemma vram --model path/to/gemma-7b --context 8k --attention eager --all-logits

Each cell is weights + KV cache + the peak of temporary buffers + the assumed CUDA context (minigemma.memory).
A checkpoint PATH is read for its config only: config.json for a Hugging Face directory, tensor shapes for a .ckpt.
Not here: measuring a real GPU (benchmarks/vram_gpu.py does that) or multi-GPU splits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import inference as memory
from ..config import GemmaConfig
from .formats import MEASURED, NOT_RUNNABLE, WEIGHT_FORMATS

HELP = "estimate GPU memory for a Gemma model: weight format x context length"
PRESETS = {"2b": GemmaConfig.gemma_2b, "7b": GemmaConfig.gemma_7b}
FLOAT_FORMATS = ("fp32", "bf16", "fp16")          # these run in their own dtype
DEFAULT_FORMATS = "fp32,bf16,int8,q8_0,q6_k,q5_k_m,q4_k_m,nf4,int4,mg-int8,mg-int4-g32"
GiB = memory.GiB
GPUS = [("8 GiB (RTX 4060, RTX 3070)", 8 * GiB), ("12 GiB (RTX 3060, RTX 4070)", 12 * GiB),
        ("16 GiB (T4, RTX 4080, V100)", 16 * GiB), ("24 GiB (RTX 3090/4090, L4, A10G)", 24 * GiB),
        ("32 GiB (RTX 5090, V100-32GB)", 32 * GiB), ("40 GiB (A100-40GB)", 40 * GiB),
        ("48 GiB (L40S, RTX 6000 Ada)", 48 * GiB), ("80 GiB (A100-80GB, H100)", 80 * GiB)]


def smallest_gpu(total: int) -> str | None:
    """The first common GPU whose nominal memory holds `total` bytes (the driver keeps a little for itself)."""
    return next((name for name, capacity in GPUS if total <= capacity), None)


def load_config(model: str) -> tuple[str, GemmaConfig]:
    """('Gemma 2B', config) for a preset; for a path, its config read without loading the weights."""
    if model.lower() in PRESETS:
        return f"Gemma {model.upper()}", PRESETS[model.lower()]()
    path = Path(model)
    if not path.exists():
        raise ValueError(f"--model must be one of {', '.join(PRESETS)} or an existing checkpoint path; "
                         f"{model!r} does not exist")
    from ..weights.checkpoint import find_weights, read_checkpoint
    if find_weights(path)[0] == "gguf":
        raise ValueError(f"{path}: GGUF files already fix their format; give the original checkpoint, or "
                         "--model 2b/7b with --formats q4_k_m (or another GGUF format)")
    config, _tensors = read_checkpoint(path)    # HF: reads config.json only; .ckpt: memory-mapped shapes
    return str(path), config


def weight_formats(text: str) -> list[str]:
    """'bf16,q4_k_m' -> ['bf16', 'q4_k_m'] (the --formats argument type)."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in WEIGHT_FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"unknown weight format(s) {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {', '.join(WEIGHT_FORMATS)}")
    return formats


def row(config, fmt, args) -> tuple[list[float], memory.Estimate]:
    """Totals in GiB for each context, and the estimate at the largest one."""
    dtype = fmt if fmt in FLOAT_FORMATS else args.dtype
    overhead = int(args.overhead_gib * memory.GiB)
    estimates = [memory.estimate(config, n, args.batch, fmt, dtype, args.kv_dtype, args.attention,
                                 not args.all_logits, overhead) for n in args.context]
    return [e.total / memory.GiB for e in estimates], estimates[-1]


def run(args) -> int:
    """args: the parsed flags of `minigemma vram` (declared, with their types, in cli/__init__.py)."""
    if args.train:                                     # memory/training_cli.py
        from .training_cli import run_train
        return run_train(args)
    overhead = int(args.overhead_gib * memory.GiB)
    name, config = load_config(args.model)
    too_long = [n for n in args.context if n > config.max_seq_len]
    if too_long:
        raise ValueError(f"--context {too_long[0]:,} exceeds the model's maximum of {config.max_seq_len:,} tokens")
    params = memory.parameter_count(config)
    print(f"{name}: {params:,} parameters; {config.num_layers} layers, {config.num_heads} query heads / "
          f"{config.num_kv_heads} KV head{'s' if config.num_kv_heads > 1 else ''}, head_dim {config.head_dim}, "
          f"vocab {config.vocab_size:,}")
    logits = "every position" if args.all_logits else "the last position only"
    kv = f"KV cache in {args.kv_dtype or args.dtype}"
    print(f"batch {args.batch} · activations in {args.dtype}, {kv} ({', '.join(FLOAT_FORMATS)} weights "
          f"compute in their own dtype) · {args.attention} attention · logits for {logits}")
    print(f"VRAM = weights + KV cache + peak temporary buffers + {overhead / memory.GiB:.2f} GiB assumed "
          f"CUDA context; figures in GiB (2^30 bytes)\n")
    largest = args.context[-1]
    header = ["format", "bits/weight", "weights"] + [f"{n:,} tok" for n in args.context]
    print("".join(f"{h:>12}" for h in header) + f"   smallest GPU at {largest:,} tokens")
    details = {}
    for fmt in args.formats:
        totals, last = row(config, fmt, args)
        weights = sum(last.weights.values())
        cells = [fmt, f"{8 * weights / params:.2f}", f"{weights / memory.GiB:.2f}"] + [f"{t:.2f}" for t in totals]
        gpu = smallest_gpu(last.total) or "none listed (over 80 GiB)"
        print("".join(f"{c:>12}" for c in cells) + f"   {gpu}")
        details[fmt] = last
    print_provenance(args.formats)
    show = args.dtype if args.dtype in details else args.formats[0]
    print_breakdown(details[show], show, largest)
    return 0


def print_breakdown(est: memory.Estimate, fmt: str, context: int) -> None:
    print(f"\n{fmt} at {context:,} tokens, in bytes:")
    parts = {"weights": sum(est.weights.values()), "KV cache": est.kv_cache,
             f"temporary buffers at the peak ({est.peak_at})": sum(est.buffers.values()), **est.overhead}
    width = max(map(len, parts)) + 2
    for label, nbytes in [*parts.items(), ("total", est.total)]:
        print(f"  {label:{width}s}{nbytes:>16,}  = {memory.describe(nbytes)}")


def print_provenance(formats: list[str]) -> None:
    """Which weight figures are allocations minigemma makes (checked by tests) and which are arithmetic only."""
    measured = [f for f in formats if f in MEASURED]
    if measured:
        print(f"\nmeasured: {', '.join(measured)} (minigemma runs these; its weight allocation equals the figure, "
              "tests/test_quant_memory.py)")
    for fmt in (f for f in formats if f in NOT_RUNNABLE):
        print(f"predicted only: {fmt}: {NOT_RUNNABLE[fmt]}")
