"""minigemma.quant.ggml_blocks decodes GGUF's Q8_0, Q5_0, Q4_K and Q6_K blocks exactly as the `gguf` package does:
on random bytes (every bit pattern of the packed scales and integers) and on the real Gemma 3 270M file. A decoder
with a classic mistake (swapped nibbles, a missing offset) is shown to fail the same comparison."""
from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize  # noqa: E402

from minigemma.quant import ggml_blocks as gb  # noqa: E402
from minigemma.weights.gguf.file import read_gguf  # noqa: E402
from minigemma.weights.gguf.model import default_gguf_path  # noqa: E402

QTYPES = {"Q8_0": gguf.GGMLQuantizationType.Q8_0, "Q5_0": gguf.GGMLQuantizationType.Q5_0,
          "Q4_K": gguf.GGMLQuantizationType.Q4_K, "Q6_K": gguf.GGMLQuantizationType.Q6_K}
F16_AT = {"Q8_0": [0], "Q5_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}        # byte offsets of the f16 scales


def random_blocks(kind: str, n: int = 64, seed: int = 0) -> np.ndarray:
    """n blocks of random bytes, with finite f16 scales (random bytes could spell inf or NaN there)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(n, gb.BLOCK_BYTES[kind]), dtype=np.uint8)
    for at in F16_AT[kind]:
        blocks[:, at:at + 2] = rng.uniform(-2, 2, size=(n, 1)).astype(np.float16).view(np.uint8)
    return blocks


def reference(kind: str, blocks: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(dequantize(blocks, QTYPES[kind]).reshape(blocks.shape[0], -1).astype(np.float32))


@pytest.mark.parametrize("kind", sorted(gb.DECODERS))
def test_random_blocks_decode_bit_for_bit_like_gguf(kind):
    blocks = random_blocks(kind)
    ours = gb.DECODERS[kind](torch.from_numpy(blocks))
    # Exact: both compute the same float32 products of f16 scales and small integers, in the same order.
    torch.testing.assert_close(ours, reference(kind, blocks), rtol=0, atol=0)


@pytest.fixture(scope="module")
def gemma3_file():
    path = default_gguf_path()
    if path is None:
        pytest.skip("the Gemma 3 270M GGUF (minigemma[gguf]) is not installed")
    return read_gguf(path)


@pytest.mark.parametrize("name", ["blk.0.attn_v.weight", "blk.0.attn_k.weight", "blk.0.attn_output.weight",
                                  "blk.0.ffn_down.weight"])
def test_real_270m_tensors_decode_like_gguf(gemma3_file, name):
    kind, _ = gb.tensor_blocks(gemma3_file, name)
    ours = gb.dequantize_tensor(gemma3_file, name)
    assert ours.shape == gemma3_file.tensors[name].shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, torch.from_numpy(gemma3_file.dequantize(name)), rtol=0, atol=0)


def test_the_270m_file_uses_all_four_formats(gemma3_file):
    kinds = {gb.GGML_TYPE_NAMES.get(info.ggml_type) for info in gemma3_file.tensors.values()}
    assert set(gb.DECODERS) <= kinds


def swapped_nibbles_q4_k(blocks: torch.Tensor) -> torch.Tensor:
    """Q4_K with the high nibble taken as the first 32 weights: a plausible mistake."""
    swapped = blocks.clone()
    swapped[:, 16:] = (blocks[:, 16:] >> 4) | (blocks[:, 16:] << 4)
    return gb.dequantize_q4_k(swapped)


def q6_k_without_offset(blocks: torch.Tensor) -> torch.Tensor:
    """Q6_K forgetting the -32: every weight shifted by 32 * d * scale."""
    return gb.dequantize_q6_k(blocks) + 32 * gb.f16(blocks[:, 208:210]) * torch.repeat_interleave(
        blocks[:, 192:208].contiguous().view(torch.int8).float(), 16, dim=1)


@pytest.mark.parametrize("kind, wrong", [("Q4_K", swapped_nibbles_q4_k), ("Q6_K", q6_k_without_offset)])
def test_the_comparison_catches_a_wrong_decoder(kind, wrong):
    blocks = random_blocks(kind, seed=1)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(wrong(torch.from_numpy(blocks)), reference(kind, blocks), rtol=0, atol=0)


def test_an_unsupported_tensor_type_is_named(gemma3_file):
    with pytest.raises(ValueError, match=r"output_norm\.weight has ggml type 0"):
        gb.tensor_blocks(gemma3_file, "output_norm.weight")
