"""Measured memory of minigemma inference against the prediction of minigemma.memory.

    python benchmarks/vram_gpu.py                        # CUDA: 2B and 7B, bf16, 1k/4k/8k, sdpa and eager
    python benchmarks/vram_gpu.py --device cpu --tiny    # smoke test on CPU with tiny configs (seconds)

For each model, attention implementation and context N: random weights (bf16 unless --dtype fp32), a KV cache of
N positions, a prefill of N - steps prompt tokens (logits for the last position only, as `generate` does), then
`steps` decode steps.
  measured  CUDA: torch.cuda.max_memory_allocated() over the whole run (weights included).
            CPU:  bytes of the weights + the peak of the profiler's allocation events
                  (minigemma.memory.measure.cpu_peak_bytes).
  predicted weights + KV cache + the largest step of prefill or decode (minigemma.memory.forward_phases); no
            CUDA-context overhead, which max_memory_allocated does not see either.
Rows go to a CSV (default benchmarks/vram_gpu.csv on CUDA) with the device name and the date; notebook 09 plots it.
Not here: nvidia-smi totals (CUDA context included) or quantized weights (minigemma runs float weights only).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import gc
import sys
from pathlib import Path

import torch

import minigemma as mg
from minigemma import memory
from minigemma.memory import measure as memory_measure

MODELS = {"2b": mg.GemmaConfig.gemma_2b, "7b": mg.GemmaConfig.gemma_7b}
TINY = {"2b-tiny": lambda: mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1, vocab_size=512),
        "7b-tiny": lambda: mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=4, vocab_size=512)}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
DEFAULT_CSV = Path(__file__).resolve().parent / "vram_gpu.csv"


def random_model(config: mg.GemmaConfig, dtype: torch.dtype, device: str) -> mg.Gemma:
    """Gemma with random weights made directly on `device` (built on meta, then materialized there)."""
    with torch.device("meta"):
        model = mg.Gemma(config).to(dtype)               # the dtype is chosen before any memory exists
    model = model.to_empty(device=device).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model


def predict(config, context: int, prompt: int, dtype: str, attention: str) -> dict:
    prefill = memory.forward_phases(config, prompt, 1, dtype, 0, attention)
    decode = memory.forward_phases(config, 1, 1, dtype, context - 1, attention)
    step, (phase, buffers) = max((("prefill", memory.peak_phase(prefill)), ("decode", memory.peak_phase(decode))),
                                 key=lambda item: item[1][1])
    weights = sum(memory.weight_bytes(config, dtype).values())
    kv = memory.kv_cache_bytes(config, context, 1, dtype)
    return {"predicted_weights": weights, "predicted_kv_cache": kv, "predicted_buffers": buffers,
            "peak_at": f"{step}: {phase}", "predicted_peak": weights + kv + buffers}


@torch.no_grad()
def run_inference(model, context: int, prompt: int, device: str) -> None:
    cache = model.new_cache(1, context)
    ids = torch.randint(0, model.config.vocab_size, (1, prompt), device=device)
    next_id = model(ids, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)     # (1, 1)
    for _ in range(context - prompt):
        next_id = model(next_id, cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)


def measure(config, context: int, prompt: int, dtype, attention: str, device: str) -> dict:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        model = random_model(config, dtype, device).set_attention(attention)
        weights = torch.cuda.memory_allocated() - before
        torch.cuda.reset_peak_memory_stats()
        run_inference(model, context, prompt, device)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        model = random_model(config, dtype, device).set_attention(attention)
        weights = sum(p.nbytes for p in model.parameters())
        peak = weights + memory_measure.cpu_peak_bytes(lambda: run_inference(model, context, prompt, device))
    del model
    return {"measured_weights": weights, "measured_peak": peak}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny configs instead of 2B/7B (for a CPU smoke test)")
    parser.add_argument("--context", help="comma-separated contexts (default 1024,4096,8192; tiny: 32,128)")
    parser.add_argument("--attention", default="sdpa,eager")
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=4, help="decode steps after the prefill")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (default benchmarks/vram_gpu.csv on CUDA)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu --tiny for a smoke test")
    models = TINY if args.tiny else MODELS
    contexts = [int(c) for c in (args.context or ("32,128" if args.tiny else "1024,4096,8192")).split(",")]
    if args.steps < 0 or min(contexts) <= args.steps:
        parser.error(f"--steps must be >= 0 and smaller than every context, got {args.steps}")
    out = args.out or (DEFAULT_CSV if args.device == "cuda" else None)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    for name, make_config in models.items():
        config = make_config()
        for attention in args.attention.split(","):
            for context in contexts:
                prompt = context - args.steps
                row = {"date": datetime.date.today().isoformat(), "device": device_name, "torch": torch.__version__,
                       "model": name, "dtype": args.dtype, "attention": attention, "context": context,
                       "prompt_tokens": prompt, "decode_steps": args.steps,
                       **predict(config, context, prompt, args.dtype, attention),
                       **measure(config, context, prompt, DTYPES[args.dtype], attention, args.device)}
                row["measured_over_predicted"] = round(row["measured_peak"] / row["predicted_peak"], 4)
                rows.append(row)
                print(f"{name:8s} {attention:5s} {context:>6,} tokens  predicted {row['predicted_peak']:>15,} B"
                      f"  measured {row['measured_peak']:>15,} B  ratio {row['measured_over_predicted']}"
                      f"  [{row['peak_at']}]", flush=True)
    if out:
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
