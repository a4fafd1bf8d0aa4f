"""Training-memory predictions (minigemma.memory.training) against what PyTorch really keeps, on tiny models.

Two views, both to the byte (no tolerance: every byte is accounted for, so any difference is a wrong formula):
* torch.profiler (memory.measure): the bytes alive between the phases of a step -- after the forward pass and
  loss, after backward, after the first AdamW step -- for full fine-tuning and LoRA, float32 and bfloat16, with
  and without gradient checkpointing. Transient peaks inside a phase are not predicted (module docstring).
* torch.autograd.graph.saved_tensors_hooks: what each block saves, tensor by tensor, for every choice of LoRA
  targets. The hooks do not see Python numbers autograd keeps (alpha / r), so those are left out of that view.
"""
import gc
import itertools

import pytest
import torch

import minigemma as mg
from minigemma.cli import main
from minigemma.lora import add_lora
from minigemma.loss import causal_lm_loss, final_hidden
from minigemma.memory.inference import parameter_count
from minigemma.memory.measure import cpu_peak_and_retained_bytes, cpu_peak_bytes, measured_saved_bytes
from minigemma.memory.training import (PROJECTIONS, PYTHON_SCALARS, Adapters, activation_bytes, block_plan,
                                       lora_parameter_count, loss_bytes,
                                       optimizer_state_bytes, saved_outside_blocks, saved_per_block,
                                       training_estimate)
from minigemma.train import enable_checkpointing

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CASES = [(kv, layers, seq) for kv in (4, 1) for layers in (1, 2) for seq in (8, 16)]


def tiny(kv, layers):
    return mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=kv).replace(num_layers=layers)


@pytest.mark.parametrize("kv, layers, seq", CASES, ids=[f"kv{k}-L{n}-S{s}" for k, n, s in CASES])
def test_saved_activations_equal_the_prediction(kv, layers, seq):
    cfg = tiny(kv, layers)
    model = mg.Gemma(cfg)
    ids = torch.randint(3, cfg.vocab_size, (2, seq), generator=torch.Generator().manual_seed(0))
    assert measured_saved_bytes(model, lambda: final_hidden(model, ids)) == activation_bytes(cfg, seq, 2)


def seen_by_hooks(cfg, seq, batch, dtype, adapters):
    """activation_bytes without the Python numbers autograd keeps out of the hooks' sight."""
    scalars = sum(saved_per_block(cfg, seq, batch, dtype, trained, grad_in, adapters.r).get(PYTHON_SCALARS, 0)
                  for trained, grad_in in block_plan(cfg, adapters))
    return activation_bytes(cfg, seq, batch, dtype, adapters=adapters) - scalars


