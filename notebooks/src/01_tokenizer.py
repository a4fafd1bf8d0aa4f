# Notebook 01: SentencePiece BPE with byte fallback, trained like Gemma's, then re-implemented from scratch.

# %% [markdown]
# # 01 · The tokenizer: SentencePiece BPE with byte fallback
#
# **What you will build.** `minigemma/bpe.py`: a from-scratch BPE encoder that reads a SentencePiece `.model`
# file byte by byte and reproduces Google's `sentencepiece` library **token for token**. You will first train
# a small tokenizer with exactly Gemma's conventions, then rebuild its encoder in about a hundred lines of
# Python, and finally use `minigemma.Tokenizer` (the wrapper the model uses) on it.
#
# **What you need to know.** Python strings and bytes (UTF-8), dictionaries. No machine learning needed.
#
# **How we check.** Every step is compared with the `sentencepiece` library itself, on sentences chosen to hit
# each rule (digits, runs of spaces, newlines, accents, Chinese, emoji) and on the whole training text.
#
# Gemma's real `tokenizer.model` has 256,000 pieces; ours has 2,000 and trains in well under a second, but the
# algorithm and the conventions are the same:
#
# | convention | Gemma |
# |---|---|
# | algorithm | BPE (byte-pair encoding), SentencePiece implementation |
# | special ids | `<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3; chat turns `<start_of_turn>` 106, `<end_of_turn>` 107 |
# | spaces | kept, written as the meta symbol `▁` (U+2581); **no** extra space added at the start of the text |
# | normalisation | none ("identity"): accents, case, repeated spaces are all kept |
# | digits | one token per digit |
# | unknown characters | **byte fallback**: their UTF-8 bytes, pieces `<0x00>` … `<0xFF>` |

# %%
import io
import itertools
import struct
import tempfile
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import sentencepiece as spm
import torch

import minigemma as mg
from minigemma.bpe import NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE, META_SPACE
from minigemma.bpe import check_pieces, check_is_text   # argument checks BPETokenizer uses, not a lesson of their own

torch.manual_seed(0)
print("sentencepiece", spm.__version__)

# %% [markdown]
# ## 1. Training text and training
#
# A tokenizer is *trained*: BPE starts from single characters and, again and again, glues together the pair of
# adjacent symbols that is most frequent in the training text, adding the glued string to the vocabulary as a
# new *piece*. The order of these merges is the heart of the model.
#
# Our training text is a frozen snapshot of this course's own words (README, the Gemma spec notes, a few
# sentences in other languages, the package source), stored in `data/tokenizer_corpus.txt` so that every
# machine trains exactly the same tokenizer.

# %%
corpus = Path("data/tokenizer_corpus.txt").read_text(encoding="utf-8")
lines = corpus.splitlines()
print(f"{len(corpus.encode()):,} bytes, {len(lines):,} lines, {len(set(corpus)):,} distinct characters")
print(lines[2])

# %% [markdown]
# `sentencepiece`'s trainer takes Gemma's options: BPE, byte fallback, split digits, the identity normaliser,
# no dummy prefix, extra whitespace kept, Gemma's four special ids, and `<start_of_turn>` / `<end_of_turn>` as
# *user-defined* pieces (always one token, never split or merged). We also make the newline a user-defined
# piece: the trainer reads text line by line, and Gemma's vocabulary has newline pieces too. One thread
# keeps training deterministic. The package's function:

# %% export minigemma.bpe.train_gemma_style

# %%
model_bytes = train_gemma_style(lines, vocab_size=2000)
assert model_bytes == train_gemma_style(lines, vocab_size=2000), "training is not deterministic"
sp = spm.SentencePieceProcessor(model_proto=model_bytes)
print(f"trained: {sp.GetPieceSize()} pieces, {len(model_bytes):,} bytes; a second run gave identical bytes")

# %%
print(sp.EncodeAsPieces("The embedding has 256000 rows."))
print(sp.EncodeAsIds("The embedding has 256000 rows."))

# %% [markdown]
# **How much text does one token carry?** More merges mean longer pieces and fewer tokens per text. Measured on
# the training text itself this flatters the tokenizer: it has learned that text's own words. The honest number
# comes from **held-out** text it never saw: `data/heldout.txt`, a page written for this course (prose, numbers,
# a recipe, a little Python, five other languages), checked to share no line with the training text.

