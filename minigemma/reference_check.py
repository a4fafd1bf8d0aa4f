"""Checks of minigemma against the reference (transformers) on a *real* Gemma 1 checkpoint of your own.

Gemma 1 weights are licence-gated, so nothing here runs unless you point an environment variable at a checkpoint
you downloaded: MINIGEMMA_GEMMA_2B or MINIGEMMA_GEMMA_7B = a Hugging Face directory or a Kaggle .ckpt file.
Used by tests/test_real_weights.py and by the real-weight cells of notebooks 07 and 08.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VARS = {"2b": "MINIGEMMA_GEMMA_2B", "7b": "MINIGEMMA_GEMMA_7B"}


def real_checkpoint_path(size: str) -> Path | None:
    """The checkpoint named by MINIGEMMA_GEMMA_2B / _7B, or None when the variable is unset or empty."""
    value = os.environ.get(ENV_VARS[size.lower()], "").strip()
    return Path(value).expanduser() if value else None


def enable_hint(size: str) -> str:
    """The one line printed when real-weight checks are off."""
    var = ENV_VARS[size.lower()]
    return (f"Real-weight check skipped: set {var}=/path/to/gemma-{size.lower()} (Hugging Face directory or Kaggle "
            f".ckpt, see README 'Real Gemma 1 weights') to run it.")
