"""The from-scratch BPE encoder (minigemma/bpe.py) against sentencepiece itself, on a tokenizer trained like Gemma's."""
import random
import struct
from pathlib import Path

import pytest
import sentencepiece as spm

import minigemma as mg
from minigemma.bpe import BYTE, NORMAL, BPETokenizer, ModelFormatError, Piece, read_fields, train_gemma_style

CORPUS = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "tokenizer_corpus.txt"

TEXTS = {
    "prose": "The capital of France is Paris.",
    "digits": "In 2024, 1234567890 tokens cost 3.14 each",
    "whitespace runs": "a  b   c    d        e",
    "newlines and indent": "def f(x):\n    return x\n\n\nprint(f(1))\n",
    "accents": "le café crème, Straße, ñandú, ça va",
    "CJK (byte fallback)": "中文分词 と 日本語",
    "emoji (byte fallback)": "I ❤️ tokenizers 😀🚀",
    "special tokens in text": "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "control pieces are plain text": "<bos><eos><pad><unk>",
    "tabs and a literal meta space": "\ttab\t▁meta ▁space",
    "leading and trailing spaces": "  padded  ",
    "empty": "",
}


@pytest.fixture(scope="module")
def model_bytes():
    return train_gemma_style(CORPUS.read_text(encoding="utf-8").splitlines(), vocab_size=2000)


@pytest.fixture(scope="module")
def sp(model_bytes):
    return spm.SentencePieceProcessor(model_proto=model_bytes)


@pytest.fixture(scope="module")
def bpe(model_bytes):
    return BPETokenizer.from_bytes(model_bytes)


@pytest.mark.parametrize("name", list(TEXTS))
def test_matches_sentencepiece_token_for_token(name, bpe, sp):
    text = TEXTS[name]
    assert bpe.encode_as_pieces(text) == sp.EncodeAsPieces(text), name
    assert bpe.encode(text) == sp.EncodeAsIds(text), name


def test_the_texts_exercise_every_rule(bpe, sp):
    """The texts above reach byte fallback, user-defined pieces, digit splitting and merged whitespace runs."""
    pieces = {name: sp.EncodeAsPieces(text) for name, text in TEXTS.items()}
    assert all(bpe.pieces[i].kind == BYTE for i in bpe.encode("😀")) and len(bpe.encode("😀")) == 4
    assert any(bpe.pieces[sp.PieceToId(p)].kind == BYTE for p in pieces["CJK (byte fallback)"])
    assert "<start_of_turn>" in pieces["special tokens in text"] and "\n" in pieces["newlines and indent"]
    digits = [p.strip("▁") for p in pieces["digits"] if any(c.isdigit() for c in p)]
    assert "".join(digits) == "20241234567890314" and all(len(d) == 1 for d in digits)     # one token per digit
    assert any(set(p) == {"▁"} and len(p) > 1 for p in pieces["whitespace runs"])
    assert "é" in pieces["accents"] and "<0xC3>" in pieces["accents"]        # é is a piece, ß falls back


def test_matches_on_the_whole_course_text(bpe, sp):
    text = CORPUS.read_text(encoding="utf-8")
    assert bpe.encode(text) == sp.EncodeAsIds(text)


def test_matches_on_random_mixtures(bpe, sp):
    """Seeded random snippets: corpus fragments spliced with spaces, digits, accents, CJK and emoji."""
    rng = random.Random(0)
    corpus = CORPUS.read_text(encoding="utf-8")
    extras = [" ", "  ", "\n", "\t", "7", "é", "ß", "中", "😀", "<end_of_turn>", "▁"]
    for _ in range(200):
        start = rng.randrange(len(corpus) - 60)
        chunks = [corpus[start:start + rng.randrange(1, 60)], rng.choice(extras), corpus[start + 60:start + 80]]
        text = "".join(rng.sample(chunks, 3))
        assert bpe.encode(text) == sp.EncodeAsIds(text), repr(text)


