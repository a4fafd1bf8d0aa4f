"""LoRA: train a low-rank update next to frozen weights, as a transform on a finished model.

    y = base(x) + (alpha / r) * (x @ A.T) @ B.T        A: (r, in), random;  B: (out, r), zeros
    add_lora(model, ["q_proj", "v_proj"], r=8, alpha=16)   # every matching projection, base frozen
    merge_lora(model)                                       # W <- W + (alpha / r) B A; plain layers again
    save_adapter(model, folder); load_adapter(model, folder)   # PEFT's files and key names

B starts at zero, so the adapted model starts exactly equal to the base. Only A and B (r x (in + out) numbers
per projection instead of in x out) get gradients and optimizer states. The base can be any module with
in_features, out_features and forward (a quantized linear: that is QLoRA); merging needs a plain weight.
Saved like PEFT (`adapter_config.json` + `adapter_model.safetensors`, keys such as
`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so `peft` loads it onto transformers' Gemma.
Not here: dropout on the adapter input, DoRA, rsLoRA, bias training.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

PEFT_PARTS = {"attn": "self_attn", "mlp": "mlp"}       # minigemma module -> transformers' module name


class LoRALinear(nn.Module):
    """A frozen linear-like `base` plus a trainable rank-r update scaled by alpha / r."""

    def __init__(self, base: nn.Module, r: int, alpha: float):
        super().__init__()
        self.base, self.r, self.alpha = base, r, alpha
        self.scaling = alpha / r
        # float32 whatever the base (bf16, int8, ...), as PEFT does by default: AdamW updates of a few 1e-4
        # vanish in bf16's 8-bit mantissa
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=torch.float32))    # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=torch.float32))  # (out, r): starts at 0
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))      # the nn.Linear init, as PEFT uses

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x.to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T   # (..., r) -> (..., out)
        return self.base(x) + (self.scaling * update).to(x.dtype)

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / r) B A, in the base weight's dtype."""
        delta = self.scaling * (self.lora_B @ self.lora_A)                   # (out, in)
        return (self.base.weight.float() + delta.float()).to(self.base.weight.dtype)


def check_lora_options(targets, r, alpha) -> None:
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be positive, got {alpha!r}")
    if isinstance(targets, str) or not targets:
        raise ValueError(f"targets must be a non-empty list of projection names, e.g. ['q_proj', 'v_proj'], "
                         f"got {targets!r}")


def add_lora(model: nn.Module, targets=("q_proj", "v_proj"), r: int = 8, alpha: float = 16.0,
             layers=None) -> nn.Module:
    """Freeze every parameter of `model` and put a LoRALinear around each module whose name ends in a target
    (in every layer, or only in `layers`: adapting the last few layers keeps the backward pass short)."""
    check_lora_options(targets, r, alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    found = [(name, module) for name, module in model.named_modules()
             if name.split(".")[-1] in targets and not isinstance(module, LoRALinear)
             and (layers is None or int(name.split(".")[1]) in layers)]
    if not found:
        raise ValueError(f"no module named {list(targets)} in the model (minigemma's projections: q_proj, k_proj, "
                         "v_proj, o_proj, gate_proj, up_proj, down_proj)")
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, LoRALinear(module, r, alpha))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layer back: no extra cost at inference."""
    for name, layer in lora_layers(model).items():
        layer.base.weight.copy_(layer.merged_weight())
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer.base)
    return model


# ---- PEFT's file layout -------------------------------------------------------------------------------------
def peft_key(name: str, matrix: str) -> str:
    """'layers.0.attn.q_proj', 'lora_A' -> 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'."""
    layer, index, part, proj = name.split(".")
    return f"base_model.model.model.{layer}.{index}.{PEFT_PARTS[part]}.{proj}.{matrix}.weight"


def adapter_config(model: nn.Module) -> dict:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters: call add_lora first")
    first = next(iter(layers.values()))
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": first.r, "lora_alpha": first.alpha,
            "target_modules": sorted({name.split(".")[-1] for name in layers}), "lora_dropout": 0.0,
            "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
            "init_lora_weights": True, "inference_mode": True, "base_model_name_or_path": None,
            "layers_to_transform": sorted({int(name.split(".")[1]) for name in layers})}


def save_adapter(model: nn.Module, folder) -> Path:
    """Write adapter_config.json and adapter_model.safetensors (float32 as trained) into `folder`."""
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = adapter_config(model)
    tensors = {peft_key(name, m): getattr(layer, m).detach().contiguous()
               for name, layer in lora_layers(model).items() for m in ("lora_A", "lora_B")}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, folder / "adapter_model.safetensors")
    return folder


def load_adapter(model: nn.Module, folder) -> nn.Module:
    """Add adapters as described by a PEFT folder's adapter_config.json and fill them from its safetensors."""
    from safetensors.torch import load_file
    folder = Path(folder)
    config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    for file in (config_file, weights_file):
        if not file.exists():
            raise FileNotFoundError(f"{file} not found: a PEFT adapter folder holds adapter_config.json and "
                                    "adapter_model.safetensors")
    config = json.loads(config_file.read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{config_file}: peft_type is {config.get('peft_type')!r}, expected 'LORA'")
    add_lora(model, config["target_modules"], r=config["r"], alpha=config["lora_alpha"],
             layers=config.get("layers_to_transform"))
    tensors = load_file(weights_file)
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            for matrix in ("lora_A", "lora_B"):
                key = peft_key(name, matrix)
                if key not in tensors:
                    raise ValueError(f"{weights_file}: tensor {key} is missing")
                target = getattr(layer, matrix)
                if tensors[key].shape != target.shape:
                    raise ValueError(f"{weights_file}: {key} has shape {tuple(tensors[key].shape)}, "
                                     f"expected {tuple(target.shape)}")
                target.copy_(tensors[key])
    return model
