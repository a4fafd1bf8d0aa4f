"""Memory: how many bytes Gemma inference needs, predicted from the config and checked by measurement.

Modules: inference (weights, KV cache, temporary buffers and the total; re-exported here, so
`minigemma.memory.estimate(config, ...)` works), formats (weight storage formats: fp32 ... GGUF k-quants),
measure (the torch.profiler measurement that checks the prediction), vram_cli (the `minigemma vram` command).
"""
from .inference import *  # noqa: F401,F403
