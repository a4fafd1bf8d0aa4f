"""LoRA (minigemma.lora) on a random-weight Gemma 1, against itself (merge) and against PEFT on transformers.

Tolerance: float32 logits, rtol 1e-5 / atol 1e-5 as in tests/test_parity.py (logits ~1, the same maths in a
different order). Merging adds (alpha / r) B A into W once instead of computing it per token: a few float32 ulps.
Negative test: the alpha/r scaling replaced by alpha (a common mistake) moves the logits far outside it.
"""
import pytest
import torch
from torch import nn

import minigemma as mg
from minigemma.lora import LoRALinear, add_lora, load_adapter, lora_layers, merge_lora, save_adapter
from minigemma.weights.layouts import hf_to_minigemma_name
from reference import reference_model

F32 = dict(rtol=1e-5, atol=1e-5)
CFG = mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1)
TARGETS = ["q_proj", "v_proj", "down_proj"]


def base_pair():
    ref = reference_model(CFG, seed=5)
    model = mg.Gemma(CFG)
    state = {hf_to_minigemma_name(n, gemma3=False): t for n, t in ref.state_dict().items()}
    state.pop(None)
    model.load_state_dict(state)
    return ref, model.eval()


def trained_looking_(model, seed=0):
    """Non-zero B (a fresh adapter has B = 0 and changes nothing, which would hide every mistake)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.1)
    return model


IDS = torch.randint(0, CFG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(7))


def test_fresh_adapter_changes_nothing_and_only_adapters_train():
    _, model = base_pair()
    with torch.no_grad():
        before = model(IDS)
    add_lora(model, TARGETS, r=4, alpha=8)
    assert len(lora_layers(model)) == 3 * CFG.num_layers
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), before, rtol=0, atol=0)          # B = 0: exactly the base
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    trained_looking_(model)
    model(IDS).sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)   # base frozen
    assert all(p.grad.abs().max() > 0 for n, p in model.named_parameters() if n in trainable)


def test_merge_equals_unmerged():
    _, model = base_pair()
    trained_looking_(add_lora(model, TARGETS, r=4, alpha=8))
    with torch.no_grad():
        unmerged = model(IDS)
        merge_lora(model)
        merged = model(IDS)
    assert not lora_layers(model) and isinstance(model.layers[0].attn.q_proj, nn.Linear)
    torch.testing.assert_close(merged, unmerged, **F32)


def test_peft_loads_our_adapter_onto_transformers_and_agrees(tmp_path):
    from peft import PeftModel
    ref, model = base_pair()
    trained_looking_(add_lora(model, TARGETS, r=4, alpha=8))
    save_adapter(model, tmp_path)
    peft_model = PeftModel.from_pretrained(ref, tmp_path).eval()
    assert len([n for n, _ in peft_model.named_parameters() if "lora_A" in n]) == len(lora_layers(model))
    with torch.no_grad():
        ours, theirs = model(IDS), peft_model(IDS).logits
    torch.testing.assert_close(ours, theirs, **F32)
    for layer in lora_layers(model).values():                 # the classic mistake: scale by alpha, not alpha / r
        layer.scaling = layer.alpha
    with torch.no_grad():
        assert not torch.allclose(model(IDS), theirs, **F32)


def test_peft_agrees_when_only_some_layers_are_adapted(tmp_path):
    from peft import PeftModel
    ref, model = base_pair()
    trained_looking_(add_lora(model, ["q_proj"], r=2, alpha=2, layers=[1]))
    assert list(lora_layers(model)) == ["layers.1.attn.q_proj"]
    peft_model = PeftModel.from_pretrained(ref, save_adapter(model, tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), peft_model(IDS).logits, **F32)


def test_saved_adapter_loads_back_into_minigemma(tmp_path):
    _, model = base_pair()
    trained_looking_(add_lora(model, TARGETS, r=4, alpha=8))
    save_adapter(model, tmp_path)
    _, fresh = base_pair()
    load_adapter(fresh, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh(IDS), model(IDS), rtol=0, atol=0)


class TinyQuantLinear(nn.Module):
    """Linear-like but not nn.Linear: int8 weights with one scale per row (what a quantized base looks like)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = linear.weight.abs().amax(dim=1, keepdim=True) / 127
        self.register_buffer("qweight", (linear.weight / scale).round().to(torch.int8))
        self.register_buffer("scale", scale)

    def forward(self, x):
        return x @ (self.qweight.float() * self.scale).T


def test_adapter_wraps_any_linear_like_module():
    """The QLoRA shape: adapters over a module with in_features/out_features/forward and no float weight."""
    linear = nn.Linear(16, 8, bias=False)
    layer = LoRALinear(TinyQuantLinear(linear), r=2, alpha=4)
    x = torch.randn(3, 16)
    assert layer.lora_A.dtype == torch.float32 and layer.out_features == 8
    with torch.no_grad():
        layer.lora_B.fill_(0.1)
    expected = layer.base(x) + 2.0 * (x @ layer.lora_A.T) @ layer.lora_B.T    # alpha / r = 2
    torch.testing.assert_close(layer(x), expected, **F32)
    layer(x).sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad.abs().max() > 0


def test_bad_options_and_files_are_named(tmp_path):
    _, model = base_pair()
    with pytest.raises(ValueError, match="rank r must be a positive integer, got 0"):
        add_lora(model, TARGETS, r=0)
    with pytest.raises(ValueError, match=r"no module named \['qproj'\]"):
        add_lora(model, ["qproj"])
    with pytest.raises(ValueError, match="non-empty list"):
        add_lora(model, "q_proj")
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        load_adapter(model, tmp_path)
    with pytest.raises(ValueError, match="no LoRA adapters"):
        save_adapter(mg.Gemma(CFG), tmp_path)


# ---- exercise 12's checks name the classic mistakes ---------------------------------------------------------
def test_exercise_checks_pass_the_reference_and_name_each_mistake():
    import torch.nn.functional as F
    from minigemma.grading import check_lora_forward, check_next_token_loss

    def loss(logits, ids, pad_id=0, shift=True, ignore=True):
        pred, target = (logits[:, :-1], ids[:, 1:]) if shift else (logits, ids)
        target = target.masked_fill(target == pad_id, -100) if ignore else target
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=-100)

    assert check_next_token_loss.run(loss).passed
    assert "off by one" in check_next_token_loss.run(lambda l, i, p=0: loss(l, i, p, shift=False)).message
    assert "padding is scored" in check_next_token_loss.run(lambda l, i, p=0: loss(l, i, p, ignore=False)).message
    assert check_lora_forward.run(lambda x, W, A, B, a, r: x @ W.T + (a / r) * (x @ A.T) @ B.T).passed
    assert "alpha / r, not by alpha" in check_lora_forward.run(
        lambda x, W, A, B, a, r: x @ W.T + a * (x @ A.T) @ B.T).message