# %%
heldout = Path("data/heldout.txt").read_text(encoding="utf-8")
assert not set(heldout.splitlines()) & set(lines) - {""}, "held-out text shares a line with the training text"
sizes = [400, 500, 750, 1000, 1500, 2000, 3000, 4000]
on_training, on_heldout = [], []
for size in sizes:
    trial = spm.SentencePieceProcessor(model_proto=train_gemma_style(lines, vocab_size=size))
    on_training.append(len(corpus) / len(trial.EncodeAsIds(corpus)))
    on_heldout.append(len(heldout) / len(trial.EncodeAsIds(heldout)))
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.plot(sizes, on_heldout, marker="o", label=f"held-out text ({len(heldout):,} characters)")
ax.plot(sizes, on_training, marker="o", linestyle="--", color="gray", label="training text (flattering)")
ax.set_xlabel("vocabulary size")
ax.set_ylabel("characters per token")
ax.set_title("Compression: held-out vs training text")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()
print("held-out chars/token:", [round(c, 2) for c in on_heldout])
print("training chars/token:", [round(c, 2) for c in on_training])

# %% [markdown]
# ## 2. Reading the `.model` file ourselves
#
# A SentencePiece model is a *protocol buffer*: a sequence of fields, each introduced by a key
# $\text{key} = 8 \times \text{field number} + \text{wire type}$. Wire type 0 is a varint value, 2 is a
# length-prefixed blob (a string or a nested message), 5 is a 4-byte float. The vocabulary is field 1,
# repeated; each piece is a small message with its text (field 1), score (field 2) and kind (field 3). The
# normaliser settings are field 3 of the model. We build the reader in three steps: one integer, one field,
# the whole piece list.
#
# **Step 1: a varint, by hand.** Integers are written 7 bits per byte, least significant group first; the high
# bit of a byte is 1 when more bytes follow. 300 is `0b10_0101100`: the low 7 bits `0101100` (0x2C) go first
# with the high bit set (0xAC), then the remaining `10` (0x02).

# %%
encoded = bytes([0xAC, 0x02])
value = 0
for n, byte in enumerate(encoded):
    low_bits, more = byte & 0x7F, byte >= 0x80
    value += low_bits << (7 * n)
    print(f"byte {n}: 0x{byte:02X} = {byte:08b}  low 7 bits {low_bits:3d} x 128^{n}, more bytes follow: {more}")
print("value:", value)
assert value == 300


