"""The chat template: our chat_text equals the official Gemma -it template character for character; generation
stops on the turn's stop ids."""
import pytest
import torch

import minigemma as mg
from minigemma.tokenizer import chat_text

# The `chat_template` of google/gemma-2b-it and google/gemma-7b-it (tokenizer_config.json), verbatim. Neither
# transformers nor the Gemma 3 270M GGUF in this environment ships it (the GGUF has no tokenizer.chat_template key),
# so it is copied here once; transformers renders it below exactly as `apply_chat_template` would.
GEMMA_IT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

CONVERSATIONS = [
    ["Why is the sky blue?"],
    ["Hi!", "Hello. How can I help?", "  Name a prime number.\n"],            # surrounding whitespace is trimmed
    ["One", "Two", "Three\n\nwith a blank line", "Four", "Five"],
]


def official(messages: list[str], template: str = GEMMA_IT_TEMPLATE) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": m} for i, m in enumerate(messages)]
    rendered, _ = render_jinja_template([turns], chat_template=template, add_generation_prompt=True,
                                        bos_token="<bos>")
    return rendered[0]


@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["1-turn", "3-turn", "5-turn"])
def test_chat_text_equals_the_official_template(messages):
    expected = official(messages)
    assert expected.startswith("<bos>")                       # the template writes BOS as text; encode adds the id
    assert chat_text(messages) == expected.removeprefix("<bos>")


def test_the_comparison_catches_a_wrong_template():
    """Negative: a template with the role spelled 'assistant' (or no trailing newline) must not match ours."""
    assistant_role = GEMMA_IT_TEMPLATE.replace("{% set role = 'model' %}", "{% set role = 'assistant' %}")
    no_newline = GEMMA_IT_TEMPLATE.replace("{{'<start_of_turn>model\\n'}}", "{{'<start_of_turn>model'}}")
    for wrong in (assistant_role, no_newline):
        assert chat_text(CONVERSATIONS[1]) != official(CONVERSATIONS[1], wrong).removeprefix("<bos>")


def test_a_single_message_is_one_user_turn():
    assert chat_text("Hi") == chat_text(["Hi"]) == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("messages", [[], ["user", "model"]])
def test_a_chat_must_end_on_a_user_turn(messages):
    with pytest.raises(ValueError, match="odd number of messages"):
        chat_text(messages)


def test_chat_prompt_ids_use_the_turn_tokens():
    """On the real Gemma 3 tokenizer: the turn markers are single special ids, and BOS comes first."""
    pytest.importorskip("gguf")
    from minigemma.weights.gguf.model import default_gguf_path
    tok = mg.Tokenizer(default_gguf_path())
    ids = tok.chat_prompt(CONVERSATIONS[1])
    start, end = tok.piece_to_id("<start_of_turn>"), tok.piece_to_id("<end_of_turn>")
    assert ids[0] == tok.bos_id and ids.count(start) == 4 and ids.count(end) == 3
    assert ids == tok.encode(official(CONVERSATIONS[1]).removeprefix("<bos>"))
    assert tok.chat_stop_ids() == (tok.eos_id, end)


def test_generation_stops_at_the_first_of_several_stop_ids():
    torch.manual_seed(0)
    model = mg.Gemma(mg.GemmaConfig.tiny(num_layers=2)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():                       # varied weights, so greedy decoding wanders
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if p.dim() == 1 else 2.0 / p.shape[-1] ** 0.5))
    free = mg.generate(model, [2, 7, 9], max_new_tokens=12, stop_ids=()).tolist()
    distinct = list(dict.fromkeys(free))
    assert len(distinct) >= 3, free
    stops = (distinct[2], distinct[1])                     # stop at whichever of the two comes first
    stopped = mg.generate(model, [2, 7, 9], max_new_tokens=12, stop_ids=stops).tolist()
    first = min(free.index(s) for s in stops)
    assert stopped == free[: first + 1] and stopped[-1] in stops and len(stopped) < len(free)
