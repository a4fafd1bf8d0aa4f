"""`minigemma info PATH`: a checkpoint's config, parameter count, dtype and bytes (weights/summary.py finds them);
for a GGUF also the block format each tensor is stored in."""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..weights.checkpoint import find_weights
from ..weights.gguf.file import quant_type, read_gguf
from ..weights.summary import describe


def add_arguments(sub) -> None:
    info = sub.add_parser("info", help="describe a checkpoint")
    info.add_argument("path")
    info.set_defaults(func=run)


def run(args) -> int:
    info = describe(Path(args.path))
    print(f"checkpoint  {info['path']}")
    for key, value in info["config"].items():
        print(f"  {key:22s}{value}")
    print(f"parameters  {info['parameters']:,}")
    print(f"dtype       {info['dtype']}" + ("" if info["kind"] == "hf" else " (as loaded)"))
    print(f"bytes       {info['bytes']:,} ({info['bytes'] / 2**30:.2f} GiB)"
          + ("" if info["kind"] == "hf" else f" in memory as {info['dtype']}"))
    print(f"file bytes  {info['file_bytes']:,} ({info['file_bytes'] / 2**30:.2f} GiB)")
    if info["kind"] == "gguf":
        print_stored_formats(Path(args.path))
    return 0


def print_stored_formats(path: Path) -> None:
    """A GGUF's tensors grouped by the block format they are stored in, with a few names of each."""
    gguf = read_gguf(find_weights(path)[1][0])
    groups = {}
    for name, t in gguf.tensors.items():
        groups.setdefault(quant_type(t).name, []).append(t)
    print(f"\n{'stored as':10s}{'tensors':>8s}{'parameters':>14s}{'bytes':>14s}{'bits/weight':>13s}  e.g.")
    for kind, tensors in sorted(groups.items(), key=lambda kv: -sum(t.nbytes for t in kv[1])):
        params, nbytes = sum(math.prod(t.shape) for t in tensors), sum(t.nbytes for t in tensors)
        names = ", ".join(sorted({re.sub(r"blk\.\d+\.", "", t.name) for t in tensors})[:3])
        print(f"{kind:10s}{len(tensors):8d}{params:14,}{nbytes:14,}{8 * nbytes / params:13.2f}  {names}")
