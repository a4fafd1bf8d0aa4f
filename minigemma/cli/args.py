"""Argument types for the command line: argparse calls them, and prints "argument --flag: ..." with their message.

Not here: the flags themselves (cli/__init__.py and each command's module).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def whole_number(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text}")
        return value
    return parse


def real_number(low: float, high: float = math.inf, low_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else (
                f"{'>' if low_open else '>='} {low:g}")
            raise argparse.ArgumentTypeError(f"expected a finite number {interval}, got {text}")
        return value
    return parse


def token_counts(text: str) -> list[int]:
    """'1024,4k' -> [1024, 4096]."""
    counts = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1024 if part.endswith("k") else 1
        digits = part[:-1] if scale > 1 else part
        if not digits.isdigit() or int(digits) == 0:
            raise argparse.ArgumentTypeError(f"expected positive token counts like 1024,4k; got {part!r}")
        counts.append(int(digits) * scale)
    return counts


def output_file(text: str) -> Path:
    """A file we may write later: its folder exists and it is not itself a folder."""
    path = Path(text)
    if path.is_dir() or not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder" if path.is_dir()
                                         else f"folder {path.resolve().parent} does not exist")
    return path
