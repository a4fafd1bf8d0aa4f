"""Weight-only int8: each output row of a linear layer stored as int8 with one absmax scale.

    scale[n] = max_k |W[n, k]| / 127          (rounded to the compute dtype: the kernel wants it there)
    q[n, k]  = round(W[n, k] / scale[n])       in [-127, 127]
    W ~ q * scale[:, None]                      error per weight <= scale / 2

`Int8Linear` multiplies by the int8 weights directly with PyTorch's packed CPU kernel
`aten._weight_int8pack_mm(x, q, scale)` (it reads 1 byte per weight instead of 2: batch-1 decoding is bound by
those bytes). Where that kernel does not apply (another device, or activations in a dtype other than the scale's)
it falls back to plain PyTorch: dequantize to float32, `F.linear` in float32, round the output once (rounding the
dequantized weights to bfloat16 instead would add an error the kernel does not make).
Not here: activation quantization (LLM.int8's outlier split, SmoothQuant), calibration, int8 KV caches (kv_int8.py).
"""
import torch
from torch import nn
import torch.nn.functional as F

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def quantize_int8_rows(w: torch.Tensor, scale_dtype: torch.dtype | None = None):
    """w (rows, cols) float -> q (rows, cols) int8 and scale (rows,) in `scale_dtype` (default: w's dtype).

    The scale is rounded to its dtype *before* quantizing, so q * scale reproduces w as closely as that stored
    scale allows (rounding afterwards would shift every weight of the row by the scale's rounding error)."""
    if w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"quantize_int8_rows expects a 2-D float weight, got {w.dtype} {tuple(w.shape)}")
    absmax = w.float().abs().amax(dim=1)                                  # (rows,)
    scale = (absmax / 127).clamp(min=torch.finfo(torch.float16).tiny).to(scale_dtype or w.dtype)  # all-zero rows
    q = torch.round(w.float() / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)   # (rows, cols)
    return q, scale


def dequantize_int8_rows(q: torch.Tensor, scale: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """q (rows, cols) int8, scale (rows,) -> W (rows, cols) in `dtype`, computed in float32 then rounded once."""
    return (q.float() * scale.float()[:, None]).to(dtype)


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (..., cols) @ (q * scale).T -> (..., rows): the packed kernel where it applies, else dequantize + linear."""
    if uses_int8_kernel(x, scale):
        out = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), q, scale)   # (tokens, rows)
        return out.view(*x.shape[:-1], q.shape[0])
    wide = torch.promote_types(x.dtype, torch.float32)              # dequantized weights are not rounded to bf16
    return F.linear(x.to(wide), dequantize_int8_rows(q, scale, wide)).to(x.dtype)


def uses_int8_kernel(x: torch.Tensor, scale: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in KERNEL_DTYPES and x.dtype == scale.dtype


class Int8Linear(nn.Module):
    """A bias-free nn.Linear whose weight is stored as int8 rows + scales (buffers: they are not trained)."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = q.shape
        self.register_buffer("weight_q", q)         # (out, in) int8
        self.register_buffer("scale", scale)        # (out,) in the compute dtype

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        if linear.bias is not None:
            raise ValueError("Int8Linear quantizes bias-free linears only (Gemma has no biases)")
        return cls(*quantize_int8_rows(linear.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_matmul(x, self.weight_q, self.scale)

    def rows(self, index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Dequantize only the rows `index` selects (an embedding lookup): index (...) -> (..., in)."""
        return (self.weight_q[index].float() * self.scale[index].float()[..., None]).to(dtype)

    def dequantize(self, dtype=torch.float32) -> torch.Tensor:
        return dequantize_int8_rows(self.weight_q, self.scale, dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale.dtype}"
