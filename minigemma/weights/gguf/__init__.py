"""GGUF, llama.cpp's single-file format: how the Gemma 3 270M capstone model (notebook 10) is read.

Modules: file (the header reader: metadata, tensor table, offsets), model (Gemma 3 config from the metadata,
llama.cpp names to minigemma names, `load_gguf_model`), tokenizer (the SentencePiece model rebuilt from metadata).
"""
