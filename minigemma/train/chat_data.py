"""The course's chat data set: Gemma turns, tokenized, with only the model's answer scored.

    <bos><start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n{answer}<end_of_turn>\n

notebooks/data/chat_finetune.jsonl holds one {"split", "user", "model"} object per line (course-written; "train"
and "heldout" rows). Labels are -100 on the prompt and on padding, so the loss teaches the answer and the
closing <end_of_turn> -- the token that tells a chat front-end to stop.
Not here: shuffling across epochs beyond a seeded permutation, packing several examples into one row.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..loss import IGNORE_INDEX

DATA_FILE = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "chat_finetune.jsonl"
USER_TURN = "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n"
ANSWER = "{}<end_of_turn>\n"


def read_examples(path=DATA_FILE, split: str = "train") -> list[dict]:
    """The rows of one split; a malformed line is named by file and line number."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            if row["split"] == split:
                rows.append({"user": str(row["user"]), "model": str(row["model"])})
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: expected a JSON object with split, user, model ({err})") from None
    if not rows:
        raise ValueError(f"{path}: no rows with split {split!r}")
    return rows


def encode_example(tokenizer, example: dict) -> tuple[list[int], list[int]]:
    """(ids, labels) of one conversation; labels are -100 over BOS and the user turn."""
    prompt = tokenizer.encode(USER_TURN.format(example["user"]))
    answer = tokenizer.encode(ANSWER.format(example["model"]), add_bos=False)
    return prompt + answer, [IGNORE_INDEX] * len(prompt) + answer


def collate(pairs, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a list of (ids, labels) to (batch, longest) tensors; padding is never scored."""
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
    for row, (x, y) in enumerate(pairs):
        ids[row, :len(x)], labels[row, :len(y)] = torch.tensor(x), torch.tensor(y)
    return ids, labels


def batches(tokenizer, examples, batch_size: int, steps: int, seed: int = 0):
    """`steps` batches drawn from a seeded permutation of the examples, reshuffled each pass."""
    encoded = [encode_example(tokenizer, e) for e in examples]
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order += torch.randperm(len(encoded), generator=gen).tolist()
        chosen, order = order[:batch_size], order[batch_size:]
        yield collate([encoded[i] for i in chosen])
