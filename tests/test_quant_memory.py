"""Allocation = prediction: for every weight format minigemma runs, the bytes its tensors really occupy equal
minigemma.memory's arithmetic exactly; likewise the int8 KV cache, whose error is measured here too."""
import pytest
import torch
import torch.nn.functional as F

import minigemma as mg
from minigemma.memory import inference as memory
from minigemma.memory.formats import MEASURED, NOT_RUNNABLE, WEIGHT_FORMATS
from minigemma.quant import Int8KVCache, use_int8_kv_cache

CONFIGS = {"gemma1": mg.GemmaConfig.tiny(vocab_size=256, intermediate_size=384),
           "gemma3": mg.Gemma3Config.tiny(vocab_size=256, num_kv_heads=2, num_layers=2,
                                         head_dim=32, layer_types=("local", "global"), sliding_window=8)}
RUNS = {"fp32": (torch.float32, None), "bf16": (torch.bfloat16, None), "fp16": (torch.float16, None),
        "mg-int8": (torch.bfloat16, dict(scheme="int8")),
        "mg-int4-g32": (torch.bfloat16, dict(scheme="int4", group_size=32)),
        "mg-int4-g128": (torch.bfloat16, dict(scheme="int4", group_size=128))}


def allocated_bytes(model) -> int:
    """Bytes of every distinct storage behind the model's parameters and buffers (views counted once, whole)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in [*model.parameters(), *model.buffers()]}
    return sum(storages.values())


def built(config, fmt):
    dtype, options = RUNS[fmt]
    model = (mg.Gemma3 if isinstance(config, mg.Gemma3Config) else mg.Gemma)(config).to(dtype)
    return mg.quantize(model, **options) if options else model


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("fmt", RUNS)
def test_weight_bytes_allocated_equal_the_prediction(fmt, name):
    config = CONFIGS[name].replace(hidden_size=128, head_dim=32) if fmt == "mg-int4-g128" else CONFIGS[name]
    predicted = sum(memory.weight_bytes(config, fmt).values())
    assert allocated_bytes(built(config, fmt)) == predicted


def test_every_format_is_either_measured_or_says_why_not():
    assert set(MEASURED) | set(NOT_RUNNABLE) == set(WEIGHT_FORMATS) and not set(MEASURED) & set(NOT_RUNNABLE)
    assert set(RUNS) | {"mg-q4_k_m"} == set(MEASURED)          # mg-q4_k_m: tests/test_quant_gguf.py


def test_a_prediction_for_another_layout_does_not_match():
    """Negative: bitsandbytes' int8 (fp32 row scales, bf16 embedding) is not what minigemma allocates."""
    config = CONFIGS["gemma1"]
    assert allocated_bytes(built(config, "mg-int8")) != sum(memory.weight_bytes(config, "int8").values())


def test_int8_kv_cache_allocates_its_prediction_and_a_wrong_formula_fails():
    config = CONFIGS["gemma3"]
    cache = Int8KVCache(config, batch_size=3, max_len=40)
    assert cache.nbytes == memory.kv_cache_bytes(config, 40, 3, "int8")
    assert cache.nbytes != memory.kv_cache_bytes(config, 40, 3, "fp16") // 2      # the scales are not free


def test_int8_kv_cache_error_is_half_a_step_and_logits_barely_move():
    config = CONFIGS["gemma3"]
    cache = Int8KVCache(config, 1, 16, dtype=torch.float32)
    k, v = torch.randn(1, 2, 5, 32), torch.randn(1, 2, 5, 32)
    k_out, v_out = cache.update(0, k, v)
    step = k.abs().amax(-1, keepdim=True) / 127                     # per position and head
    assert ((k_out - k).abs() <= step / 2 + 1e-7).all() and (v_out - v).abs().max() > 0
    model = mg.Gemma3(config).eval()
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        reference = torch.stack([model(ids[:, :n])[:, -1] for n in (10, 11, 12)], 1)   # no cache
        use_int8_kv_cache(model)
        cache = model.new_cache(1, 12)
        out = torch.cat([model(ids[:, :10], cache=cache, last_only=True), model(ids[:, 10:11], cache=cache),
                         model(ids[:, 11:12], cache=cache)], 1)
    assert isinstance(cache, Int8KVCache) and cache.length == 12
    kl = F.kl_div(out.log_softmax(-1), reference.log_softmax(-1), log_target=True, reduction="batchmean")
    # measured ~1e-7 on this random model: K/V errors of 1/254 of each vector's absmax barely move the logits;
    # 1e-4 is a bound a broken scale (e.g. one per layer instead of per position) would exceed
    assert 0 < kl.item() < 1e-4
