"""Checks for exercise 01, the tokenizer: BOS handling, the chat turn format, byte fallback and BPE merging itself.
The references are minigemma.Tokenizer and the sentencepiece library, on the toy model of toy_tokenizer.py."""
from __future__ import annotations

import random

from ...tokenizer import Tokenizer
from ..compare import diagnose_value
from ..core import Mismatch, check, require_callable
from ..toy_tokenizer import corpus_words, piece_scores, toy_processor

META = "\u2581"


def random_text(unknown: bool = False) -> str:
    words = random.sample(corpus_words(), random.randint(3, 7))
    text = " ".join(w.capitalize() if random.random() < 0.2 else w for w in words)
    if unknown:
        at = random.randrange(len(text))
        text = text[:at] + random.choice("éßøç€") + text[at:]
    return text


def as_list(value, what: str, kind=int) -> list:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise Mismatch(f"{what} should return a list of {kind.__name__}s, got {value!r:.80}.")
    return value


@check("tokenizer-encode")
def check_encode(encode):
    require_callable(encode, "encode")
    sp = toy_processor()
    reference = Tokenizer(None, processor=sp)
    for text in (random_text(), random_text(), ""):
        got = as_list(encode(sp, text), "encode")
        ids = sp.encode(text)
        diagnose_value(got, reference.encode(text), [
            (ids, "start with BOS (id 2): Gemma was trained with it, and quality collapses without it."),
            ([2] + ids + [1], "do not append EOS (id 1) to a prompt: it tells the model the text has ended."),
            ([1] + ids, "id 1 is EOS; BOS is id 2."),
            (ids + [2], "BOS goes at the start, not at the end.")], f"wrong ids for {text!r}")


class TextRecorder:
    """Stands in for the SentencePiece processor and keeps the text the tokenizer was asked to encode."""
    text = None

    def EncodeAsIds(self, text, *args, **kwargs):  # noqa: N802 (sentencepiece's spelling)
        self.text = text
        return []

    encode = Encode = EncodeAsIds                    # whichever spelling the tokenizer uses


def reference_chat(message: str) -> str:
    recorder = TextRecorder()
    Tokenizer(None, processor=recorder).chat_prompt(message)
    return recorder.text


@check("tokenizer-chat")
def check_chat_prompt(chat_prompt):
    require_callable(chat_prompt, "chat_prompt")
    for message in (random_text(), "Why is the sky blue?"):
        got = chat_prompt(message)
        if not isinstance(got, str):
            raise Mismatch(f"chat_prompt should return the prompt text (a str), got {type(got).__name__}.")
        expected = reference_chat(message)
        diagnose_value(got, expected, [
            (expected.replace("<start_of_turn>model", "<start_of_turn>assistant"),
             "Gemma's second role is `model`, not `assistant`."),
            (expected.rstrip("\n"), "end with a newline after `model`: the answer starts on a fresh line."),
            (expected.replace("<end_of_turn>\n", "<end_of_turn>"), "put a newline after <end_of_turn>."),
            ("<bos>" + expected, "do not write <bos> into the text: encode() adds the BOS id itself."),
            (expected.split("<start_of_turn>model")[0], "end with the opening of the model's turn, "
                                                        "<start_of_turn>model and a newline, so the model answers.")],
            "the prompt text does not follow Gemma's turn format")


def unknown_characters(sp) -> list[str]:
    """Characters the toy vocabulary lacks, from several UTF-8 lengths (1, 2, 3 and 4 bytes)."""
    pools = [[chr(c) for c in (7, 9, 10, 27)], [chr(c) for c in range(0xC0, 0x250)],
             [chr(c) for c in range(0x4E00, 0x9FA0)], [chr(c) for c in range(0x1F600, 0x1F650)]]
    return [random.choice([ch for ch in pool if sp.piece_to_id(ch) == sp.unk_id()]) for pool in pools]


