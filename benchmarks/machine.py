"""The machine the figures came from, and its memory bandwidth: the floor under every batch-1 decode figure.

At batch 1 each new token reads every weight once, so no implementation can beat
    seconds per token >= bytes of weights / memory bandwidth.
We measure the bandwidth the way a decode step uses memory: big tensors streamed through the cores, here a copy of
a tensor much larger than the caches (bytes read + bytes written per second), with the same torch thread count.
"""
from __future__ import annotations

import os
import platform
import time

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """CPU, cores, memory, torch version and threads: written next to every result."""
    import psutil
    import transformers
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "load_average_at_start": load_average()}


def memory_bandwidth(megabytes: int = 1024, repeats: int = 7) -> dict:
    """GB/s of a large float32 tensor copy (read + write counted), best and median of `repeats` copies.

    The best is used for the floor: it is the most the memory system was seen to deliver, so a decode figure
    divided by it is a fair (never flattering) fraction of what is possible."""
    numel = megabytes * 2**20 // 4
    source = torch.ones(numel)
    target = torch.zeros(numel)                                   # both touched: no page faults inside the timing
    rates = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        target.copy_(source)
        rates.append(2 * source.nbytes / (time.perf_counter() - start) / 1e9)
    rates = sorted(rates[1:])                                     # the first copy warms up
    return {"copy_gb_s_best": round(rates[-1], 2), "copy_gb_s_median": round(rates[len(rates) // 2], 2),
            "tensor_mb": megabytes, "repeats": repeats}
