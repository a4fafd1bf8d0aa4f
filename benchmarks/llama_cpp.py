"""llama.cpp's batch-1 decode speed on the same GGUF file, as one more contender in benchmarks/quant_speed.py.

Optional: found as $LLAMA_BENCH or `llama-bench` on PATH, else the benchmark prints one line saying so. PyPI's
llama-cpp-python source distribution carries llama.cpp's source, so it builds here without other downloads:

    pip download --no-deps --no-binary :all: llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz
    cmake -S llama_cpp_python-*/vendor/llama.cpp -B llama-build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF
    cmake --build llama-build --target llama-bench -j2          # about 10 minutes on 2 cores
    export LLAMA_BENCH=$PWD/llama-build/bin/llama-bench

One call runs llama-bench once with 2 threads: `new_tokens` generated after `depth` positions already in the cache
(our decode benchmark's 16-token prompt). llama-bench times the generation only, as ours does; loading is untimed.
Not here: llama.cpp's prefill speed, other thread counts, GPUs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path


def find_llama_bench() -> Path | None:
    found = os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    return Path(found) if found and Path(found).is_file() else None


def version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return next((line for line in lines if line.startswith("version")), lines[0] if lines else "unknown")


def decode_seconds(binary: Path, gguf: Path, new_tokens: int, depth: int = 16, threads: int = 2) -> float:
    """Seconds llama.cpp takes to generate `new_tokens` (its own measurement, one repetition)."""
    command = [str(binary), "-m", str(gguf), "-t", str(threads), "-p", "0", "-n", str(new_tokens),
               "-d", str(depth), "-r", "1", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    (test,) = json.loads(done.stdout)
    return new_tokens / test["avg_ts"]