TARGET_SETS = [t for k in (1, 2, 3) for t in itertools.combinations(PROJECTIONS, k)] + [PROJECTIONS]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("kv", [4, 1])
def test_lora_saved_activations_equal_the_prediction_for_every_target_choice(dtype, kv):
    cfg = tiny(kv, 2)
    ids = torch.randint(3, cfg.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    wrong = []
    for targets, layers in itertools.product(TARGET_SETS, (None, (1,))):
        model = add_lora(mg.Gemma(cfg).to(DTYPES[dtype]), list(targets), r=4, alpha=8, layers=layers)
        measured = measured_saved_bytes(model, lambda: final_hidden(model, ids))
        predicted = seen_by_hooks(cfg, 8, 2, dtype, Adapters(targets, 4, layers))
        if measured != predicted:
            wrong.append(f"{targets} layers={layers}: measured {measured}, predicted {predicted}")
    assert not wrong, "\n".join(wrong)


def retained(fn) -> int:
    """Net bytes fn() leaves allocated; earlier tests' garbage collected first, so no stray free counts."""
    gc.collect()
    return cpu_peak_and_retained_bytes(fn)[1]


PHASES = [(dtype, mode, ckpt) for dtype in DTYPES for mode in ("full", "lora") for ckpt in (False, True)]


@pytest.mark.parametrize("dtype, mode, checkpointing", PHASES,
                         ids=[f"{d}-{m}-{'ckpt' if c else 'plain'}" for d, m, c in PHASES])
def test_bytes_alive_after_each_phase_equal_the_profiler(dtype, mode, checkpointing):
    cfg, batch, seq = tiny(1, 3), 2, 16
    torch.manual_seed(0)
    model = mg.Gemma(cfg).to(DTYPES[dtype])
    adapters = None if mode == "full" else Adapters(("q_proj", "down_proj"), 4, (1, 2))
    if adapters:
        model = add_lora(model, list(adapters.targets), r=4, alpha=8, layers=adapters.layers)
    if checkpointing:
        enable_checkpointing(model)
    ids = torch.randint(3, cfg.vocab_size, (batch, seq))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    result = {}

    after_forward = retained(lambda: result.setdefault("loss", causal_lm_loss(model, ids)))
    kept = loss_bytes(cfg, batch * (seq - 1), batch * seq, dtype=dtype)
    kept.pop("one chunk of fp32 logits and their gradient")            # alive only inside the loss
    callers_ids = 8 * batch * seq if adapters is None else 0             # saved, but allocated before the step
    assert after_forward == (activation_bytes(cfg, seq, batch, dtype, checkpointing, adapters, recomputed=False)
                             - callers_ids + sum(kept.values()))

    after_backward = retained(result["loss"].backward)
    if adapters:
        gradients = 4 * lora_parameter_count(cfg, adapters.targets, adapters.r, adapters.layers)   # fp32 adapters
    else:
        gradients = parameter_count(cfg) * torch.finfo(DTYPES[dtype]).bits // 8
    assert after_forward + after_backward == gradients + 4              # the activations are gone; the loss stays

    after_step = retained(optimizer.step)
    step_counters = 4 * len(trainable)                                   # AdamW: one fp32 "step" per tensor
    states = optimizer_state_bytes(sum(p.numel() for p in trainable), dtype=dtype if adapters is None else "fp32")
    assert after_step == states + step_counters


def test_checkpointing_keeps_only_block_inputs():
    cfg = tiny(1, 2)
    model = enable_checkpointing(mg.Gemma(cfg))
    ids = torch.randint(3, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    kept = measured_saved_bytes(model, lambda: final_hidden(model, ids))
    recompute = sum(saved_per_block(cfg, 16, 2).values())          # exists again only inside backward
    rope = saved_outside_blocks(cfg, 16, 2)["RoPE cos, sin (fp32, shared)"]   # held by the checkpoint as plain
    assert kept + rope == activation_bytes(cfg, 16, 2, checkpointing=True) - recompute   # inputs: no hook sees them
    assert kept < activation_bytes(cfg, 16, 2) / 3                   # the point of checkpointing


def test_lora_and_adamw_states_equal_the_real_tensors():
    cfg = tiny(1, 2)
    model = add_lora(mg.Gemma(cfg), ["q_proj", "v_proj", "down_proj"], r=4, alpha=8)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == lora_parameter_count(cfg, ["q_proj", "v_proj", "down_proj"], 4)
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(3, cfg.vocab_size, (1, 8))
    causal_lm_loss(model, ids).backward()
    allocated = cpu_peak_bytes(optimizer.step)                      # first step: the states are born here
    states = sum(t.nbytes for s in optimizer.state.values() for k, t in s.items() if k != "step")
    assert states == optimizer_state_bytes(sum(p.numel() for p in trainable)) <= allocated


def test_estimates_have_the_expected_shape():
    cfg = mg.GemmaConfig.gemma_2b()
    full = training_estimate(cfg, 1024, mode="full", dtype="bf16", checkpointing=False)
    lora = training_estimate(cfg, 1024, mode="lora", dtype="bf16")
    qlora = training_estimate(cfg, 1024, mode="qlora", dtype="bf16")
    n = parameter_count(cfg)
    assert full.parts["optimizer states"] == 4 * n and full.parts["gradients"] == 2 * n    # bf16 AdamW states
    assert qlora.parts["weights"] < lora.parts["weights"] == full.parts["weights"]
    assert optimizer_state_bytes(4096, "adamw8bit") == 2 * 4096 + 2 * 4 * 2
    with pytest.raises(ValueError, match="mode must be 'full', 'lora' or 'qlora', got 'lor'"):
        training_estimate(cfg, 1024, mode="lor")
    with pytest.raises(ValueError, match="unknown LoRA targets \\['qproj'\\]"):
        lora_parameter_count(cfg, ["qproj"])


def test_vram_train_prints_2b_and_7b(capsys):
    assert main(["vram", "--train", "lora"]) == 0
    out = capsys.readouterr().out
    assert "Gemma 2B" in out and "Gemma 7B" in out and all(c in out for c in ("1024", "4096", "8192"))


def test_readme_shows_the_vram_train_output_as_it_is(capsys):
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert main(["vram", "--train", "lora"]) == 0
    assert "$ minigemma vram --train lora\n" + capsys.readouterr().out in readme, "paste the output anew"
