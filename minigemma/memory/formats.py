"""Weight storage formats: how many bytes each tensor of a model takes in fp32, bf16, int8, int4, NF4 and GGUF.

A format is a *recipe*: it picks a storage type for each tensor (the embedding, each projection, each norm), and a
storage type stores weights in fixed blocks, so its true cost includes the scales kept beside the weights:

    storage type   block                                   bytes / block   bits per weight   source
    F32 / BF16     1 weight                                4 / 2           32 / 16
    Q8_0           32 weights: fp16 scale + 32 int8        34              8.5               ggml block_q8_0
    Q5_0 / Q5_1    32 weights: fp16 scale (+ fp16 min),    22 / 24         5.5 / 6.0         ggml block_q5_0/_1
                   32 high bits, 32 nibbles
    Q4_K           256: fp16 d, dmin, 12 B of 6-bit        144             4.5               ggml block_q4_K
                   sub-scales, 128 B of nibbles
    Q5_K           Q4_K + 32 B of high bits                176             5.5               ggml block_q5_K
    Q6_K           256: 128 B low + 64 B high bits,        210             6.5625            ggml block_q6_K
                   16 int8 sub-scales, fp16 d
    NF4            64: 32 B of 4-bit codes + fp32 absmax   36              4.5               bitsandbytes
    NF4 + DQ       absmax as int8 + an fp32 scale per      8452 / 16384    4.127             QLoRA paper, sec. 2
                   256 blocks (double quantization)
    INT4 g128      128: 64 B + fp16 scale + 4-bit zero     66.5            4.156             AWQ packing
    INT8 rows      a row of n int8 + one fp32 scale         n + 4           8 + 32/n          bitsandbytes LLM.int8
    minigemma's own layouts (minigemma.quant; what it allocates, checked by tests/test_quant_memory.py):
    int8 rows      n int8 + a scale in the compute dtype      n + 2 (bf16)    8 + 16/n          aten int8pack_mm
    int4 g         g/2 B of codes + scale and zero (dtype)    g/2 + 4 (bf16)  4 + 32/g          aten int4pack_mm
    int8 g         g int8 + the block's scale (native GGUF)   g + 2 / g + 4   8.5 / 10          Q8_0, Q5_0 / Q6_K

Recipes follow what the tools really do: bitsandbytes and AWQ/GPTQ quantize only the linear layers and keep the
embedding (Gemma's tied output head too) and the norms in 16 bits; llama.cpp keeps norms in F32, gives the tied
embedding Q6_K in Q4_K_M/Q5_K_M, bumps attn_v and ffn_down to Q6_K on some layers, and falls back to Q5_0/Q5_1/Q8_0
when a row length is not a multiple of 256 (src/llama-quant.cpp, llama_tensor_get_type).
Not here: per-tensor constants under 2 KiB (NF4 code tables), imatrix variants, IQ formats, GPTQ's g_idx.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Storage:
    """Weights stored in blocks of `block` along each row (or along the flattened tensor if `flat`), `block_bytes`
    each, plus `row_bytes` per row."""
    name: str
    block: int
    block_bytes: float
    row_bytes: int = 0
    flat: bool = False

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.block_bytes / self.block

    def nbytes(self, shape: tuple[int, ...]) -> int:
        cols = shape[-1]                                   # row length: the input dimension of a linear layer
        rows = math.prod(shape[:-1])
        if self.flat:                                      # bitsandbytes quantizes the flattened tensor
            cols, rows = rows * cols, 1
        return math.ceil(rows * math.ceil(cols / self.block) * self.block_bytes) + rows * self.row_bytes


F32, BF16, F16 = Storage("F32", 1, 4), Storage("BF16", 1, 2), Storage("F16", 1, 2)
Q8_0, Q5_0, Q5_1 = Storage("Q8_0", 32, 34), Storage("Q5_0", 32, 22), Storage("Q5_1", 32, 24)
Q4_K, Q5_K, Q6_K = Storage("Q4_K", 256, 144), Storage("Q5_K", 256, 176), Storage("Q6_K", 256, 210)
NF4 = Storage("NF4", 64, 36, flat=True)
NF4_DQ = Storage("NF4+DQ", 64 * 256, 256 * 33 + 4, flat=True)
INT4_G128 = Storage("INT4-g128", 128, 66.5)
INT8_ROWS = Storage("INT8+row scale", 1, 1, row_bytes=4)
MG_INT8_BF16 = Storage("mg int8 rows, bf16 scale", 1, 1, row_bytes=2)
MG_INT4_G32, MG_INT4_G128 = Storage("mg int4 g32, bf16 scale+zero", 32, 20), Storage("mg int4 g128", 128, 68)
NATIVE_GGUF = {"Q4_K": Storage("mg int4 g32, f32 scale+zero", 32, 24), "Q5_0": Storage("mg int8 g32, f16", 32, 34),
               "Q8_0": Storage("mg int8 g32, f16", 32, 34), "Q6_K": Storage("mg int8 g16, f32", 16, 20)}  # else F32
K_QUANT_FALLBACK = {"Q4_K": Q5_0, "Q5_K": Q5_1, "Q6_K": Q8_0}   # when a row does not split into 256-blocks


@dataclass(frozen=True)
class Tensor:
    """One weight tensor of a model: minigemma's name, its group, its shape and its layer (None outside blocks)."""
    name: str
    group: str                  # "embedding", "attention", "mlp" or "norms"
    shape: tuple[int, ...]
    layer: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def use_more_bits(layer: int, num_layers: int) -> bool:
    """llama.cpp's choice of layers that get more bits in *_K_M: the first and last eighth, and every third."""
    eighth = num_layers // 8
    return layer < eighth or layer >= 7 * num_layers // 8 or (layer - eighth) % 3 == 2


