"""Weight-only quantization applied to a finished model: int8 rows, int4 groups, a quantized tied embedding,
an int8 KV cache; PyTorch's packed CPU kernels where they apply, plain dequantize-then-matmul elsewhere."""
from .int8 import Int8Linear, dequantize_int8_rows, quantize_int8_rows
from .int4 import Int4Linear, dequantize_int4_groups, quantize_int4_groups
from .embedding import QuantizedEmbedding
from .transform import quantize
from .kv_int8 import Int8KVCache, use_int8_kv_cache

__all__ = ["quantize", "quantize_int8_rows", "dequantize_int8_rows", "quantize_int4_groups",
           "dequantize_int4_groups", "Int8Linear", "Int4Linear", "QuantizedEmbedding", "Int8KVCache",
           "use_int8_kv_cache"]
