"""An int8 KV cache: each cached key and value vector (one position of one head) stored as int8 with its own
absmax scale, so the cache takes ~half the bytes of bfloat16 (head_dim + 4 bytes per vector instead of 2 x head_dim).

    scale[l, b, h, t] = max_d |K[l, b, h, t, d]| / 127      float32, per layer, sequence, KV head and position
    K ~ int8 codes * scale                                   error per element <= scale / 2

`update` quantizes the new positions and returns every cached position dequantized to the compute dtype, so
attention is unchanged. `use_int8_kv_cache(model)` makes `model.new_cache` (hence `generate`) build one.
Not here: attention computed on int8 directly (KIVI, llama.cpp's q8_0 cache), per-channel key scales.
"""
import torch

SCALE_DTYPE = torch.float32


class Int8KVCache:
    def __init__(self, config, batch_size: int, max_len: int, dtype=torch.bfloat16, device="cpu"):
        if max_len > config.max_seq_len:
            raise ValueError(f"KV cache of {max_len} positions exceeds the model's context of "
                             f"{config.max_seq_len} tokens")
        shape = (config.num_layers, batch_size, config.num_kv_heads, max_len, config.head_dim)
        self.codes = {kind: torch.zeros(shape, dtype=torch.int8, device=device) for kind in ("k", "v")}
        self.scales = {kind: torch.zeros(shape[:-1], dtype=SCALE_DTYPE, device=device) for kind in ("k", "v")}
        self.dtype, self.max_len, self.length = dtype, max_len, 0

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (*self.codes.values(), *self.scales.values()))

    def store(self, kind: str, layer: int, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Quantize x (batch, kv_heads, seq, head_dim) into positions start:end; return positions :end, dequantized."""
        scale = (x.float().abs().amax(-1) / 127).clamp(min=torch.finfo(SCALE_DTYPE).tiny)   # (batch, kv_heads, seq)
        self.codes[kind][layer, :, :, start:end] = torch.round(x.float() / scale[..., None]).to(torch.int8)
        self.scales[kind][layer, :, :, start:end] = scale
        codes, scales = self.codes[kind][layer, :, :, :end], self.scales[kind][layer, :, :, :end]
        return (codes.float() * scales[..., None]).to(self.dtype)             # (batch, kv_heads, end, head_dim)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} positions needed, {self.max_len} allocated")
        return self.store("k", layer, k, start, end), self.store("v", layer, v, start, end)

    def advance(self, seq_len: int) -> None:
        self.length += seq_len


def use_int8_kv_cache(model):
    """Make `model.new_cache(batch, max_len)` return an Int8KVCache (in the model's compute dtype); returns model."""
    model.new_cache = lambda batch_size, max_len: Int8KVCache(model.config, batch_size, max_len, model.dtype,
                                                               model.device)
    return model
