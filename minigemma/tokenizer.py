"""Gemma's tokenizer: a SentencePiece BPE model with byte fallback, plus Gemma's special ids.

Gemma's vocabulary has 256,000 pieces. Digits are split one per token, unknown characters fall back to their UTF-8
bytes (pieces <0x00> .. <0xFF>), whitespace is kept as the meta symbol U+2581, and no text normalisation happens.
Special ids: pad 0, eos 1, bos 2, unk 3; chat turns use <start_of_turn> 106 and <end_of_turn> 107.
Always prepend BOS: Gemma was trained with it, and without it quality collapses.
Not here: training a tokenizer (notebook 01 does that with sentencepiece's trainer).
"""
from __future__ import annotations

from pathlib import Path

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3


class TokenizerError(ValueError):
    """The tokenizer file is missing or is not a SentencePiece model."""


def load_processor(path: Path):
    import sentencepiece as spm
    if not path.exists():
        raise TokenizerError(f"tokenizer file not found: {path}")
    if path.is_dir():
        path = path / "tokenizer.model"
        if not path.exists():
            raise TokenizerError(f"no tokenizer.model in directory {path.parent}")
    if path.suffix == ".gguf":                      # a GGUF stores its vocabulary, not a tokenizer.model
        from .weights.gguf.tokenizer import load_gguf_processor
        return load_gguf_processor(path)
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(path.read_bytes())
    except Exception as err:   # sentencepiece raises RuntimeError/OSError with C++ text
        raise TokenizerError(f"{path} is not a SentencePiece model ({err})") from None
    return processor


class Tokenizer:
    def __init__(self, path, processor=None):
        self.path = Path(path) if path is not None else None
        self.sp = processor if processor is not None else load_processor(Path(path))

    @classmethod
    def from_proto(cls, serialized: bytes) -> "Tokenizer":
        """Build from the bytes of a SentencePiece ModelProto (e.g. one made from a GGUF vocabulary)."""
        import sentencepiece as spm
        processor = spm.SentencePieceProcessor()
        processor.LoadFromSerializedProto(serialized)
        return cls(None, processor)

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    bos_id, eos_id, pad_id, unk_id = BOS_ID, EOS_ID, PAD_ID, UNK_ID

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        ids = self.sp.EncodeAsIds(text)
        return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

    def decode(self, ids, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special:
            ids = [i for i in ids if i not in (PAD_ID, EOS_ID, BOS_ID)]
        return self.sp.DecodeIds(ids)

    def id_to_piece(self, token_id: int) -> str:
        return self.sp.IdToPiece(int(token_id))

    def piece_to_id(self, piece: str) -> int:
        return self.sp.PieceToId(piece)

    def chat_prompt(self, turns) -> list[int]:
        """Ids of Gemma's instruction-tuned turn format (see chat_text), ending where the model's answer begins."""
        return self.encode(chat_text(turns))

    def chat_stop_ids(self) -> tuple[int, int]:
        """Ids that end the model's turn: EOS and <end_of_turn> (107 in Gemma 1, 106 in Gemma 3)."""
        return EOS_ID, self.piece_to_id(END_OF_TURN)


START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"


def chat_text(turns) -> str:
    """One user message, or messages alternating user, model, user, ... -> the prompt text for the model's turn.

    The same text as the chat template shipped with Gemma's -it tokenizers, minus its leading "<bos>" (encode adds
    the BOS id): each message is stripped of surrounding whitespace and the model's role is spelled "model".
    """
    messages = [turns] if isinstance(turns, str) else list(turns)
    if not messages or len(messages) % 2 == 0:
        raise ValueError(f"a chat prompt needs an odd number of messages (user, model, ..., user), got {len(messages)}")
    text = ""
    for index, message in enumerate(messages):
        role = "user" if index % 2 == 0 else "model"
        text += f"{START_OF_TURN}{role}\n{message.strip()}{END_OF_TURN}\n"
    return text + f"{START_OF_TURN}model\n"
