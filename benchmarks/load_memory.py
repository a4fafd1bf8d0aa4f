"""Loading a 2B-size bfloat16 checkpoint: wall time and peak resident memory, minigemma vs transformers.

    python -m benchmarks.load_memory                 # writes a random 2B-shaped checkpoint (~5 GB), loads it both ways
    python -m benchmarks.load_memory --gguf          # the Gemma 3 270M GGUF loaded natively (blocks kept), 3 times

Each load runs in a fresh Python process: baseline RSS is taken after the imports (`import torch, minigemma`, or
transformers' Gemma), then the peak-RSS record is reset, the model is loaded, every weight is read once (transformers memory-maps the file and
returns before reading it; the first forward pass would pay the rest), and the peak RSS (VmHWM) is read. "Extra peak" =
peak - baseline, reported as a multiple of the checkpoint's tensor bytes: 1.0 means the weights were never held
twice. (A loader that memory-maps the file is charged for the mapped pages it touched: they are resident too.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .compare import interleave, median, paired_ratio

SAFETENSORS_NAMES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def hf_shapes(config) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor names and shapes of a Gemma 1 checkpoint (tied: no lm_head)."""
    from transformers import GemmaForCausalLM

    from minigemma.reference.compare import hf_gemma_config
    with torch.device("meta"):
        model = GemmaForCausalLM(hf_gemma_config(config))
    return {name: tuple(t.shape) for name, t in model.state_dict().items() if name != "lm_head.weight"}


def write_checkpoint(directory: Path, config, dtype=torch.bfloat16) -> int:
    """Write config.json + model.safetensors with random weights, one tensor at a time; return the tensor bytes."""
    from minigemma.reference.compare import hf_gemma_config

    from .compare import fill_like_random_
    directory.mkdir(parents=True, exist_ok=True)
    hf_config = hf_gemma_config(config)
    hf_config.dtype = str(dtype).removeprefix("torch.")
    hf_config.save_pretrained(directory)
    shapes = hf_shapes(config)
    itemsize = dtype.itemsize
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        size = math.prod(shape) * itemsize
        header[name] = {"dtype": SAFETENSORS_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)                                   # keep the data 8-byte aligned
    pool = torch.randn(1_000_003, generator=torch.Generator().manual_seed(0)).to(dtype)
    with open(directory / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for name, shape in shapes.items():
            std = 0.3 if len(shape) == 1 else shape[1] ** -0.5
            tensor = fill_like_random_(torch.empty(shape, dtype=dtype), pool, std)
            f.write(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return offset


def rss_bytes() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def reset_peak_rss() -> bool:
    """Start the kernel's peak-RSS record afresh (Linux). A child process can inherit its parent's peak at fork,
    so getrusage alone would report the (large) benchmark process, not this load."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """VmHWM, the peak resident set since the last reset; getrusage's ru_maxrss where /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024          # Linux reports KiB


def measure(loader: str, directory: str) -> dict:
    """In this (fresh) process: load the checkpoint once; seconds, baseline and peak resident bytes."""
    if loader in ("minigemma", "gguf-native"):
        import minigemma as mg
        load = lambda: mg.load_model(directory, quantized=loader == "gguf-native")   # noqa: E731  (keep the dtype)
    else:
        from transformers import GemmaForCausalLM
        load = lambda: GemmaForCausalLM.from_pretrained(directory, dtype=torch.bfloat16)   # noqa: E731
    reset_peak_rss()
    baseline = rss_bytes()
    start = time.perf_counter()
    model = load()
    returned = time.perf_counter() - start
    touch_every_weight(model)
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    assert loader == "gguf-native" or next(model.parameters()).dtype == torch.bfloat16
    return {"seconds": seconds, "returned_after_s": returned, "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak, "extra_peak_bytes": peak - baseline}


@torch.no_grad()
def touch_every_weight(model) -> None:
    """Read every weight once, as the first forward pass will. A memory-mapping loader returns before reading
    anything from disk; without this its time and memory would be counted later, in the first generation."""
    for p in model.parameters():
        p.view(-1)[:: max(1, 4096 // p.element_size())].sum()    # one element per 4 KiB page faults it in


def measure_in_subprocess(loader: str, directory: Path, threads: int) -> dict:
    command = [sys.executable, "-m", "benchmarks.load_memory", "--measure", loader, str(directory)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"loading with {loader} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def loading_row(config, label: str, rounds: int, threads: int, workdir: Path | None = None) -> dict:
    """Write the checkpoint, then load it alternately with minigemma and transformers, `rounds` times each."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        directory = Path(tmp) / "checkpoint"
        tensor_bytes = write_checkpoint(directory, config)
        results = {"minigemma": [], "transformers": []}
        runs = {name: (lambda name=name: results[name].append(measure_in_subprocess(name, directory, threads))
                       or results[name][-1]["seconds"]) for name in results}
        seconds = interleave(runs, rounds, warmup=0, label="loading")
    row = {"benchmark": "loading", "model": label, "dtype": "bfloat16", "checkpoint_bytes": tensor_bytes,
           "contenders": {}, "ratio": {"transformers": paired_ratio(seconds["minigemma"], seconds["transformers"])}}
    for name, runs_ in results.items():
        extra = median([r["extra_peak_bytes"] for r in runs_])
        row["contenders"][name] = {"median_s": median(seconds[name]), "extra_peak_bytes": extra,
                                   "peak_over_checkpoint": extra / tensor_bytes, "runs": runs_}
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", nargs=2, metavar=("LOADER", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=18, help="decoder layers of the 2B-shaped checkpoint")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--gguf", action="store_true", help="measure the 270M GGUF loaded natively instead")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    if args.gguf:
        from minigemma.weights.gguf.model import default_gguf_path
        path = default_gguf_path()
        for _ in range(3):
            extra = measure_in_subprocess("gguf-native", path, args.threads)["extra_peak_bytes"]
            print(f"native GGUF load: peak {extra / 1e6:.0f} MB = {extra / path.stat().st_size:.3f} x the "
                  f"{path.stat().st_size / 1e6:.0f} MB file")
        return
    import minigemma as mg
    config = mg.GemmaConfig.gemma_2b().replace(num_layers=args.layers)
    row = loading_row(config, f"gemma-2b shape, {args.layers} layers", args.rounds, args.threads)
    for name, result in row["contenders"].items():
        print(f"{name:13s} {result['median_s']:6.1f} s   peak {result['extra_peak_bytes'] / 1e9:5.2f} GB = "
              f"{result['peak_over_checkpoint']:.3f} x the checkpoint ({row['checkpoint_bytes'] / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
