"""The compiled decode path (minigemma.compiled): static cache + one-token step under torch.compile = the eager path.

Tolerance: the compiled kernels fuse and reorder float32 sums (and the static step attends over masked, zero-weight
keys), so logits may differ by a few float32 ulps of their magnitude; torch.testing's float32 default
(rtol 1.3e-6, atol 1e-5) is that size. Greedy continuations must be the same tokens.
"""
import pytest
import torch

import minigemma as mg
from minigemma.compiled import CompiledDecoding, StaticKVCache
from reference import randomize_

STEPS = 10


def prompt(config, length=5, seed=0):
    ids = torch.randint(3, config.vocab_size, (1, length), generator=torch.Generator().manual_seed(seed))
    ids[0, 0] = 2
    return ids


@torch.no_grad()
def stepwise_logits(model, ids, steps=STEPS):
    """Prefill, then feed back the greedy token `steps` times: the logits of every decode step."""
    cache = model.new_cache(1, ids.shape[1] + steps)
    token = model(ids, cache=cache, last_only=True)[:, -1:].argmax(-1)
    out = []
    for _ in range(steps):
        logits = model(token, cache=cache, last_only=True)
        out.append(logits)
        token = logits[:, -1:].argmax(-1)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("config", [mg.GemmaConfig.tiny(), mg.GemmaConfig.tiny(num_kv_heads=2),
                                    mg.Gemma3Config.tiny(sliding_window=3)], ids=["mqa", "gqa", "gemma3-local"])
def test_static_step_eagerly_equals_the_lesson_cache(config):
    """Without compiling: attending over all max_len positions, unfilled ones masked, is the same maths."""
    model = randomize_(mg.gemma3.model_class(config)(config), seed=4)
    ids = prompt(config)
    torch.testing.assert_close(stepwise_logits(CompiledDecoding(model, 32, compile=False), ids),
                               stepwise_logits(model, ids))


def test_compiled_step_equals_eager_and_compiles_once():
    """One compile for the whole continuation and for a second generation; Gemma 3 masks and an int8 model."""
    config = mg.Gemma3Config.tiny(sliding_window=3)
    model = mg.quantize(randomize_(mg.Gemma3(config), seed=4), "int8")
    ids = prompt(config)
    fast = CompiledDecoding(model, max_len=32)
    eager = stepwise_logits(model, ids)
    assert len(set(eager.argmax(-1)[0].tolist())) > 3, "the model should not repeat one token"
    torch.testing.assert_close(stepwise_logits(fast, ids), eager)
    previous, torch._dynamo.config.error_on_recompile = torch._dynamo.config.error_on_recompile, True
    try:
        again = mg.generate(fast, prompt(config, seed=1), max_new_tokens=STEPS, stop_ids=())
    finally:
        torch._dynamo.config.error_on_recompile = previous
    assert again.tolist() == mg.generate(model, prompt(config, seed=1), max_new_tokens=STEPS, stop_ids=()).tolist()


def test_the_mask_hides_what_the_static_cache_has_not_filled():
    """Garbage in the unfilled positions changes nothing: they are masked, not merely zero."""
    config = mg.GemmaConfig.tiny()
    model = randomize_(mg.Gemma(config), seed=4)
    ids = prompt(config)
    static = CompiledDecoding(model, 32, compile=False)
    clean, dirty = static.new_cache(1, 32), static.new_cache(1, 32)
    dirty.keys.normal_(), dirty.values.normal_()
    with torch.no_grad():
        static(ids, cache=clean), static(ids, cache=dirty)
        torch.testing.assert_close(static(ids[:, :1], cache=dirty), static(ids[:, :1], cache=clean), rtol=0, atol=0)


def test_batches_and_sampling_through_the_static_cache_equal_the_lesson_cache():
    model = randomize_(mg.Gemma(mg.GemmaConfig.tiny(num_kv_heads=2)), seed=4)
    ids = torch.cat([prompt(model.config, seed=s) for s in range(3)])                # (3, 5)
    options = dict(max_new_tokens=8, temperature=0.8, top_k=20, seed=7, stop_ids=(5,))
    assert mg.generate(CompiledDecoding(model, 32, compile=False), ids, **options).tolist() == \
        mg.generate(model, ids, **options).tolist()


def test_each_instance_compiles_its_own_step():
    """torch.compile keeps at most 8 graphs per code object: instances sharing one would quietly fall back to
    eager from the 9th size or model on."""
    model = mg.Gemma(mg.GemmaConfig.tiny())
    first, second = CompiledDecoding(model, 16), CompiledDecoding(model, 24)
    assert first.step._torchdynamo_orig_callable.__code__ is not second.step._torchdynamo_orig_callable.__code__


def test_a_cache_the_step_cannot_write_is_a_clear_error():
    model = randomize_(mg.Gemma(mg.GemmaConfig.tiny()), seed=4)
    static = CompiledDecoding(model, 8, compile=False)
    ids = prompt(model.config, length=8)
    with torch.no_grad():
        full = static.new_cache(1, 8)
        static(ids, cache=full)
        with pytest.raises(ValueError, match="KV cache is full: 9 positions needed, 8 allocated"):
            static(ids[:, :1], cache=full)
        wide = static.new_cache(3, 8)
        static(ids[:, :4].expand(3, 4), cache=wide)
        with pytest.raises(ValueError, match="batch of 3 sequences, the input ids 1"):
            static(ids[:, :1], cache=wide)
        plain = model.new_cache(1, 8)
        model(ids[:, :4], cache=plain)
        with pytest.raises(ValueError, match="needs the cache CompiledDecoding.new_cache makes.*got KVCache"):
            static(ids[:, :1], cache=plain)
    from minigemma.quant.kv_int8 import use_int8_kv_cache
    with pytest.raises(ValueError, match="use_int8_kv_cache"):
        CompiledDecoding(use_int8_kv_cache(mg.Gemma(mg.GemmaConfig.tiny())), 8)


def test_bad_sizes_are_clear_errors():
    model = mg.Gemma(mg.GemmaConfig.tiny())
    with pytest.raises(ValueError, match=r"max_len must be an integer in \[1, 128\].*got 0"):
        CompiledDecoding(model, max_len=0)
    with pytest.raises(ValueError, match="needs 40 cache positions.*max_len=16"):
        mg.generate(CompiledDecoding(model, max_len=16, compile=False), prompt(model.config), max_new_tokens=36)
    assert isinstance(CompiledDecoding(model, 16, compile=False).new_cache(1, 8), StaticKVCache)
