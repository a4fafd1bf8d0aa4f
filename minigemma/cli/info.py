"""`minigemma info PATH`: a checkpoint's config, parameter count, dtype and bytes (weights/summary.py finds them).
"""
from __future__ import annotations

from pathlib import Path

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
    return 0
