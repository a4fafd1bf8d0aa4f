"""An optional compiled decode path: a fixed-size KV cache and a one-token step under torch.compile (decode)."""
from .decode import CompiledDecoding, StaticKVCache, decode_step

__all__ = ["CompiledDecoding", "StaticKVCache", "decode_step"]
