"""Weight-only int4, group-wise asymmetric: every `group_size` weights of a row share one scale and one zero.

    scale = (max - min) / 15                   per group of a row, rounded to the compute dtype
    zero  = min + 8 * scale                     the weight the middle code 8 stands for (rounded likewise)
    q     = round((W - zero) / scale) + 8       in [0, 15], two codes per byte
    W ~ (q - 8) * scale + zero                  error per weight <= scale / 2 (before the dtype roundings)

That is the layout PyTorch's int4 CPU kernel reads: `aten._convert_weight_to_int4pack_for_cpu` packs the codes
into blocks of 64 rows, `aten._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_zeros)` multiplies
with scales and zeros stacked as (groups, rows, 2). The kernel wants rows in multiples of 64 and a group of 32, 64,
128 or 256; other shapes keep the codes in a plain row-major layout and, like other devices or dtypes, fall back
to plain PyTorch (dequantize to float32, `F.linear`, round the output once).
Not here: GPTQ/AWQ error-aware rounding (this is round-to-nearest), NF4 code books, activation quantization.
"""
import torch
from torch import nn
import torch.nn.functional as F

KERNEL_GROUPS = (32, 64, 128, 256)
KERNEL_ROW_BLOCK = 64


def quantize_int4_groups(w: torch.Tensor, group_size: int = 32, scale_dtype: torch.dtype | None = None):
    """w (rows, cols) -> q (rows, cols) uint8 codes 0..15, scales and zeros (rows, cols // group_size)."""
    rows, cols = w.shape
    if cols % group_size:
        raise ValueError(f"int4 groups of {group_size} must divide the row length {cols}")
    groups = w.float().view(rows, cols // group_size, group_size)        # (rows, groups, group_size)
    low, high = groups.amin(-1), groups.amax(-1)                          # (rows, groups)
    dtype = scale_dtype or w.dtype
    scales = ((high - low) / 15).clamp(min=torch.finfo(torch.float16).tiny).to(dtype)
    zeros = (low + 8 * scales.float()).to(dtype)
    codes = torch.round((groups - zeros.float()[..., None]) / scales.float()[..., None]) + 8
    return codes.clamp(0, 15).to(torch.uint8).view(rows, cols), scales, zeros


def dequantize_int4_groups(q, scales, zeros, dtype=torch.float32) -> torch.Tensor:
    """q (..., cols) codes, scales/zeros (..., groups) -> W (..., cols) in `dtype` (float32 maths, one rounding)."""
    group_size = q.shape[-1] // scales.shape[-1]
    codes = q.float().unflatten(-1, (scales.shape[-1], group_size))      # (..., groups, group_size)
    w = (codes - 8) * scales.float()[..., None] + zeros.float()[..., None]
    return w.flatten(-2).to(dtype)


def kernel_fits(rows: int, group_size: int) -> bool:
    return rows % KERNEL_ROW_BLOCK == 0 and group_size in KERNEL_GROUPS


def pack(q: torch.Tensor, kernel_layout: bool) -> torch.Tensor:
    """Codes (rows, cols) -> (rows, cols // 2) uint8: the kernel's blocked layout, or plain (even col low nibble)."""
    if kernel_layout:
        return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_rows(packed: torch.Tensor, index: torch.Tensor, cols: int, kernel_layout: bool) -> torch.Tensor:
    """Codes of the rows `index` (...) -> (..., cols) uint8, from either layout, without unpacking other rows.

    The kernel layout stores 64 rows as (2 halves, cols, 16 bytes); row n = 64 b + 32 h + 16 nibble + r."""
    if not kernel_layout:
        byte = packed[index]                                              # (..., cols // 2)
        return torch.stack([byte & 15, byte >> 4], dim=-1).flatten(-2)
    blocks = packed.view(-1, 2, cols, 16)                                 # (rows / 64, halves, cols, 16)
    byte = blocks[index // 64, (index % 64) // 32, :, index % 16]         # (..., cols)
    high = ((index % 32) // 16).bool()[..., None]
    return torch.where(high, byte >> 4, byte & 15)


class Int4Linear(nn.Module):
    """A bias-free nn.Linear stored as packed int4 codes + (groups, rows, 2) scales and zeros."""

    def __init__(self, q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.group_size = group_size
        self.kernel_layout = kernel_fits(self.out_features, group_size)
        self.register_buffer("packed", pack(q, self.kernel_layout))               # (out, in // 2) uint8
        self.register_buffer("scales_and_zeros", torch.stack([scales, zeros], -1).transpose(0, 1).contiguous())

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 32) -> "Int4Linear":
        if linear.bias is not None:
            raise ValueError("Int4Linear quantizes bias-free linears only (Gemma has no biases)")
        return cls(*quantize_int4_groups(linear.weight.detach(), group_size), group_size)

    def uses_kernel(self, x: torch.Tensor) -> bool:
        return (self.kernel_layout and x.device.type == "cpu" and x.dtype == self.scales_and_zeros.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_kernel(x):
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(x.reshape(-1, self.in_features), self.packed,
                                                            self.group_size, self.scales_and_zeros)
            return out.view(*x.shape[:-1], self.out_features)
        wide = torch.promote_types(x.dtype, torch.float32)          # as the kernel: weights not rounded to bf16
        return F.linear(x.to(wide), self.dequantize(wide)).to(x.dtype)

    def rows(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Dequantize only the rows `index` selects (an embedding lookup): index (...) -> (..., in)."""
        q = unpack_rows(self.packed, index, self.in_features, self.kernel_layout)
        scales, zeros = self.scales_and_zeros[:, index].movedim(0, -2).unbind(-1)   # (..., groups) each
        return dequantize_int4_groups(q, scales, zeros, dtype)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        return self.rows(torch.arange(self.out_features, device=self.packed.device), dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"layout={'cpu kernel' if self.kernel_layout else 'plain'}")
