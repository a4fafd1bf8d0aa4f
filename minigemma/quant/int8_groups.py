"""Int8 codes with one scale per *group* of a row (not per row): how GGUF's Q8_0, Q5_0 and Q6_K blocks are kept.

    W[n, k] = codes[n, k] * scales[n, k // group]           exact for those blocks (ggml_blocks.py)

PyTorch's int8 kernel scales whole rows, so a group-scaled matrix is multiplied one group column at a time:
y = sum_j (x[:, group j] @ codes[:, group j].T) * scales[:, j], each term one `_weight_int8pack_mm` call reading
int8 (codes are stored (groups, rows, group) so each column is contiguous). That pays off for the huge tied head
(262,144 rows); small matrices are dequantized to float32 and multiplied instead (fewer calls, same result).
Not here: a fused group-scaled int8 kernel (llama.cpp has one; PyTorch does not).
"""
import torch
from torch import nn
import torch.nn.functional as F

from .int8 import KERNEL_DTYPES

LOOP_MIN_ROWS = 16384          # below this, dequantize-then-matmul costs less than one kernel call per group
LOOP_MAX_TOKENS = 4            # above this (prefill with all logits), dequantizing once costs less


class Int8GroupLinear(nn.Module):
    def __init__(self, codes: torch.Tensor, scales: torch.Tensor):
        """codes (groups, rows, group) int8; scales (groups, rows), in the dtype that holds them exactly."""
        super().__init__()
        groups, self.out_features, self.group_size = codes.shape
        self.in_features = groups * self.group_size
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)

    @classmethod
    def from_rows(cls, codes: torch.Tensor, scales: torch.Tensor) -> "Int8GroupLinear":
        """codes (rows, cols) int8, scales (rows, cols // group): the row-major layout of a GGUF tensor."""
        rows, cols = codes.shape
        grouped = codes.view(rows, scales.shape[1], -1).transpose(0, 1).contiguous()
        return cls(grouped, scales.t().contiguous())

    def uses_kernel(self, x: torch.Tensor) -> bool:
        """The group loop: for big matrices and few tokens (its cost grows with tokens; dequantizing's does not)."""
        tokens = x.numel() // self.in_features
        return (self.out_features >= LOOP_MIN_ROWS and tokens <= LOOP_MAX_TOKENS and x.device.type == "cpu"
                and x.dtype in KERNEL_DTYPES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_kernel(x):
            wide = torch.promote_types(x.dtype, torch.float32)
            return F.linear(x.to(wide), self.dequantize(wide)).to(x.dtype)
        return self.group_loop(x.reshape(-1, self.in_features)).to(x.dtype).view(*x.shape[:-1], self.out_features)

    @torch.compiler.disable          # inductor cannot yet lower this kernel on a sliced input: run it eagerly
    def group_loop(self, flat: torch.Tensor) -> torch.Tensor:
        """flat (tokens, cols) -> float32 (tokens, rows): one int8 kernel call per group column."""
        out = torch.zeros(flat.shape[0], self.out_features, dtype=torch.float32, device=flat.device)
        for j in range(self.codes.shape[0]):
            part = flat[:, j * self.group_size:(j + 1) * self.group_size].contiguous()
            out += torch.ops.aten._weight_int8pack_mm(part, self.codes[j], self.scales[j].to(flat.dtype))
        return out

    def rows(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Dequantize only the rows `index` selects: index (...) -> (..., cols)."""
        codes = self.codes[:, index].movedim(0, -2).float()          # (..., groups, group)
        scales = self.scales[:, index].movedim(0, -1).float()        # (..., groups)
        return (codes * scales[..., None]).flatten(-2).to(dtype)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        w = self.codes.float() * self.scales.float()[..., None]      # (groups, rows, group)
        return w.transpose(0, 1).reshape(self.out_features, self.in_features).to(dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
                f"scales={self.scales.dtype}")
