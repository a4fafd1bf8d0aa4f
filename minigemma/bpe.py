"""Gemma's tokenizer algorithm from scratch: SentencePiece BPE encoding in pure Python, token for token.

A SentencePiece `.model` file is a protobuf message whose vocabulary is a list of pieces, each a string, a score and
a kind (normal, control such as <bos>, user-defined such as <start_of_turn>, byte such as <0x41>, unknown).
Encoding text with a BPE model then takes four rules:
  1. spaces become the meta symbol "▁" (U+2581); nothing else changes (Gemma: no normalisation, no dummy prefix);
  2. the text is cut into characters, except that user-defined pieces are cut out whole and never merged;
  3. repeatedly merge the adjacent pair whose concatenation is a piece with the highest score, the leftmost pair on
     ties (the trainer scores its k-th merge -k, so the scores *are* the merge order);
  4. a final symbol that is not a piece falls back to its UTF-8 bytes, the pieces <0x00> ... <0xFF>.
`train_gemma_style` trains such a model with sentencepiece's own trainer and Gemma's options.
Merging is quadratic in the length of a line (the newline is a user-defined piece): fine for teaching, not for books.
Not here: decoding, sampling (BPE-dropout), normalisers other than Gemma's, models without byte fallback or with
"unused" pieces; `minigemma.Tokenizer` wraps the sentencepiece library for real work.
"""
from __future__ import annotations

import io
import itertools
import struct
from typing import NamedTuple

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6    # SentencePiece's piece kinds
META_SPACE = "\u2581"                                                     # "▁" stands for a space


class ModelFormatError(ValueError):
    """The bytes are not a SentencePiece model this encoder understands; the message says why."""


class Piece(NamedTuple):
    """One vocabulary entry: its text, its score (for merged pieces, minus the merge's rank) and its kind."""
    text: str
    score: float
    kind: int


# ---- reading the .model file: just enough protobuf -------------------------------------------------
def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A protobuf base-128 integer starting at data[pos] -> (value, position after it)."""
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift              # 7 bits per byte, least significant first
        shift += 7
        if byte < 0x80:                              # high bit clear: the last byte
            return value, pos
    raise ModelFormatError("truncated protobuf integer")


def read_fields(data: bytes):
    """Yield (field number, value) for one protobuf message: an int for varints, raw bytes otherwise."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
        elif wire_type == 2:                         # length-prefixed: strings and nested messages
            size, pos = read_varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire_type in (1, 5):                    # fixed 8 or 4 bytes (double, float)
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ModelFormatError(f"unsupported protobuf wire type {wire_type} near byte {pos}")
        if pos > len(data):
            raise ModelFormatError(f"field {number} runs past the end of the data")
        yield number, value


def read_model(model_bytes: bytes) -> tuple[list[Piece], dict]:
    """(pieces, normalizer fields) of a serialized ModelProto: field 1 holds the pieces, field 3 the normalizer."""
    pieces, normalizer = [], {}
    try:
        for number, value in read_fields(model_bytes):
            if number == 1:                          # a piece: text = 1, score = 2 (float32), kind = 3
                fields = dict(read_fields(value))
                score = struct.unpack("<f", fields.get(2, bytes(4)))[0]
                pieces.append(Piece(fields[1].decode("utf-8"), score, fields.get(3, NORMAL)))
            elif number == 3:
                normalizer = dict(read_fields(value))
    except ModelFormatError as err:
        raise ModelFormatError(f"not a SentencePiece model: {err}") from None
    except (KeyError, UnicodeDecodeError, struct.error, TypeError) as err:
        raise ModelFormatError(f"not a SentencePiece model ({type(err).__name__}: {err})") from None
    if not pieces:
        raise ModelFormatError("no vocabulary pieces found: not a SentencePiece model")
    return pieces, normalizer


def check_gemma_normalizer(normalizer: dict) -> None:
    """This encoder implements Gemma's normaliser only: rule 'identity', no dummy prefix, no whitespace cleanup."""
    name = normalizer.get(1, b"").decode("utf-8", "replace")
    add_dummy_prefix, remove_extra_whitespaces = normalizer.get(3, 1), normalizer.get(4, 1)   # proto defaults: on
    if name != "identity" or add_dummy_prefix or remove_extra_whitespaces:
        raise ModelFormatError(f"normalizer {name!r} (add_dummy_prefix={bool(add_dummy_prefix)}, "
                               f"remove_extra_whitespaces={bool(remove_extra_whitespaces)}) is not Gemma's: "
                               "this encoder expects 'identity' with both switched off")


