"""Weight-only quantization applied to a finished model: int8 rows, int4 groups, a quantized tied embedding,
an int8 KV cache, GGUF blocks kept as they are; PyTorch's packed CPU kernels where they apply, plain
dequantize-then-matmul elsewhere. Modules: int8, int4, int8_groups, embedding, transform, kv_int8, gguf_blocks,
gguf_native."""
import torch

from .int8 import Int8Linear, dequantize_int8_rows, quantize_int8_rows
from .int4 import Int4Linear, dequantize_int4_groups, quantize_int4_groups
from .embedding import QuantizedEmbedding
from .transform import quantize
from .kv_int8 import Int8KVCache, use_int8_kv_cache
from .int8_groups import Int8GroupLinear

__all__ = ["quantize", "quantize_int8_rows", "dequantize_int8_rows", "quantize_int4_groups",
           "dequantize_int4_groups", "Int8Linear", "Int4Linear", "QuantizedEmbedding", "Int8KVCache",
           "use_int8_kv_cache", "Int8GroupLinear", "load_gguf_quantized"]


def load_gguf_quantized(path, dtype: torch.dtype = torch.float32):
    """A Gemma 3 GGUF with its Q4_K/Q8_0/Q5_0/Q6_K blocks kept quantized (see gguf_native.py; needs `gguf`)."""
    from .gguf_native import load_gguf_quantized as load       # imports the optional `gguf` package
    return load(path, dtype)
