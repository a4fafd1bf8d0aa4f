"""Weights: reading official checkpoints into `minigemma.Gemma`, every tensor checked by name and shape.

Modules: checkpoint (find the files, read the config, `load_model`), layouts (the name maps and config.json readers
of Hugging Face and gemma_pytorch / Kaggle checkpoints), tensor_files (the safetensors reader and weights-only pickle
loading), guards (checks against hostile files: paths, sizes, nesting, config against tensors, `CheckpointError`),
gguf/ (llama.cpp's GGUF: file reader, Gemma 3 loader, tokenizer).
Not here: the model itself (the lesson modules one folder up).
"""
from .checkpoint import find_weights, load_model, read_checkpoint  # noqa: F401
from .tensor_files import CheckpointError  # noqa: F401
