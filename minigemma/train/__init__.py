"""Training around the lesson modules: gradient checkpointing as a transform, the chat data set, the training
loop (AdamW, warm-up, clipping, tqdm) and the fine-tune command. The objective itself is minigemma/loss.py and
the adapters are minigemma/lora.py; their memory is minigemma/memory/training.py."""
from .checkpointing import enable_checkpointing, disable_checkpointing

__all__ = ["enable_checkpointing", "disable_checkpointing"]
