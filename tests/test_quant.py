"""minigemma.quant: int8 rows and int4 groups, their packed kernels against the plain fallback, the quantized tied
embedding, and a quantized model's logits against the float model's."""
import copy

import pytest
import torch
import torch.nn.functional as F

import minigemma as mg
from minigemma.quant import (Int4Linear, Int8Linear, dequantize_int4_groups, dequantize_int8_rows,
                             quantize_int4_groups, quantize_int8_rows)
from minigemma.quant.int4 import pack, unpack_rows

# Kernel vs fallback tolerances. bfloat16: both accumulate in float32 and round the output once to bfloat16, so
# they may differ by one bfloat16 ulp of the output (2**-7 relative); float32: only the summation order differs,
# ~K * 2**-24 of the sum of |x * w| terms (K = 512 here, terms ~1: 1e-4 absolute covers it 3x).
TOLERANCE = {torch.bfloat16: dict(rtol=2**-7, atol=2**-7), torch.float32: dict(rtol=1e-5, atol=1e-4)}


def random_weight(rows=256, cols=512):
    return torch.randn(rows, cols)


def test_int8_rows_round_trip_error_is_half_a_scale():
    w = random_weight()
    q, scale = quantize_int8_rows(w)
    assert q.dtype == torch.int8 and scale.shape == (256,) and q.abs().max() == 127
    err = (dequantize_int8_rows(q, scale) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()        # round to nearest: at most half a step (+ fp32 slack)


def test_int4_groups_round_trip_error_is_half_a_scale():
    w = random_weight()
    q, scales, zeros = quantize_int4_groups(w, 32)
    assert q.dtype == torch.uint8 and int(q.max()) <= 15 and scales.shape == zeros.shape == (256, 16)
    err = (dequantize_int4_groups(q, scales, zeros) - w).abs().view(256, 16, 32)
    # zero is rounded to float32 after scale: allow 1e-6 on top of the half step
    assert (err <= scales[..., None] / 2 + 1e-6).all()
    # negative: the convention is (q - 8) * scale + zero; reading q * scale + zero is 8 steps off everywhere
    wrong = (q.float().view(256, 16, 32) * scales[..., None] + zeros[..., None]).flatten(1)
    assert ((wrong - w).abs() > 7 * scales.repeat_interleave(32, 1)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_packed_kernel_matches_dequantized_fallback(kind, dtype):
    w, x = random_weight().to(dtype), torch.randn(5, 512).to(dtype)
    layer = Int8Linear(*quantize_int8_rows(w)) if kind == "int8" else Int4Linear(*quantize_int4_groups(w, 32), 32)
    if kind == "int4":
        assert layer.kernel_layout and layer.uses_kernel(x)
    kernel = layer(x)
    fallback = F.linear(x.float(), layer.dequantize(torch.float32)).to(dtype)
    torch.testing.assert_close(kernel, fallback, **TOLERANCE[dtype])
    # on another dtype than the scales' the fallback runs, and agrees as well
    torch.testing.assert_close(layer(x.double()).float(), fallback.float(), **TOLERANCE[dtype])


def test_int4_kernel_layout_rows_unpack_exactly_and_a_wrong_layout_is_caught():
    q = torch.randint(0, 16, (128, 96), dtype=torch.uint8)
    index = torch.tensor([[0, 17, 31, 32], [63, 64, 100, 127]])
    for kernel_layout in (True, False):
        assert torch.equal(unpack_rows(pack(q, kernel_layout), index, 96, kernel_layout), q[index])
    # negative: reading the kernel's blocked bytes as if they were plain rows gives other codes
    assert not torch.equal(unpack_rows(pack(q, True), index, 96, False), q[index])


def test_int4_shapes_the_kernel_cannot_take_fall_back_to_the_plain_layout():
    layer = Int4Linear(*quantize_int4_groups(random_weight(48, 64), 16), 16)    # 48 rows, group 16
    assert not layer.kernel_layout and not layer.uses_kernel(torch.randn(1, 64))
    torch.testing.assert_close(layer(torch.randn(3, 64)).shape, torch.Size([3, 48]))


def float_model(dtype=torch.float32):
    model = mg.Gemma(mg.GemmaConfig.tiny(vocab_size=256)).to(dtype).eval()
    with torch.no_grad():                       # std 0.02 logits are nearly uniform: use weights that decide
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.15)
    return model


def mean_kl(logits, reference):
    return F.kl_div(logits.float().log_softmax(-1), reference.float().log_softmax(-1), log_target=True,
                    reduction="none").sum(-1).mean().item()


# KL(float || quantized) per token on this tiny random model (measured, seed 0: int8 4e-4, int4 g32 5.5e-2; the
# linears alone 2.4e-4 / 3.7e-2). Bounds: ~7x and ~3x the measurement. A broken convention costs far more: the
# negative test below moves int4's zeros by the 8 steps of the other common convention and the KL passes 1.
KL_BOUND = {"int8": 3e-3, "int4": 1.5e-1}


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_model_logits_stay_close_to_float(scheme):
    model = float_model()
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        reference = model(ids)
        quantized = mg.quantize(copy.deepcopy(model), scheme, group_size=32)
        kl = mean_kl(quantized(ids), reference)
        linears_only = mean_kl(mg.quantize(copy.deepcopy(model), scheme, include_embedding=False)(ids), reference)
    assert 0 < kl < KL_BOUND[scheme] and 0 < linears_only <= kl * 1.5
    assert quantized.quantization == dict(scheme=scheme, group_size=32 if scheme == "int4" else None,
                                          include_embedding=True)


def test_a_wrong_zero_convention_breaks_the_kl_bound():
    model = float_model()
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        reference = model(ids)
        quantized = mg.quantize(copy.deepcopy(model), "int4")
        for layer in quantized.modules():
            if isinstance(layer, Int4Linear):                    # zero read as "value of code 0", not of code 8
                layer.scales_and_zeros[..., 1] -= 8 * layer.scales_and_zeros[..., 0]
        assert mean_kl(quantized(ids), reference) > 10 * KL_BOUND["int4"]


def test_quantized_embedding_dequantizes_only_the_gathered_rows(monkeypatch):
    model = mg.quantize(float_model(torch.bfloat16), "int4")
    table = model.embed.table
    ids = torch.tensor([[2, 70, 255]])
    expected = table.dequantize(torch.bfloat16)[ids] * mg.embedding.embedding_scale(64, torch.bfloat16)
    monkeypatch.setattr(type(table), "dequantize", lambda *a: pytest.fail("whole table dequantized"))
    assert torch.equal(model.embed(ids), expected)
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"


def test_generate_runs_on_a_quantized_model():
    model = mg.quantize(float_model(torch.bfloat16), "int8")
    out = mg.generate(model, [2, 5, 9], max_new_tokens=4)
    assert len(out) == 4


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="scheme must be one of int8, int4, got 'int3'"):
        mg.quantize(float_model(), "int3")
    with pytest.raises(ValueError, match="group_size 48 must divide every row length"):
        mg.quantize(float_model(), "int4", group_size=48)
    model = mg.quantize(float_model(), "int8")
    with pytest.raises(ValueError, match="already quantized"):
        mg.quantize(model, "int8")