def gguf_storage(tensor: Tensor, num_layers: int, base: Storage, mixed: bool) -> Storage:
    """The storage llama.cpp's quantizer picks for a tensor in a file of type `base` (a *_K_M mix if `mixed`)."""
    if len(tensor.shape) == 1:
        return F32                                         # norms are never quantized
    chosen = base
    if tensor.group == "embedding":                        # tied: quantized like the output head
        chosen = Q8_0 if tensor.shape[-1] % base.block else (base if base in (Q8_0, Q6_K) else Q6_K)
    elif mixed and tensor.name.endswith(("v_proj.weight", "down_proj.weight")):
        chosen = Q6_K if use_more_bits(tensor.layer, num_layers) else base
    if tensor.shape[-1] % chosen.block:
        chosen = K_QUANT_FALLBACK.get(chosen.name, F16)
        chosen = chosen if tensor.shape[-1] % chosen.block == 0 else F16
    return chosen


def linear_only(linear: Storage, other: Storage = BF16):
    """Recipe of bitsandbytes / AWQ: linear layers in `linear`, embedding and norms kept in `other`."""
    return lambda tensor, num_layers: other if tensor.group in ("embedding", "norms") else linear


def minigemma_quantized(storage: Storage):
    """minigemma.quantize on a bfloat16 model: every linear and the tied embedding in `storage`, norms in bf16."""
    return lambda tensor, num_layers: BF16 if tensor.group == "norms" else storage


def native_gguf(base: Storage, mixed: bool = False):
    """A GGUF file of type `base` loaded with quantized=True: each block type kept in minigemma's matching layout
    (NATIVE_GGUF), anything else dequantized to float32 (the model computes in float32)."""
    return lambda tensor, num_layers: NATIVE_GGUF.get(gguf_storage(tensor, num_layers, base, mixed).name, F32)


def gguf(base: Storage, mixed: bool = False):
    return lambda tensor, num_layers: gguf_storage(tensor, num_layers, base, mixed)


