"""A SentencePiece tokenizer rebuilt from the vocabulary inside a GGUF file.

A GGUF carries no tokenizer.model, but it stores everything SentencePiece needs, one entry per id:
`tokenizer.ggml.tokens` (the piece), `tokenizer.ggml.scores` (BPE merge priority: higher merges first) and
`tokenizer.ggml.token_type` (llama.cpp uses SentencePiece's own numbering: 1 normal, 2 unknown, 3 control,
4 user-defined, 5 unused, 6 byte). We write them back into a SentencePiece ModelProto, with two repairs:
  * llama.cpp spells the whitespace-run pieces with real spaces ("  "); SentencePiece sees spaces as U+2581 ("▁▁");
  * it marks Gemma's turn markers and <unusedN> slots "control", which SentencePiece never matches in text; the
    reference (transformers) matches them whole, so every control piece except pad/eos/bos becomes user-defined.
    (Then "<start_of_turn>" typed in a prompt is one token, as the chat format needs.)
The model is BPE with byte fallback, no dummy-prefix space and no normalisation, as Gemma's own tokenizer.model.
Not here: reading the file (file.py) or encoding (tokenizer.py does that once the proto is loaded).
"""
from __future__ import annotations

from pathlib import Path

from ...bpe import BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED
from .file import read_gguf
from ..tensor_files import CheckpointError

SPACE, META_SPACE = " ", "\u2581"


def piece_type(token_type: int, token_id: int, special: dict[str, int]) -> int:
    """SentencePiece type of one piece (see the module docstring for the two changes)."""
    if token_id == special["unk"]:
        return UNKNOWN
    if token_type == CONTROL and token_id not in (special["pad"], special["eos"], special["bos"]):
        return USER_DEFINED
    return token_type


def sentencepiece_proto(path) -> bytes:
    """The serialized SentencePiece ModelProto for the vocabulary of the GGUF at `path`."""
    from sentencepiece import sentencepiece_model_pb2 as sp_model
    metadata = read_gguf(path).metadata
    if metadata.get("tokenizer.ggml.model") != "llama":                 # llama.cpp's name for SentencePiece
        raise CheckpointError(f"{path}: GGUF tokenizer is {metadata.get('tokenizer.ggml.model')!r}, not a "
                              "SentencePiece vocabulary ('llama')")
    tokens, scores, types = (vocabulary_list(path, metadata, key) for key in ("tokens", "scores", "token_type"))
    if not len(tokens) == len(scores) == len(types):
        raise CheckpointError(f"{path}: GGUF vocabulary lists differ in length: {len(tokens)} tokens, "
                              f"{len(scores)} scores, {len(types)} token types")
    special = {name: special_id(path, metadata, key, len(tokens))
               for name, key in (("pad", "padding"), ("eos", "eos"), ("bos", "bos"), ("unk", "unknown"))}
    proto = sp_model.ModelProto()
    for token_id, (token, score, token_type) in enumerate(zip(tokens, scores, types)):
        piece = token.replace(SPACE, META_SPACE)
        proto.pieces.add(piece=piece, score=score, type=piece_type(token_type, token_id, special))
    trainer = proto.trainer_spec
    trainer.model_type = sp_model.TrainerSpec.BPE
    trainer.vocab_size, trainer.byte_fallback = len(tokens), True
    trainer.unk_id, trainer.bos_id, trainer.eos_id, trainer.pad_id = (special[k] for k in ("unk", "bos", "eos", "pad"))
    normalizer = proto.normalizer_spec
    normalizer.name, normalizer.add_dummy_prefix, normalizer.remove_extra_whitespaces = "identity", False, False
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()


def vocabulary_list(path, metadata: dict, key: str) -> list:
    """tokenizer.ggml.<key>: a list of strings (tokens), numbers (scores) or integers (token types)."""
    value = metadata.get(f"tokenizer.ggml.{key}")
    kinds = {"tokens": str, "scores": (int, float), "token_type": int}[key]
    if not isinstance(value, list) or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
        raise CheckpointError(f"{path}: GGUF key tokenizer.ggml.{key} should be a list of "
                              f"{'strings' if key == 'tokens' else 'numbers'}, found {value!r:.60}")
    if key == "token_type" and not all(NORMAL <= v <= BYTE for v in value):
        raise CheckpointError(f"{path}: GGUF key tokenizer.ggml.token_type holds "
                              f"{next(v for v in value if not NORMAL <= v <= BYTE)}; SentencePiece types are 1 to 6")
    return value


def special_id(path, metadata: dict, key: str, vocab_size: int) -> int:
    value = metadata.get(f"tokenizer.ggml.{key}_token_id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
        raise CheckpointError(f"{path}: GGUF key tokenizer.ggml.{key}_token_id should be an id below {vocab_size}, "
                              f"found {value!r:.40}")
    return value


def load_gguf_processor(path: Path):
    """A sentencepiece.SentencePieceProcessor for the GGUF's vocabulary."""
    import sentencepiece as spm
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(sentencepiece_proto(path))
    except RuntimeError as err:                                    # e.g. a piece holding NUL, a duplicate piece
        raise CheckpointError(f"{path}: the GGUF vocabulary is not a valid SentencePiece model ({err})") from None
    return processor