# ---- encoding ---------------------------------------------------------------------------------------
def check_pieces(pieces: list[Piece]) -> None:
    """The vocabulary this encoder handles: no 'unused' pieces, and all 256 byte pieces for byte fallback."""
    if any(p.kind == UNUSED for p in pieces):
        raise ModelFormatError("the model has 'unused' pieces, which this encoder does not handle")
    byte_pieces = sum(p.kind == BYTE for p in pieces)
    if byte_pieces != 256:
        raise ModelFormatError(f"the model has {byte_pieces} byte pieces, not the 256 of byte fallback "
                               "(<0x00> ... <0xFF>); train it with byte_fallback=True, as Gemma's was")


def check_is_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"encode expects a str, got {type(text).__name__}")


def split_frozen(text: str, user_defined) -> list[tuple[str, bool]]:
    """Rules 1-2: (symbol, frozen) pairs; frozen symbols are user-defined pieces, matched longest first."""
    text, symbols, pos = text.replace(" ", META_SPACE), [], 0
    while pos < len(text):
        match = max((u for u in user_defined if text.startswith(u, pos)), key=len, default=None)
        symbols.append((match, True) if match else (text[pos], False))
        pos += len(match) if match else 1
    return symbols


def merge_best_pairs(symbols: list[str], scores: dict[str, float]) -> list[str]:
    """Rule 3 on a run of ordinary symbols: merge the best-scoring adjacent pair until none forms a piece."""
    symbols = list(symbols)
    while True:
        pairs = [(scores[a + b], -i)                                    # -i: the leftmost pair wins ties
                 for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in scores]
        if not pairs:
            return symbols
        i = -max(pairs)[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]


class BPETokenizer:
    def __init__(self, pieces: list[Piece]):
        check_pieces(pieces)
        self.pieces = pieces
        self.normal_ids = {p.text: i for i, p in enumerate(pieces) if p.kind == NORMAL}
        self.scores = {p.text: p.score for p in pieces if p.kind == NORMAL}
        self.user_defined = {p.text: i for i, p in enumerate(pieces) if p.kind == USER_DEFINED}
        self.byte_ids = {int(p.text[3:5], 16): i for i, p in enumerate(pieces) if p.kind == BYTE}

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> "BPETokenizer":
        pieces, normalizer = read_model(model_bytes)
        check_gemma_normalizer(normalizer)
        return cls(pieces)

    def split(self, text: str) -> list[tuple[str, bool]]:
        return split_frozen(text, self.user_defined)

    def merge(self, symbols: list[str]) -> list[str]:
        return merge_best_pairs(symbols, self.scores)

    def to_ids(self, symbol: str) -> list[int]:
        """Rule 4: a piece's id, or else one byte piece per UTF-8 byte of the symbol."""
        piece_id = self.normal_ids.get(symbol, self.user_defined.get(symbol))
        if piece_id is not None:
            return [piece_id]
        return [self.byte_ids[b] for b in symbol.encode("utf-8")]

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without BOS (minigemma.Tokenizer.encode adds it)."""
        check_is_text(text)
        ids = []
        for frozen, run in itertools.groupby(self.split(text), key=lambda symbol: symbol[1]):
            symbols = [symbol for symbol, _ in run]
            pieces = symbols if frozen else self.merge(symbols)         # user-defined pieces never merge
            ids += [i for piece in pieces for i in self.to_ids(piece)]
        return ids

    def encode_as_pieces(self, text: str) -> list[str]:
        return [self.pieces[i].text for i in self.encode(text)]


# ---- training (with sentencepiece's trainer) --------------------------------------------------------
def train_gemma_style(sentences: list[str], vocab_size: int, **overrides) -> bytes:
    """Train a small BPE tokenizer with Gemma's options (or `overrides`); returns the serialized .model bytes."""
    import sentencepiece as spm
    options = dict(
        model_type="bpe", byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", user_defined_symbols=["<start_of_turn>", "<end_of_turn>", "\n"],
        num_threads=1, max_sentence_length=1 << 16, minloglevel=2)     # one thread: the same model every run
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
                                   **{**options, **overrides})
    return model.getvalue()