WEIGHT_FORMATS = {
    "fp32": lambda tensor, num_layers: F32,
    "bf16": lambda tensor, num_layers: BF16,
    "fp16": lambda tensor, num_layers: F16,
    "int8": linear_only(INT8_ROWS),
    "q8_0": gguf(Q8_0),
    "q6_k": gguf(Q6_K),
    "q5_k_m": gguf(Q5_K, mixed=True),
    "q4_k_m": gguf(Q4_K, mixed=True),
    "nf4": linear_only(NF4),
    "nf4-dq": linear_only(NF4_DQ),
    "int4": linear_only(INT4_G128),
    "mg-int8": minigemma_quantized(MG_INT8_BF16),
    "mg-int4-g32": minigemma_quantized(MG_INT4_G32),
    "mg-int4-g128": minigemma_quantized(MG_INT4_G128),
    "mg-q4_k_m": native_gguf(Q4_K, mixed=True),
}
FORMAT_NOTES = {
    "fp32": "every tensor in float32",
    "bf16": "every tensor in bfloat16",
    "fp16": "every tensor in float16",
    "int8": "bitsandbytes LLM.int8: int8 + fp32 scale per row; embedding, norms bf16",
    "q8_0": "GGUF Q8_0 (8.5 bpw); norms F32",
    "q6_k": "GGUF Q6_K (6.5625 bpw); norms F32",
    "q5_k_m": "GGUF Q5_K_M: Q5_K, Q6_K embedding and some attn_v/ffn_down",
    "q4_k_m": "GGUF Q4_K_M: Q4_K, Q6_K embedding and some attn_v/ffn_down",
    "nf4": "bitsandbytes NF4, fp32 absmax per 64 (4.5 bpw); embedding, norms bf16",
    "nf4-dq": "NF4 with double quantization (4.127 bpw); embedding, norms bf16",
    "int4": "AWQ/GPTQ int4, group 128 (4.156 bpw); embedding, norms bf16",
    "mg-int8": "minigemma quantize int8: int8 + bf16 scale per row, tied embedding too; norms bf16",
    "mg-int4-g32": "minigemma quantize int4 g32: codes + bf16 scale and zero per 32, tied embedding too",
    "mg-int4-g128": "minigemma quantize int4 g128: codes + bf16 scale and zero per 128, tied embedding too",
    "mg-q4_k_m": "a Q4_K_M GGUF loaded quantized=True: Q4_K as int4 g32, Q5_0/Q8_0/Q6_K as int8 groups, f32",
}
# Which formats minigemma runs, so that their weight bytes are an allocation checked by a test; the rest are
# arithmetic, for the reason given.
MEASURED = ("fp32", "bf16", "fp16", "mg-int8", "mg-int4-g32", "mg-int4-g128", "mg-q4_k_m")
NOT_RUNNABLE = {
    "int8": "bitsandbytes layout (fp32 row scales, bf16 embedding); minigemma runs mg-int8",
    "int4": "AWQ packing (fp16 scale, 4-bit zero); minigemma runs mg-int4-g128",
    "nf4": "NF4 code book: not runnable in minigemma, arithmetic only",
    "nf4-dq": "NF4 + double quantization: not runnable in minigemma, arithmetic only",
    "q8_0": "a GGUF file's own bytes (llama.cpp); minigemma loads GGUF natively as mg-q4_k_m",
    "q6_k": "a GGUF file's own bytes (llama.cpp); minigemma keeps the 16-weight groups as int8 g16",
    "q5_k_m": "a GGUF file's own bytes (llama.cpp); Q5_K blocks are not kept quantized by minigemma",
    "q4_k_m": "a GGUF file's own bytes (llama.cpp); loaded natively by minigemma it is mg-q4_k_m",
}


def storage_for(tensor: Tensor, num_layers: int, fmt: str) -> Storage:
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; choose from {', '.join(WEIGHT_FORMATS)}")
    return WEIGHT_FORMATS[fmt](tensor, num_layers)

