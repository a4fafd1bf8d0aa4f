# %% [markdown]
# # Exercise 01 · The tokenizer
#
# Gemma reads token ids, not text. Its tokenizer is a SentencePiece **BPE** model with byte fallback, split digits,
# no dummy-prefix space and no normalisation. The real 256,000-piece model is licence-gated, so these tasks use a
# 400-piece *toy* model trained a moment ago with exactly Gemma's settings and special ids
# (pad 0, eos 1, bos 2, unk 3).
#
# After each task, run the check cell below it. It tries your code on fresh random inputs and says either
# **passed** or what is wrong, with a hint. Do not edit the check cells: `minigemma grade` runs them.

# %%
from minigemma.grading import check_encode, check_chat_prompt, check_byte_fallback, check_bpe_encode
from minigemma.grading import toy_processor, piece_scores

sp = toy_processor()                          # a sentencepiece.SentencePieceProcessor
print(sp.encode("The capital of France is Paris.", out_type=str))

# %% [markdown]
# ## Task 1 · Encode a prompt (2 points)
#
# Write `encode(sp, text)` returning the list of token ids Gemma expects for a prompt: the ids SentencePiece gives
# for `text` (`sp.encode(text)`), with Gemma's special beginning-of-sequence token in front. No end-of-sequence
# token: the prompt has not ended.

# %% solution tokenizer-encode
def encode(sp, text):
    ### BEGIN SOLUTION
    return [2] + sp.encode(text)
    ### END SOLUTION

# %% grade tokenizer-encode points=2
check_encode(encode)

# %% [markdown]
# ## Task 2 · The chat turn format (2 points)
#
# Instruction-tuned Gemma expects each turn wrapped in `<start_of_turn>` … `<end_of_turn>` pieces, with the role
# (`user` or `model`) on the first line of the turn and a newline after each `<end_of_turn>`. The prompt ends by
# *opening* the model's turn, so that the model writes the answer.
#
# Write `chat_prompt(message)` returning the prompt **text** for a single user message (no `<bos>` in the text:
# `encode` adds the BOS id).

# %% solution tokenizer-chat
def chat_prompt(message):
    ### BEGIN SOLUTION
    return f"<start_of_turn>user\n{message}<end_of_turn>\n<start_of_turn>model\n"
    ### END SOLUTION

# %% grade tokenizer-chat points=2
check_chat_prompt(chat_prompt)

# %% [markdown]
# ## Task 3 · Byte fallback (2 points)
#
# A character missing from the vocabulary is not mapped to `<unk>`: it falls back to one piece per **UTF-8 byte**,
# spelled `<0xNN>` with two upper-case hex digits. Write `byte_fallback(char)` returning those pieces for one
# character, e.g. `byte_fallback("€") == ["<0xE2>", "<0x82>", "<0xAC>"]`.

# %% solution tokenizer-bytes
def byte_fallback(char):
    ### BEGIN SOLUTION
    return [f"<0x{byte:02X}>" for byte in char.encode("utf-8")]
    ### END SOLUTION

# %% grade tokenizer-bytes points=2
check_byte_fallback(byte_fallback)

# %% [markdown]
# ## Task 4 · BPE merging, by hand (4 points)
#
# Now reproduce SentencePiece's encoder yourself. `scores = piece_scores(sp)` maps every ordinary piece to its
# score; a higher score means the trainer learned that merge earlier. Write `bpe_encode(text, scores)` returning the
# list of pieces, exactly as `sp.encode(text, out_type=str)` would:
#
# 1. replace every space by the meta symbol `"▁"` (U+2581); add nothing in front;
# 2. start from single characters;
# 3. repeatedly merge the **adjacent pair whose concatenation is a piece with the highest score** (the leftmost
#    such pair on ties) until no adjacent pair forms a piece;
# 4. replace each remaining symbol that is not a piece by its byte-fallback pieces (Task 3).
#
# Think about it: why is "merge the leftmost pair you can" not the same thing?

# %% solution tokenizer-bpe
def bpe_encode(text, scores):
    ### BEGIN SOLUTION
    symbols = list(text.replace(" ", "\u2581"))
    while True:
        best = None                                   # (score, position) of the best mergeable pair
        for i in range(len(symbols) - 1):
            merged = symbols[i] + symbols[i + 1]
            if merged in scores and (best is None or scores[merged] > best[0]):
                best = (scores[merged], i)
        if best is None:
            break
        i = best[1]
        symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
    pieces = []
    for symbol in symbols:
        pieces.extend([symbol] if symbol in scores else byte_fallback(symbol))
    return pieces
    ### END SOLUTION

# %% grade tokenizer-bpe points=4
check_bpe_encode(bpe_encode)
