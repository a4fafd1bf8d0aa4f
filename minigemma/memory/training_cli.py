"""`minigemma vram --train full|lora|qlora`: memory of one training step of Gemma 2B and 7B at 1k/4k/8k tokens.

Each cell is minigemma.memory.training.training_estimate: weights + gradients + AdamW states + saved activations
(gradient checkpointing on, as any long-context fine-tune uses) + the chunked loss, batch 1, bf16 compute,
LoRA r 8 on q_proj and v_proj, QLoRA's base in NF4. The 16-bytes-per-parameter rule of thumb is printed beside it.
Not here: the CUDA context (add ~0.5 GiB), allocator fragmentation, kernel workspaces.
"""
from __future__ import annotations

from ..config import GemmaConfig
from .inference import GiB, parameter_count
from .training import training_estimate

CONTEXTS = (1024, 4096, 8192)


def run_train(args) -> int:
    mode = args.train
    states = "in bf16 (the weights' dtype)" if mode == "full" else "in fp32, LoRA r 8 on q_proj, v_proj"
    print(f"training memory, mode {mode}: batch 1, bf16, gradient checkpointing, AdamW states {states}"
          + ("; base in NF4" if mode == "qlora" else "") + "; figures in GiB (2^30 bytes)\n")
    parts = ("weights", "gradients", "optimizer states", "activations", "loss")
    header = ["model", "tokens", *parts, "total", "16 B/param"]
    print("".join(f"{h:>18}" for h in header))
    for name, config in (("Gemma 2B", GemmaConfig.gemma_2b()), ("Gemma 7B", GemmaConfig.gemma_7b())):
        rule = 16 * parameter_count(config) / GiB
        for tokens in CONTEXTS:
            est = training_estimate(config, tokens, mode=mode)
            optimizer = est.parts["optimizer states"] + est.parts["trainable (adapters)"]
            values = [est.parts["weights"], est.parts["gradients"], optimizer, est.parts["activations"],
                      est.parts["loss"], est.total]
            cells = [name, f"{tokens}", *(f"{v / GiB:.2f}" for v in values), f"{rule:.2f}"]
            print("".join(f"{c:>18}" for c in cells))
    return 0
