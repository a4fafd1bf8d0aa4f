"""The KV cache: keys and values of every past position, kept so each new token costs one position of work.

Without a cache, generating token n re-runs the whole prefix (O(n) work per token, O(n^2) in total). With it, the
model runs only the new token(s), appends their K/V here, and attends over everything stored. The cache is
pre-allocated once (2 * layers * batch * kv_heads * max_len * head_dim elements), so its size is known up front.
Positions: the next token's RoPE position is the number of tokens already cached (`positions_for`).
Not here: paging, eviction or a rolling window (local layers keep full history and are masked instead).
"""
import torch


def cache_shape(config, batch_size: int, max_len: int) -> tuple[int, ...]:
    """(layers, batch, kv_heads, max_len, head_dim): the shape of the K (and of the V) buffer."""
    if max_len > config.max_seq_len:
        raise ValueError(f"KV cache of {max_len} positions exceeds the model's context of "
                         f"{config.max_seq_len} tokens")
    return (config.num_layers, batch_size, config.num_kv_heads, max_len, config.head_dim)


class KVCache:
    def __init__(self, config, batch_size: int, max_len: int, dtype=torch.float32, device="cpu"):
        shape = cache_shape(config, batch_size, max_len)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.layer_keys = [self.keys[layer] for layer in range(config.num_layers)]      # per-layer views,
        self.layer_values = [self.values[layer] for layer in range(config.num_layers)]  # indexed once
        self.max_len = max_len
        self.length = 0                  # positions filled so far

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (batch, kv_heads, seq, head_dim) after the cached ones; return all of them so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} positions needed, {self.max_len} allocated")
        keys, values = self.layer_keys[layer], self.layer_values[layer]   # (batch, kv_heads, max_len, head_dim)
        keys[:, :, start:end] = k                                         # views of the big buffers: no copy
        values[:, :, start:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def advance(self, seq_len: int) -> None:
        """Called once per forward pass, after every layer has stored its K/V."""
        self.length += seq_len


def positions_for(cache: KVCache | None, seq_len: int, device="cpu") -> torch.Tensor:
    """RoPE positions of the `seq_len` new tokens: they follow the cached ones."""
    start = 0 if cache is None else cache.length
    return torch.arange(start, start + seq_len, device=device)
