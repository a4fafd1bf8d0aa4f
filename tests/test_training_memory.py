"""Training-memory predictions (minigemma.memory.training) against what PyTorch really keeps, on tiny models.

Counting rule for activations: every distinct storage autograd saves for the backward pass, once, parameters
excluded, observed with torch.autograd.graph.saved_tensors_hooks; predictions must equal it to the byte
(float32, sdpa attention). Optimizer states: the bytes of torch.optim.AdamW's state tensors after a step, and
the profiler (memory.measure.cpu_peak_bytes) sees at least those bytes allocated during the first step.
"""
import pytest
import torch

import minigemma as mg
from minigemma.cli import main
from minigemma.lora import add_lora
from minigemma.loss import causal_lm_loss, final_hidden
from minigemma.memory.inference import parameter_count
from minigemma.memory.measure import cpu_peak_bytes
from minigemma.memory.training import (activation_bytes, lora_parameter_count, measured_saved_bytes,
                                       optimizer_state_bytes, saved_outside_blocks, saved_per_block,
                                       training_estimate)
from minigemma.train import enable_checkpointing

CASES = [(kv, layers, seq) for kv in (4, 1) for layers in (1, 2) for seq in (8, 16)]


def tiny(kv, layers):
    return mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=kv).replace(num_layers=layers)


@pytest.mark.parametrize("kv, layers, seq", CASES, ids=[f"kv{k}-L{n}-S{s}" for k, n, s in CASES])
def test_saved_activations_equal_the_prediction(kv, layers, seq):
    cfg = tiny(kv, layers)
    model = mg.Gemma(cfg)
    ids = torch.randint(3, cfg.vocab_size, (2, seq), generator=torch.Generator().manual_seed(0))
    assert measured_saved_bytes(model, lambda: final_hidden(model, ids)) == activation_bytes(cfg, seq, 2)


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
    assert full.parts["optimizer states"] == 8 * n and full.parts["gradients"] == 2 * n
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
