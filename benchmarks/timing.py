"""Interleaved timing: run the contenders in turn (A B C A B C ...) so that a slow patch of a shared, noisy machine
hits every contender alike, then report medians and the median of the per-round ratios."""
from __future__ import annotations

import statistics
from typing import Callable

from tqdm import tqdm


def interleave(contenders: dict[str, Callable[[], float]], rounds: int, warmup: int = 1,
               label: str = "") -> dict[str, list[float]]:
    """Call each contender once per round, in the same order every round; return {name: [seconds, ...]}.

    A contender is a function that does its own untimed setup, times the part that matters and returns the seconds.
    The `warmup` rounds run first and are discarded (lazy initialisation, first-touch page faults, allocator)."""
    names = list(contenders)
    seconds = {name: [] for name in names}
    steps = [(r, name) for r in range(warmup + rounds) for name in names]
    for r, name in tqdm(steps, desc=label or "timing", leave=False, unit="run"):
        elapsed = contenders[name]()
        if r >= warmup:
            seconds[name].append(elapsed)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over rounds of (our speed ÷ their speed) = their seconds ÷ our seconds, round by round."""
    return statistics.median(t / o for o, t in zip(ours, theirs))


def summarize(seconds: dict[str, list[float]], work: float, ours: str = "minigemma") -> dict:
    """Per contender: median seconds and median rate (`work` units per second); ratios of `ours` to each other."""
    out = {"contenders": {}, "ratio": {}}
    for name, values in seconds.items():
        out["contenders"][name] = {"median_s": median(values), "rate": work / median(values),
                                   "runs_s": [round(v, 6) for v in values]}
    for name in seconds:
        if name != ours and ours in seconds:
            out["ratio"][name] = paired_ratio(seconds[ours], seconds[name])
    return out
