"""What `minigemma info` says about a checkpoint: config, parameter count, dtypes, bytes in memory and on disk.

A Hugging Face checkpoint is described from config.json and the safetensors headers alone (no weight is read);
a .ckpt or .gguf is loaded, and its bytes are those of the loaded model.
Not here: printing (cli.py) or checking the values of the weights.
"""
from __future__ import annotations

from pathlib import Path

from ..memory.inference import parameter_count
from .checkpoint import find_weights, load_model, read_checkpoint
from .tensor_files import SAFETENSORS_DTYPES, read_safetensors_header


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def describe(path: Path) -> dict:
    kind, files = find_weights(path)
    if kind == "hf":
        config, _ = read_checkpoint(path)
        entries = [info for file in files for name, info in read_safetensors_header(file)[0].items()
                   if not name.endswith("lm_head.weight")]
        n_params = parameter_count(config)
        dtypes = sorted({dtype_name(SAFETENSORS_DTYPES[e["dtype"]]) for e in entries})
        n_bytes = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in entries)
    else:
        model = load_model(path)
        config, n_params = model.config, model.num_parameters()
        dtypes, n_bytes = [dtype_name(model.dtype)], sum(p.nbytes for p in model.parameters())
    return {"path": str(path), "config": config.to_dict(), "parameters": n_params, "dtype": ", ".join(dtypes),
            "bytes": n_bytes, "file_bytes": sum(f.stat().st_size for f in files), "kind": kind}
