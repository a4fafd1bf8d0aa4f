"""Check for exercise 08's last task, the generation loop: greedy decoding with the learner's KV cache, stopping at
a stop id. The learner's loop drives a tiny Gemma built in their kernel (the notebook's TinyGemma, given the
weights of a reference model); the expected ids come from minigemma.generate.generate on the reference, here.
The model counts the ids each call ran, so a loop that re-runs the whole sequence (no cache) is named as such.
"""
import random

import torch

from ...generate import generate as reference_generate
from ..compare import fresh_generator
from ..core import Mismatch, check, require_callable
from .block import tiny_model


def run_learner(generate, model, prompt, max_new_tokens, stop_ids) -> tuple[list, list]:
    model.fed = []
    out = generate(model, list(prompt), max_new_tokens, list(stop_ids))
    if isinstance(out, torch.Tensor):
        out = out.flatten().tolist()
    if not isinstance(out, (list, tuple)) or not all(isinstance(i, int) for i in out):
        raise Mismatch(f"generate should return the new ids as a list of ints, got {type(out).__name__}.")
    return list(out), list(model.fed)


def judge_cache_use(fed: list, prompt_len: int, steps: int) -> None:
    expected = [prompt_len] + [1] * (steps - 1)
    if fed == expected:
        return
    if len(fed) == steps and fed == [prompt_len + i for i in range(steps)]:
        raise Mismatch("each step re-ran the whole sequence; with the cache, run the prompt once, then only the "
                       "token just generated.")
    raise Mismatch(f"the model should run the prompt once, then one new id per step ({expected}); your loop "
                   f"ran {fed}.")


def judge_ids(out: list, expected: list, what: str) -> None:
    if out == expected:
        return
    if out[:len(expected) - 1] == expected[:-1] and len(out) == len(expected) - 1:
        raise Mismatch(f"{what}: one id short; the last id generated belongs in the result too.")
    if out[:len(expected)] == expected and len(out) > len(expected):
        raise Mismatch(f"{what}: too many ids ({len(out)} instead of {len(expected)}).")
    raise Mismatch(f"{what}: the ids differ from greedy decoding (yours {out}, expected {expected}); the next "
                   "id is the argmax of the logits at the last position.")


@check("generate-greedy")
def check_greedy_generate(generate, model_class):
    require_callable(generate, "generate")
    gen = fresh_generator()
    reference = tiny_model(gen)
    model = model_class(reference.config)
    model.load_state_dict({name: t.detach().clone() for name, t in reference.state_dict().items()})
    prompt = torch.randint(0, reference.config.vocab_size, (random.randint(2, 5),), generator=gen).tolist()
    steps = 6
    with torch.no_grad():
        expected = reference_generate(reference, prompt, max_new_tokens=steps, stop_ids=()).tolist()
    out, fed = run_learner(generate, model, prompt, steps, [])
    judge_cache_use(fed, len(prompt), steps)
    judge_ids(out, expected, f"with no stop ids and max_new_tokens={steps}")
    stop = expected[2]
    until_stop = expected[:expected.index(stop) + 1]
    out, _ = run_learner(generate, model, prompt, steps, [stop])
    if out == expected:
        raise Mismatch(f"your loop did not stop at the stop id {stop}: stop right after generating it.")
    if out == until_stop[:-1]:
        raise Mismatch("the stop id itself belongs in the result (minigemma returns it, then stops).")
    judge_ids(out, until_stop, f"with stop id {stop}")