def test_a_wrong_merge_order_is_caught(bpe, sp):
    """Reverse the scores (the last merge learned becomes the first applied): the tokens no longer match."""
    normal = sorted((p for p in bpe.pieces if p.kind == NORMAL), key=lambda p: p.score)       # worst first
    reversed_score = {p.text: q.score for p, q in zip(normal, reversed(normal))}
    wrong = BPETokenizer([Piece(p.text, reversed_score.get(p.text, p.score) if p.kind == NORMAL else p.score, p.kind)
                          for p in bpe.pieces])
    lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if len(line) > 20][:200]
    differing = sum(wrong.encode(line) != sp.EncodeAsIds(line) for line in lines)
    assert differing > len(lines) // 2, f"only {differing} of {len(lines)} lines changed"
    assert all(bpe.encode(line) == sp.EncodeAsIds(line) for line in lines)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def message_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def with_all_merges_tied(model_bytes: bytes) -> bytes:
    """Re-serialize the model with every merged piece scored 0.0, so that only the tie rule orders the merges."""
    out = b""
    for number, value in read_fields(model_bytes):         # every top-level field of a ModelProto is a message
        if number == 1:
            piece = dict(read_fields(value))
            kind, text = piece.get(3, NORMAL), piece[1]
            score = struct.unpack("<f", piece.get(2, bytes(4)))[0]
            if kind == NORMAL and len(text.decode()) > 1:
                score = 0.0
            value = (message_field(1, text) + varint(2 << 3 | 5) + struct.pack("<f", score)     # text, score,
                     + varint(3 << 3) + varint(kind))                                          # kind
        out += message_field(number, value)
    return out


def test_ties_go_to_the_leftmost_pair(model_bytes):
    """With all merge scores equal, sentencepiece merges the leftmost pair first; so must we, and rightmost fails."""
    tied = with_all_merges_tied(model_bytes)
    sp_tied, ours = spm.SentencePieceProcessor(model_proto=tied), BPETokenizer.from_bytes(tied)
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:300]
    assert all(ours.encode(line) == sp_tied.EncodeAsIds(line) for line in lines)

    class RightmostOnTies(BPETokenizer):
        def merge(self, symbols):
            symbols = list(symbols)
            while True:
                pairs = [(self.pieces[self.normal_ids[a + b]].score, i)
                         for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in self.normal_ids]
                if not pairs:
                    return symbols
                i = max(pairs)[1]
                symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]

    rightmost = RightmostOnTies.from_bytes(tied)
    assert sum(rightmost.encode(line) != sp_tied.EncodeAsIds(line) for line in lines) > len(lines) // 4


def test_minigemma_tokenizer_on_the_trained_model(model_bytes, bpe, tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_bytes(model_bytes)
    tok = mg.Tokenizer(path)
    text = "The tied head <end_of_turn> shares 2048 × 256000 weights."
    ids = tok.encode(text)
    assert ids[0] == 2 and ids[1:] == bpe.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode(text, add_bos=False, add_eos=True)[-1] == 1
    assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "<eos>", "<bos>", "<unk>"]
    assert tok.piece_to_id("<start_of_turn>") == 4 and tok.vocab_size == 2000


def test_bad_models_get_clear_errors(model_bytes):
    with pytest.raises(ModelFormatError, match="not a SentencePiece model"):
        BPETokenizer.from_bytes(b"\x0a\x05hello world, this is not a model")
    with pytest.raises(ModelFormatError, match="protobuf"):
        BPETokenizer.from_bytes(b"\xff\xff\xff")
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    with pytest.raises(ModelFormatError, match="add_dummy_prefix=True"):
        BPETokenizer.from_bytes(train_gemma_style(lines[:300], 400, add_dummy_prefix=True))
    with pytest.raises(ModelFormatError, match="byte pieces"):
        BPETokenizer.from_bytes(train_gemma_style(lines[:300], 400, byte_fallback=False))
    with pytest.raises(TypeError, match="str"):
        BPETokenizer.from_bytes(model_bytes).encode([1, 2])