@check("tokenizer-bytes")
def check_byte_fallback(byte_fallback):
    require_callable(byte_fallback, "byte_fallback")
    sp = toy_processor()
    for char in unknown_characters(sp):
        got = as_list(byte_fallback(char), "byte_fallback", str)
        data = char.encode("utf-8")
        diagnose_value(got, sp.encode(char, out_type=str), [
            ([f"<0x{b:02x}>" for b in data], "use upper-case hex digits: <0xE2>, not <0xe2>."),
            ([f"<0x{b:X}>" for b in data], "pad to two hex digits: <0x0A>, not <0xA>."),
            ([f"<0x{ord(char):02X}>"], "fall back to the UTF-8 *bytes* of the character, not its code point."),
            ([f"<{b:02X}>" for b in data], "byte pieces are written <0xNN>.")], f"wrong pieces for {char!r}")


def merge(symbols: list[str], scores: dict[str, float], leftmost: bool = False) -> list[str]:
    """BPE merging: the best-scoring adjacent pair first (or, wrongly, the leftmost mergeable pair)."""
    while True:
        pairs = [(scores[a + b], -i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in scores]
        if not pairs:
            return symbols
        i = -(pairs[0] if leftmost else max(pairs))[1]
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]


def with_bytes(symbols: list[str], scores) -> list[str]:
    return [p for s in symbols for p in ([s] if s in scores else [f"<0x{b:02X}>" for b in s.encode("utf-8")])]


def longest_first(text: str, scores) -> list[str]:
    """The greedy longest-match (WordPiece-style) segmentation: a wrong way to apply a BPE vocabulary."""
    out, i = [], 0
    while i < len(text):
        j = max((j for j in range(i + 1, len(text) + 1) if text[i:j] in scores), default=i + 1)
        out.append(text[i:j])
        i = j
    return out


def mashup_text() -> str:
    """Words glued from pieces of corpus words: new to the tokenizer, so the order of merges matters."""
    def mashup(words):
        slices = [w[i:random.randint(i + 1, len(w))] for w in words for i in [random.randrange(len(w))]]
        return "".join(slices)
    words = corpus_words()
    return " ".join(mashup(random.sample(words, random.randint(2, 3))) if random.random() < 0.5 else
                    random.choice(words) for _ in range(random.randint(3, 6)))


def revealing_texts(sp, scores) -> list[str]:
    """Texts on which the leftmost-merge and the longest-match mistakes both show (found by trying)."""
    found = {}
    for _ in range(500):
        text = mashup_text()
        chars, reference = list(text.replace(" ", META)), sp.encode(text, out_type=str)
        if "leftmost" not in found and with_bytes(merge(chars, scores, leftmost=True), scores) != reference:
            found["leftmost"] = text
        if "longest" not in found and with_bytes(longest_first("".join(chars), scores), scores) != reference:
            found["longest"] = text
        if len(found) == 2:
            break
    return list(found.values()) + [random_text(unknown=True)]


@check("tokenizer-bpe")
def check_bpe_encode(bpe_encode):
    require_callable(bpe_encode, "bpe_encode")
    sp = toy_processor()
    scores = piece_scores(sp)
    for text in revealing_texts(sp, scores):
        got = as_list(bpe_encode(text, dict(scores)), "bpe_encode", str)
        if any(" " in piece for piece in got) or "<0x20>" in got:
            raise Mismatch(f"replace every space with {META} (U+2581) before merging; spaces are not pieces.")
        if any(p not in scores and not (p.startswith("<0x") and p.endswith(">")) for p in got):
            raise Mismatch("a character that is not in the vocabulary must fall back to its UTF-8 byte pieces "
                           "<0xNN>.")
        chars = list(text.replace(" ", META))
        diagnose_value(got, sp.encode(text, out_type=str), [
            (with_bytes(merge(chars, scores, leftmost=True), scores),
             "you merged the leftmost mergeable pair; BPE merges the pair with the highest score first "
             "(leftmost only on ties)."),
            (with_bytes(merge([META] + chars, scores), scores), f"Gemma's tokenizer adds no dummy-prefix {META}."),
            (with_bytes(longest_first("".join(chars), scores), scores),
             "that is greedy longest-match (WordPiece style); BPE repeatedly merges the best-scoring adjacent pair.")],
            f"wrong pieces for {text!r}")
