"""The one way every loader turns checkpoint tensors into a model: build it on the meta device (no memory), check
each tensor's name and shape against it *before* reading its bytes, check what was read is floating point and
finite, report what is missing or unexpected, then assign the tensors (no second copy) and move the model to its
device. (The loaders check the config's layer count and vocabulary against the file before calling this.)

    model = assemble_model(path, config, entries, dtype)
    entries: (name in the file, minigemma name or None, shape, read) with read() -> the tensor

Not here: the file formats (tensor_files.py, gguf/file.py) and the name maps (layouts.py, gguf/model.py).
"""
from __future__ import annotations

import torch

from ..gemma3 import model_class
from ..model import Gemma
from .guards import CheckpointError, check_weight


def assemble_model(path, config, entries, dtype: torch.dtype | None = None, device="cpu") -> Gemma:
    """A Gemma (or Gemma3, by the config's type) holding the checkpoint's tensors. dtype None keeps the dtype of
    the file's embedding for every tensor."""
    with torch.device("meta"):
        model = model_class(config)(config)
    expected = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    state = {}
    for file_name, name, shape, read in entries:
        if name not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {file_name} (shape {tuple(shape)})")
        if name in state:
            raise CheckpointError(f"{path}: tensor {file_name} appears twice")
        if tuple(shape) != expected[name]:
            raise CheckpointError(f"{path}: tensor {file_name} has shape {tuple(shape)}, but the config "
                                  f"expects {expected[name]}")
        tensor = read()
        check_weight(path, file_name, tensor)                         # int32 or NaN weights: wrong output, exit 0
        state[name] = tensor if dtype is None else tensor.to(dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensors missing from the checkpoint, e.g. "
                              f"{', '.join(missing[:3])} (minigemma names)")
    target = dtype or state["embed.weight"].dtype                     # one dtype for every tensor
    model.load_state_dict({name: t.to(target) for name, t in state.items()}, assign=True)
    return model.to(device).eval()
