"""A small SentencePiece BPE model trained on the spot with Gemma's options, for the tokenizer exercises.

The real Gemma tokenizer (256,000 pieces) is licence-gated, so exercise 01 uses a 400-piece model trained in about
0.1 s on the sentences below with the same settings: BPE, byte fallback, digits split, no dummy prefix, no
normalisation, ids pad 0 / eos 1 / bos 2 / unk 3. `toy_processor()` trains once per process and caches it.
Not here: Gemma's chat pieces (<start_of_turn> ...) or its 256,000-piece vocabulary.
"""
from __future__ import annotations

import functools
import io

CORPUS = """\
The capital of France is Paris, and the capital of Italy is Rome.
A language model reads tokens and predicts the token that comes next.
Gemma was released in two sizes, with two and seven billion parameters.
Each token id picks one row of the embedding matrix.
Attention lets every position look back at the positions before it.
The keys and values of earlier tokens are kept in a cache while the model writes.
Rotary embeddings turn pairs of numbers by an angle that grows with the position.
The norm divides each vector by its root mean square, then scales it by one plus a learned weight.
The feed forward layer widens the vector, gates it, and projects it back down.
Sampling picks the next token: greedy takes the best one, a temperature makes the choice bolder or safer.
Small models are quick to train and easy to read, which makes them good teachers.
The year 2024 saw 6 trillion training tokens and 18 layers in the smaller model.
"""


@functools.lru_cache(maxsize=1)
def toy_model_proto() -> bytes:
    import sentencepiece as spm
    lines = [line for line in CORPUS.splitlines() if line]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 20), model_writer=buffer, model_type="bpe", vocab_size=400,
        byte_fallback=True, split_digits=True, add_dummy_prefix=False, remove_extra_whitespaces=False,
        normalization_rule_name="identity", character_coverage=1.0, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        num_threads=1, minloglevel=2)
    return buffer.getvalue()


def toy_processor():
    """A sentencepiece.SentencePieceProcessor for the toy model (a fresh object over the cached model)."""
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_proto=toy_model_proto())


def piece_scores(processor) -> dict[str, float]:
    """{piece: score} for the ordinary pieces: the merge table a BPE encoder needs (no control or byte pieces)."""
    return {processor.id_to_piece(i): processor.get_score(i) for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_byte(i) or processor.is_unknown(i))}


def corpus_words() -> list[str]:
    return sorted({word for line in CORPUS.split() for word in [line.strip(".,:")] if word})