def varint(data, pos):
    """(value, position after it) of the base-128 integer at data[pos]."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def to_varint(value):                   # the writer's side, only to test the reader on many numbers
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >= 0x80 else 0))
        value >>= 7
        if not value:
            return bytes(out)


assert varint(encoded, 0) == (300, 2)
for number in [0, 1, 127, 128, 16383, 16384, 2**31 - 1, 2**40 + 12345]:
    assert varint(to_varint(number), 0) == (number, len(to_varint(number))), number
print("varint reads back every written number, including the 1-, 2-, 3- and 6-byte edge cases")

# %% [markdown]
# **Step 2: one field.** The model's very first bytes are a key, then (wire type 2) a length, then that many
# bytes: the first piece, itself a message whose fields we read the same way.

# %%
key, pos = varint(model_bytes, 0)
number, wire_type = key >> 3, key & 7                          # key = 8 * field number + wire type
size, pos = varint(model_bytes, pos)
first_piece = model_bytes[pos:pos + size]
print(f"key {key}: field {number}, wire type {wire_type}; {size} bytes follow:", first_piece)

inner_key, inner_pos = varint(first_piece, 0)                  # field 1 of the piece: its text
text_size, inner_pos = varint(first_piece, inner_pos)
text = first_piece[inner_pos:inner_pos + text_size].decode("utf-8")
print(f"inner field {inner_key >> 3} (wire type {inner_key & 7}): text {text!r}")
assert (number, wire_type) == (1, 2) and text == sp.IdToPiece(0)


def fields(data):
    """Yield (field number, value) of one message: an int (wire type 0) or raw bytes (wire types 2 and 5)."""
    pos = 0
    while pos < len(data):
        key, pos = varint(data, pos)
        if key & 7 == 0:
            value, pos = varint(data, pos)
        else:
            size, pos = varint(data, pos) if key & 7 == 2 else (4, pos)   # wire type 5: a 4-byte float
            value, pos = data[pos:pos + size], pos + size
        yield key >> 3, value


print("fields of the first piece:", list(fields(first_piece)))

# %% [markdown]
# **Step 3: the piece list.** Every field 1 of the model is a piece: decode its text, unpack its score as a
# little-endian float32 (absent means 0), and read its kind (absent means normal). Check every piece against
# `sentencepiece`'s own view of the model:

# %%
def read_pieces(model_bytes):
    pieces = []
    for number, value in fields(model_bytes):
        if number == 1:
            piece = dict(fields(value))
            score = struct.unpack("<f", piece.get(2, bytes(4)))[0]
            pieces.append((piece[1].decode("utf-8"), score, piece.get(3, NORMAL)))
    return pieces


lesson_pieces = read_pieces(model_bytes)
assert [text for text, _, _ in lesson_pieces] == [sp.IdToPiece(i) for i in range(sp.GetPieceSize())]
assert [score for _, score, _ in lesson_pieces] == [sp.GetScore(i) for i in range(sp.GetPieceSize())]
assert [kind == BYTE for _, _, kind in lesson_pieces] == [sp.IsByte(i) for i in range(sp.GetPieceSize())]
print(f"{len(lesson_pieces)} pieces; texts, scores and byte kinds agree with sentencepiece")

# %% [markdown]
# **What we just built, as the package ships it.** `minigemma/bpe.py` holds the same three steps; on top it
# names its result (`Piece`), also keeps field 3 (the normaliser), skips 8-byte fields, and turns every
# malformed input into one `ModelFormatError` that says what is wrong, instead of an `IndexError` deep inside.

# %% export minigemma.bpe.ModelFormatError minigemma.bpe.Piece

# %% export minigemma.bpe.read_varint minigemma.bpe.read_fields

# %% export minigemma.bpe.read_model

# %%
pieces, normalizer = read_model(model_bytes)
assert [tuple(p) for p in pieces] == lesson_pieces
assert [p.kind == CONTROL for p in pieces] == [sp.IsControl(i) for i in range(sp.GetPieceSize())]
assert [p.kind == UNKNOWN for p in pieces] == [sp.IsUnknown(i) for i in range(sp.GetPieceSize())]
print(f"read_model == read_pieces on all {len(pieces)} pieces; control and unknown kinds agree with sentencepiece")
print("normaliser:", {number: value for number, value in normalizer.items() if number in (1, 3, 4, 5)},
      "(1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces)")
try:
    read_model(model_bytes[:1000])                                   # a truncated file
except ModelFormatError as err:
    print("truncated file ->", err)

# %% [markdown]
# **The vocabulary's layout.** Control pieces first, then the unknown piece, the user-defined pieces, 256 byte
# pieces, then the merged pieces in the order they were learned, and last the single characters. Each piece
# has a **score**: the $k$-th merge (counting from 0) gets $-k$, so the scores *are* the merge order.

# %%
KIND_NAMES = {NORMAL: "normal", UNKNOWN: "unknown", CONTROL: "control", USER_DEFINED: "user-defined",
              UNUSED: "unused", BYTE: "byte"}
for i in [0, 1, 2, 3, 4, 5, 6, 7, 8, 261, 262, 263, 264, 265, 266, 1000, 1900, 1999]:
    print(f"id {i:>4}  {pieces[i].text!r:<18} score {pieces[i].score:>8.1f}  {KIND_NAMES[pieces[i].kind]}")

# %% [markdown]
# The first merges are the most frequent pairs of the text: runs of spaces (Python indentation!) and common
# English letter pairs.

# %%
merges = [p.text for p in sorted(pieces, key=lambda p: -p.score) if p.kind == NORMAL and len(p.text) > 1]
print("first 24 merges:", merges[:24])
print("merges 1000-1011:", merges[1000:1012])

# %% [markdown]
# Our encoder implements Gemma's normaliser only, so it refuses anything else with a clear message rather than
# silently producing different tokens:

# %% export minigemma.bpe.check_gemma_normalizer

# %%
check_gemma_normalizer(normalizer)
print("Gemma's normaliser: identity, no dummy prefix, whitespace kept")

# %% [markdown]
# ## 3. BPE encoding, four rules
#
# 1. Replace each space with `▁`. Nothing else changes.
# 2. Cut the text into single characters, except user-defined pieces (`<start_of_turn>`, `\n`, ...), which are
#    cut out whole and *frozen*: they never merge.
# 3. Among all adjacent pairs whose concatenation is a piece, merge the one with the **highest score** (the
#    earliest merge learned); on a tie, the leftmost. Repeat until no adjacent pair forms a piece.
# 4. Emit each remaining symbol's id; a symbol that is not a piece (an unseen character such as 中 or 😀) becomes
#    its UTF-8 bytes, one byte piece each.
#
# Rule 3 at work on one word, printing each merge with its rank:

# %%
ranks = {p.text: -p.score for p in pieces if p.kind == NORMAL}      # merge rank: 0 = learned first
symbols = list("▁tokenizer")
print("start:      ", " ".join(symbols))
while True:
    candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(symbols, symbols[1:])) if a + b in ranks]
    if not candidates:
        break
    rank, i = min(candidates)                    # lowest rank = highest score; then the leftmost
    symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    print(f"merge {int(rank):>4}:  ", " ".join(symbols))
assert symbols == sp.EncodeAsPieces(" tokenizer")
print("sentencepiece:", sp.EncodeAsPieces(" tokenizer"))

# %% [markdown]
# **Rule 2 by hand:** cutting out a frozen piece. Scanning left to right, wherever a user-defined piece starts
# it is taken whole (longest match), otherwise one character:

# %%
user_pieces = [p.text for p in pieces if p.kind == USER_DEFINED]
text, symbols, pos = "<start_of_turn>user hi", [], 0
while pos < len(text):
    match = max((u for u in user_pieces if text.startswith(u, pos)), key=len, default=None)
    symbols.append(match or text[pos].replace(" ", "▁"))
    pos += len(match) if match else 1
print(symbols)
assert symbols[0] == "<start_of_turn>" and sp.EncodeAsPieces(text)[0] == "<start_of_turn>"

# %% [markdown]
# **What we just built, as the package ships it.** The two loops above become `split_frozen` (rules 1-2) and
# `merge_best_pairs` (rule 3); `BPETokenizer` adds byte fallback (`to_ids`, rule 4) and merges each run of
# ordinary symbols between frozen pieces separately, since no merge can cross a frozen piece. (Its constructor
# also calls `check_pieces`, plumbing that refuses vocabularies without the 256 byte pieces.)

# %% export minigemma.bpe.split_frozen minigemma.bpe.merge_best_pairs

# %% export minigemma.bpe.BPETokenizer

# %%
bpe = BPETokenizer.from_bytes(model_bytes)
examples = [
    "The capital of France is Paris.",
    "In 2024, 1234567890 tokens",                  # digits: one token each
    "a  b   c        d",                           # runs of spaces
    "def f(x):\n    return x\n\n",              # newlines and indentation
    "le café crème, Straße, ñandú",                # accents (seen in training)
    "中文 と 日本語",                               # unseen characters: byte fallback
    "I ❤️ tokenizers 😀",                          # emoji: 4 bytes each
    "<start_of_turn>user\nHi<end_of_turn>",       # user-defined pieces
]
for text in examples:
    ours, reference = bpe.encode(text), sp.EncodeAsIds(text)
    assert ours == reference, (text, bpe.encode_as_pieces(text), sp.EncodeAsPieces(text))
    print(f"{len(ours):>3} tokens  {bpe.encode_as_pieces(text)}")

# %% [markdown]
# Note that `ß` and `ñ` fell back to bytes although the training text contains them (twice each): the trainer
# keeps only the characters that cover 99.95% of the text (its `character_coverage` option). `é` and `è` are
# frequent enough to be pieces; `ú` never occurs in the text at all.
#
# **Check on the whole training text**, 63 kB, token for token:

# %%
ours, reference = bpe.encode(corpus), sp.EncodeAsIds(corpus)
assert ours == reference
print(f"{len(ours):,} tokens, identical to sentencepiece's")

# %% [markdown]
# Byte fallback means nothing is ever unknown: `<unk>` (id 3) never appears, and decoding the byte pieces
# gives back the exact text.

# %%
emoji_ids = bpe.encode("😀")
print("😀 ->", [pieces[i].text for i in emoji_ids], "=", "😀".encode("utf-8"))
assert bytes(int(pieces[i].text[3:5], 16) for i in emoji_ids) == "😀".encode("utf-8")
assert 3 not in bpe.encode("".join(examples))
assert sp.DecodeIds(bpe.encode("中文 😀")) == "中文 😀"

# %% [markdown]
# ## 4. Special tokens and `minigemma.Tokenizer`
#
# The model uses `minigemma.Tokenizer`, a thin wrapper around `sentencepiece` that knows Gemma's ids.
# `encode` **prepends BOS (id 2)**: Gemma was trained with it, and without it the model's output degrades badly.
# `decode` drops pad/eos/bos. Control pieces such as `<bos>` are never produced from text: typing "<bos>"
# gives ordinary characters.

# %%
with tempfile.TemporaryDirectory() as folder:
    model_path = Path(folder) / "tokenizer.model"              # the file Gemma ships as tokenizer.model
    model_path.write_bytes(model_bytes)
    tok = mg.Tokenizer(model_path)                             # reads the file once

text = "Gemma ties 2048 × 256000 weights."
ids = tok.encode(text)
print(ids)
assert ids[0] == tok.bos_id == 2 and ids[1:] == bpe.encode(text)
assert tok.decode(ids) == text
print(repr(tok.decode(ids)))
print("ids 0-3:", [tok.id_to_piece(i) for i in range(4)])
print("'<bos>' typed as text:", [tok.id_to_piece(i) for i in tok.encode("<bos>", add_bos=False)])
chat = tok.chat_prompt("Hi")
print("chat prompt:", [tok.id_to_piece(i) for i in chat])
assert chat[:2] == [2, tok.piece_to_id("<start_of_turn>")]

# %% [markdown]
# In the real Gemma vocabulary `<start_of_turn>` and `<end_of_turn>` are ids 106 and 107 (the ids between the
# specials and them hold other reserved pieces); in ours, with only two user-defined pieces before them, they
# are 4 and 5. The *convention* is what matters: they are single, unsplittable tokens.

# %% [markdown]
# ## 5. What 256,000 pieces cost
#
# Each piece owns one row of the embedding matrix $E \in \mathbb{R}^{V \times D}$, and Gemma reuses $E$ as the
# output head. A big vocabulary means short token sequences for many languages, paid for in parameters:

# %%
for name, cfg in {"gemma-2b": mg.GemmaConfig.gemma_2b(), "gemma-7b": mg.GemmaConfig.gemma_7b()}.items():
    with torch.device("meta"):
        total = mg.Gemma(cfg).num_parameters()
    embedding = cfg.vocab_size * cfg.hidden_size
    print(f"{name}: {cfg.vocab_size:,} × {cfg.hidden_size} = {embedding:,} embedding parameters, "
          f"{embedding / total:.1%} of {total:,}")
print(f"our tokenizer with D = 2048: {sp.GetPieceSize() * 2048:,} parameters")

# %% [markdown]
# ## 6. Common mistakes
#
# **Merging in the wrong order.** BPE is not "find pieces in the text": the same vocabulary applied in another
# order gives other tokens. Give the learned merges reversed scores (the last learned applied first) and the
# token-for-token check fails:

# %%
normal = sorted((p for p in pieces if p.kind == NORMAL), key=lambda p: p.score)     # last learned first
reversed_score = {p.text: q.score for p, q in zip(normal, reversed(normal))}
wrong = BPETokenizer([p._replace(score=reversed_score.get(p.text, p.score)) for p in pieces])
print("right:", bpe.encode_as_pieces("The capital of France"))
print("wrong:", wrong.encode_as_pieces("The capital of France"))
try:
    assert wrong.encode(corpus) == sp.EncodeAsIds(corpus), "token-for-token check failed"
except AssertionError as err:
    print("caught:", err)
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# **A dummy prefix.** Many SentencePiece models (Llama's, T5's) add a space before the text, so "Hello" is
# encoded as "▁Hello". Gemma's does not. A tokenizer trained with the default `add_dummy_prefix=True` gives
# different ids for the same text, and our encoder refuses it by name:

# %%
prefixed = spm.SentencePieceProcessor(model_proto=train_gemma_style(lines, 2000, add_dummy_prefix=True))
print("Gemma-style:  ", sp.EncodeAsPieces("Hello world"))
print("dummy prefix: ", prefixed.EncodeAsPieces("Hello world"))
try:
    BPETokenizer.from_bytes(prefixed.serialized_model_proto())
except ModelFormatError as err:
    print("caught:", err)
else:
    raise RuntimeError("the check missed the mistake")

# %% [markdown]
# ## Summary
#
# * Gemma's tokenizer is SentencePiece BPE: spaces become `▁`, no normalisation, no dummy prefix, digits split,
#   unseen characters fall back to UTF-8 byte pieces, so no text is ever unknown.
# * A `.model` file is a protobuf list of (text, score, kind); you read it in three checked steps (a varint by
#   hand, one field, the piece list) before the package's `read_varint` / `read_fields` / `read_model`. The
#   scores are the merge order.
# * Encoding = split into characters (user-defined pieces frozen) + repeatedly merge the best-scoring adjacent
#   pair + byte fallback. Our pure-Python encoder matches `sentencepiece` token for token.
# * Ids: pad 0, eos 1, **bos 2, always prepended**, unk 3; `<start_of_turn>` / `<end_of_turn>` are single tokens
#   (106 / 107 in Gemma). The 256,000-row embedding is 21% of 2B and 9% of 7B.
# * Package module produced: **`minigemma/bpe.py`**; the model itself uses **`minigemma/tokenizer.py`**.
#   Compression is measured on held-out text, not the tokenizer's own training text.
#
# **Exercise:** [exercises/01_tokenizer.ipynb](../exercises/01_tokenizer.ipynb) has you write the pieces yourself
# and grades them. Next lesson: 02, the embedding.
