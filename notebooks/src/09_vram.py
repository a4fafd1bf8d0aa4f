# Notebook 09: VRAM math. Weights by format, KV cache, temporary buffers, overhead; checked against real bytes.

# %% [markdown]
# # 09 · VRAM math: will Gemma fit on my GPU?
#
# **What you will build.** `minigemma/memory/inference.py` and `minigemma/memory/formats.py`: a transparent model of the
# memory Gemma inference needs, from the config alone, and the `minigemma vram` command that prints it as a
# table (weight format × context length → memory, and the smallest common GPU that fits).
#
# $$\text{memory} = \underbrace{\text{weights}}_{\text{format}} + \underbrace{\text{KV cache}}_{\text{context}}
# + \underbrace{\text{temporary buffers}}_{\text{peak of prefill / decode}} + \underbrace{\text{overhead}}_{
# \text{an assumption}}$$
#
# **What you need to know.** Gemma's shapes (notebook 07: 2B has 8 query heads and **1** key/value head, 7B has
# 16 and 16, both with `head_dim` 256), the KV cache (notebook 08), eager vs fused (`sdpa`) attention
# (notebook 05).
#
# **How we check.** Every predicted byte count is compared with the bytes of real tensors: the weights and KV
# cache of full-size 2B and 7B (on PyTorch's `meta` device, which has shapes and dtypes but no memory), the peak
# of temporary buffers measured by `torch.profiler` on small models, and the per-tensor sizes of a real GGUF
# file. Public calculators get Gemma wrong in three ways we will see: wrong head counts, forgotten logits, and
# forgotten attention buffers.

# %%
import io
from pathlib import Path

import torch
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
import ipywidgets as widgets
from IPython.display import display

import minigemma as mg
from minigemma.config import GemmaConfig
from minigemma.gemma3 import Gemma3Config, model_class
from minigemma.memory.inference import layer_of
from minigemma.kv_cache import KVCache
from minigemma.memory.inference import (GiB, GB, CUDA_CONTEXT_BYTES, Estimate, describe, dtype_bytes, peak_phase,
                              tensor_bytes, weight_bytes)
from minigemma.memory.vram_cli import GPUS, smallest_gpu
from minigemma.memory.formats import (BF16, F16, F32, INT4_G128, INT8_ROWS, K_QUANT_FALLBACK, NF4, NF4_DQ,
                                      Q4_K, Q5_K, Q6_K, Q8_0, FORMAT_NOTES, Storage, Tensor, storage_for)

torch.manual_seed(0)
gemma_2b, gemma_7b = GemmaConfig.gemma_2b(), GemmaConfig.gemma_7b()
print("torch", torch.__version__)

# %% [markdown]
# ## 1. Units: GiB and GB
#
# Memory chips come in powers of two: a "24 GB" card holds $24 \times 2^{30}$ bytes, **24 GiB**. File sizes and
# many spec pages use powers of ten: 1 GB $= 10^9$ bytes. The two differ by $2^{30}/10^9 \approx 7.4\%$, enough
# to turn "fits" into "does not". Every figure here is a count of bytes, printed in both units with the unit
# named.

# %%
print(f"1 GiB = {GiB:,} bytes = {GiB / GB:.4f} GB")
print("5,012,344,832 bytes =", describe(5_012_344_832))     # Gemma 2B in bfloat16: '5 GB' or '4.67 GiB'

# %% [markdown]
# ## 2. The shapes that decide everything
#
# | | 2B | 7B | what spec pages often say |
# |---|---|---|---|
# | layers $L$ | 18 | 28 | |
# | hidden $D$ | 2048 | 3072 | |
# | query heads $H$ | 8 | 16 | 16 / 32 |
# | key/value heads $H_{kv}$ | **1** (MQA) | 16 (MHA) | 1 / 32 |
# | head_dim $d_h$ | 256 | 256 | $D/H$ = 128 / 96 |
# | GeGLU width $F$ | 16384 | 24576 | |
# | vocabulary $V$ | 256000 | 256000 | |
#
# The checkpoints decide, not the spec pages: the 2B `k_proj` weight has $H_{kv} d_h = 256$ rows, the 7B
# `q_proj` has $16 \times 256 = 4096$ rows for a hidden size of only 3072. Notebook 07 read them off the
# tensors; here we take them from the presets.

# %%
for name, cfg in (("2B", gemma_2b), ("7B", gemma_7b)):
    print(f"{name}: L={cfg.num_layers} D={cfg.hidden_size} H={cfg.num_heads} H_kv={cfg.num_kv_heads} "
          f"d_h={cfg.head_dim} F={cfg.intermediate_size} V={cfg.vocab_size}")
assert (gemma_2b.num_heads, gemma_2b.num_kv_heads, gemma_7b.num_heads, gemma_7b.num_kv_heads) == (8, 1, 16, 16)

# %% [markdown]
# ## 3. Weights, tensor by tensor
#
# Each weight's shape follows from the config; no checkpoint is needed. Per layer:
#
# $$\underbrace{D \cdot H d_h}_{q} + \underbrace{2 \cdot D \cdot H_{kv} d_h}_{k,\ v} + \underbrace{H d_h
# \cdot D}_{o} \;+\; \underbrace{3 \cdot D F}_{\text{gate, up, down}} \;+\; \underbrace{2D}_{\text{norms}},$$
#
# plus the embedding $V D$ (used twice, as input table and as tied output head, but stored once) and the final
# norm $D$. Written out by hand, with minigemma's names and a *group* (embedding, attention, mlp, norms):

# %%
def weight_tensors_by_hand(config):
    d, f, hd = config.hidden_size, config.intermediate_size, config.head_dim
    q_rows, kv_rows = config.num_heads * hd, config.num_kv_heads * hd
    tensors = [Tensor("embed.weight", "embedding", (config.vocab_size, d))]
    for i in range(config.num_layers):
        p = f"layers.{i}."
        tensors += [Tensor(p + "attn_norm.weight", "norms", (d,), i),
                    Tensor(p + "attn.q_proj.weight", "attention", (q_rows, d), i),
                    Tensor(p + "attn.k_proj.weight", "attention", (kv_rows, d), i),
                    Tensor(p + "attn.v_proj.weight", "attention", (kv_rows, d), i),
                    Tensor(p + "attn.o_proj.weight", "attention", (d, q_rows), i),
                    Tensor(p + "mlp_norm.weight", "norms", (d,), i),
                    Tensor(p + "mlp.gate_proj.weight", "mlp", (f, d), i),
                    Tensor(p + "mlp.up_proj.weight", "mlp", (f, d), i),
                    Tensor(p + "mlp.down_proj.weight", "mlp", (d, f), i)]
    return tensors + [Tensor("norm.weight", "norms", (d,))]

# %% [markdown]
# The package does not keep a second copy of this list: it reads the same names and shapes off the model itself,
# built on the meta device (no memory is allocated), so the list can never drift from the code. The two agree:

# %% export minigemma.memory.weight_tensors minigemma.memory.inference.weight_group

# %%
for cfg in (gemma_2b, gemma_7b):
    assert weight_tensors_by_hand(cfg) == weight_tensors(cfg)
print("hand-written list == the list read off the meta model, for 2B and 7B")

# %%
for name, cfg in (("2B", gemma_2b), ("7B", gemma_7b)):
    groups = {}
    for t in weight_tensors(cfg):
        groups[t.group] = groups.get(t.group, 0) + t.numel
    print(f"{name}: {sum(groups.values()):>13,} parameters  " + "  ".join(f"{g} {n:,}" for g, n in groups.items()))

# %% [markdown]
# **Check: the predicted bytes are the bytes of the real tensors, tensor by tensor.** We build the full 2B and
# 7B on the `meta` device (no memory is allocated, but every tensor has its shape and dtype, so `.nbytes` is
# exact) in float32 and bfloat16, and compare each tensor's bytes with the prediction. The parameter counts are
# also the published ones: 2,506,172,416 and 8,537,680,896.

# %%
for name, cfg in (("2B", gemma_2b), ("7B", gemma_7b)):
    with torch.device("meta"):
        model = mg.Gemma(cfg)
    for fmt, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        real = {n: p.nbytes for n, p in model.to(dtype).state_dict().items()}
        assert tensor_bytes(cfg, fmt) == real, f"{name} {fmt}"
    print(f"{name}: {len(real)} tensors, bf16 weights {sum(real.values()):,} bytes = {describe(sum(real.values()))}"
          f" — equal to the meta model, tensor by tensor")
assert sum(t.numel for t in weight_tensors(gemma_2b)) == 2_506_172_416
assert sum(t.numel for t in weight_tensors(gemma_7b)) == 8_537_680_896

# %% [markdown]
# ## 4. Quantized weights: bits per weight, scales included
#
# A quantized format stores weights in **blocks** that carry their own scales, so "4-bit" costs more than 4
# bits. From the block layouts (ggml's `block_q8_0`, `block_q4_K`, ...; bitsandbytes; AWQ):
#
# $$\text{Q8\_0}: \frac{(2 + 32)\ \text{bytes} \times 8}{32\ \text{weights}} = 8.5, \qquad
# \text{Q4\_K}: \frac{(4 + 12 + 128) \times 8}{256} = 4.5, \qquad
# \text{Q6\_K}: \frac{(128 + 64 + 16 + 2) \times 8}{256} = 6.5625,$$
#
# $$\text{NF4}: 4 + \frac{32}{64} = 4.5, \qquad \text{NF4 + double quantization}: 4 + \frac{8}{64} +
# \frac{32}{64 \cdot 256} \approx 4.127, \qquad \text{int4, group 128 (AWQ)}: 4 + \frac{16 + 4}{128} = 4.156.$$

# %%
for storage in (F32, BF16, Q8_0, Q6_K, Q5_K, Q4_K, NF4, NF4_DQ, INT4_G128):
    print(f"{storage.name:10s} {storage.block:>6} weights per block, {storage.block_bytes:>7} bytes "
          f"-> {storage.bits_per_weight:.4f} bits per weight")
print(f"{INT8_ROWS.name}: 8 + 32 / row length bits (bitsandbytes LLM.int8: one fp32 scale per output row)")

# %% [markdown]
# Tools do not quantize every tensor the same way. bitsandbytes (int8, NF4) and AWQ/GPTQ (int4) replace only the
# linear layers: the embedding, which for Gemma is also the output head (a fifth of the 2B's parameters), and
# the norms stay in 16 bits. llama.cpp's `Q4_K_M` keeps norms in float32, asks for `Q6_K` for the tied
# embedding, and gives `attn_v` and `ffn_down` `Q6_K` on the layers chosen by `use_more_bits`. K-quants split a
# row into 256-weight blocks, so a row whose length is not a multiple of 256 falls back to a 32-weight format
# (`K_QUANT_FALLBACK` in `minigemma/memory/formats.py`: `Q4_K → Q5_0`, `Q5_K → Q5_1`, `Q6_K → Q8_0`). Gemma 1's
# rows are 2048 or 3072 wide, so its embedding really is `Q6_K` (6.56 bits per weight). The Gemma 3 270M's rows
# are 640 wide (2.5 blocks): there the tied embedding, like `attn_v`, is stored as **`Q8_0`** (8.5 bits), and
# `attn_q`, `attn_k`, `ffn_gate` and `ffn_up` as `Q5_0`. Notebook 10 reads the same file and says the same.

# %% export minigemma.memory.formats.use_more_bits minigemma.memory.formats.gguf_storage

# %% [markdown]
# **Check: the `Q4_K_M` recipe reproduces a real GGUF file byte for byte.** The course's Gemma 3 270M file was
# made by llama.cpp's quantizer. We read its tensor table (names, types, shapes) with minigemma's GGUF reader,
# size every tensor with gguf-py's own table of block sizes, and compare with the recipe.
# Its hidden size 640 is not a multiple of 256, so this one file exercises the fallbacks too.

# %%
import gguf
from minigemma.weights.gguf.model import default_gguf_path, minigemma_name
from minigemma.weights.gguf.file import read_gguf        # minigemma's GGUF reader (minigemma/weights/gguf/file.py)

gguf_file = read_gguf(default_gguf_path())     # the header: names, ggml types, shapes, bytes (gguf-py's table)
in_file = {minigemma_name(name): info.nbytes for name, info in gguf_file.tensors.items()}
predicted = tensor_bytes(Gemma3Config.gemma3_270m(), "q4_k_m")
assert predicted == in_file
types = {}
for info in gguf_file.tensors.values():
    kind = gguf.GGMLQuantizationType(info.ggml_type).name
    types[kind] = types.get(kind, 0) + 1
print(f"{len(in_file)} tensors, {sum(in_file.values()):,} bytes: recipe == file, tensor by tensor. Types: {types}")
embedding_type = gguf.GGMLQuantizationType(gguf_file.tensors["token_embd.weight"].ggml_type).name
embedding_2b = next(t for t in weight_tensors(gemma_2b) if t.group == "embedding")
assert embedding_type == "Q8_0" == K_QUANT_FALLBACK["Q6_K"].name                     # 640 % 256 != 0: fallback
assert storage_for(embedding_2b, gemma_2b.num_layers, "q4_k_m") is Q6_K               # 2048 % 256 == 0: no fallback
print(f"tied embedding: {embedding_type} in the 270M file (rows of 640); Q6_K for Gemma 2B (rows of 2048)")

# %%
formats = ["fp32", "bf16", "int8", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "nf4", "nf4-dq", "int4"]
print(f"{'format':8s} {'2B GiB':>7s} {'bits/w':>7s} {'7B GiB':>7s} {'bits/w':>7s}   what")
sizes = {}
for fmt in formats:
    cells = []
    for cfg in (gemma_2b, gemma_7b):
        total = sum(weight_bytes(cfg, fmt).values())
        params = sum(t.numel for t in weight_tensors(cfg))
        sizes[fmt, cfg.num_layers] = total
        cells += [f"{total / GiB:7.2f}", f"{8 * total / params:7.3f}"]
    print(f"{fmt:8s} " + " ".join(cells) + f"   {FORMAT_NOTES[fmt]}")

fig, ax = plt.subplots(figsize=(9, 3.2))
x = range(len(formats))
ax.bar([i - 0.2 for i in x], [sizes[f, 18] / GiB for f in formats], 0.4, label="Gemma 2B")
ax.bar([i + 0.2 for i in x], [sizes[f, 28] / GiB for f in formats], 0.4, label="Gemma 7B")
ax.set_xticks(list(x), formats)
ax.set_ylabel("weights, GiB")
ax.legend()
ax.set_title("Weights alone, by format (scales and the formats' per-tensor choices included)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The 2B's int8 and int4 are far from 8 and 4 bits per weight: bitsandbytes and AWQ keep the 524M-parameter
# embedding in 16 bits. (`Q4_K_M` of the 2B is 1.51 GiB = 1.63 GB, the size of the published GGUF files.)

# %% [markdown]
# ## 5. The KV cache
#
# For every layer, every cached position keeps one key and one value vector per KV head:
#
# $$\text{KV bytes} = 2 \times L \times H_{kv} \times d_h \times \text{bytes per element} \times
# \text{tokens} \times \text{batch}.$$
#
# `minigemma.kv_cache.KVCache` pre-allocates exactly that: two tensors of shape
# `(layers, batch, kv_heads, max_len, head_dim)`.

# %% export minigemma.memory.kv_cache_bytes

# %%
for name, cfg in (("2B", gemma_2b), ("7B", gemma_7b)):
    per_token = kv_cache_bytes(cfg, tokens=1)
    cache = KVCache(cfg, batch_size=1, max_len=8192, dtype=torch.bfloat16, device="meta")
    assert cache.nbytes == kv_cache_bytes(cfg, 8192, 1, "bf16")
    print(f"{name}: {per_token:,} bytes per token in bf16; 8,192 tokens: {describe(cache.nbytes)}, "
          "== KVCache.nbytes")

# %% [markdown]
# **Why MQA matters.** All 8 query heads of the 2B read the *same* single key/value head, so each token stores
# one 256-dimensional key and value per layer. With 16 KV heads of 256 dimensions the cache would be 16 times
# larger. The spec-sheet head counts give other wrong answers: with $d_h$ computed as $D/H$ they *underestimate*
# (2B: 16 heads → $d_h$ 128, half the truth; 7B: 32 heads → $d_h$ 96, three quarters), and reading the 2B as
# multi-head attention overestimates eightfold.

# %%
def kv_per_token(layers, kv_heads, head_dim, nbytes=2):
    return 2 * layers * kv_heads * head_dim * nbytes

readings = {
    "2B, truth: 8 query heads, 1 KV head, d_h 256": kv_per_token(18, 1, 256),
    "2B with 16 KV heads of d_h 256": kv_per_token(18, 16, 256),
    "2B spec sheet 16/1, d_h = 2048/16 = 128": kv_per_token(18, 1, 128),
    "2B spec sheet read as MHA: 16 KV heads, d_h 128": kv_per_token(18, 16, 128),
    "7B, truth: 16 KV heads, d_h 256": kv_per_token(28, 16, 256),
    "7B spec sheet 32/32, d_h = 3072/32 = 96": kv_per_token(28, 32, 96),
}
assert readings["2B, truth: 8 query heads, 1 KV head, d_h 256"] == kv_cache_bytes(gemma_2b, 1)
assert readings["2B with 16 KV heads of d_h 256"] == 16 * kv_cache_bytes(gemma_2b, 1)
for label, nbytes in readings.items():
    print(f"{label:50s} {nbytes:>9,} B/token  at 8k tokens: {describe(8192 * nbytes)}")

# %% [markdown]
# ## 6. Temporary buffers: what is alive at the peak
#
# During a forward pass, tensors are created and freed step by step. The memory needed on top of weights and
# cache is the largest set alive *at the same time*. `forward_phases` lists, for each step of minigemma's
# forward pass (traced from its code), the tensors alive at that step, with $B$ = batch, $S$ = new tokens,
# $T$ = keys visible, $b$ = bytes per element:
#
# * the causal mask: an int64 $S \times T$ matrix of distances while it is built;
# * RoPE: the rotation is done in float32, so each of q and k briefly costs float32 copies;
# * **eager attention:** $B H S T$ scores, rounded, copied to float32, masked, soft-maxed: about $(b + 8)$ bytes
#   per score. Fused `sdpa` never stores them;
# * the MLP: three $B S F$ tensors alive at once (GELU of the gate, up, and their product);
# * **logits:** $B S V$ values, with $V$ = 256,000. Generation needs only the last position
#   (`model(ids, last_only=True)`); asking for all positions is the trap.
#
# Prefill processes the whole prompt ($S = T$ = context); decode one token ($S = 1$, $T$ = context).

# %% export minigemma.memory.expanded_kv_copy

# %% export minigemma.memory.forward_phases

# %%
def show_phases(cfg, tokens, attention, last_only=True):
    phases = forward_phases(cfg, tokens, 1, "bf16", 0, attention, last_only)
    peak, _ = peak_phase(phases)
    for name, buffers in phases.items():
        mark = "  <- peak" if name == peak else ""
        print(f"  {name:26s} {sum(buffers.values()) / GiB:6.2f} GiB{mark}")
    return phases[peak]

print("Gemma 2B, bf16, prefill of 4,096 tokens, sdpa, logits of the last position:")
at_peak = show_phases(gemma_2b, 4096, "sdpa")
print("  alive at the peak:", {k: f"{v / 2**20:.1f} MiB" for k, v in at_peak.items()})
print("the same with eager attention:")
_ = show_phases(gemma_2b, 4096, "eager")
print("the same, sdpa, logits for every position:")
_ = show_phases(gemma_2b, 4096, "sdpa", last_only=False)

# %% [markdown]
# At 4k tokens the 2B's eager scores take $8 \times 4096^2 \times 10$ bytes = 1.25 GiB, and all-position
# logits $4096 \times 256000 \times 2$ bytes = 1.95 GiB: each over ten times the 2B's whole KV cache at 8k
# tokens (0.14 GiB).
#
# **Check: the prediction against the profiler.** `torch.profiler` with `profile_memory=True` records every
# allocation and free of PyTorch's CPU allocator, with its size and time; the running sum's maximum is the peak
# of temporary memory during the call (weights and cache were allocated before). One kind of block is left out:
# a kernel's own scratch space, allocated and freed inside one operator (for instance the float32 copies a
# bfloat16 matrix product makes on CPUs without bfloat16 instructions). It belongs to the CPU's kernel library,
# not to the model: the same code needs it on one laptop and not on the next. We run prefills of small
# 2B-shaped (MQA) and 7B-shaped (MHA) models and compare.

# %% [markdown]
# The measuring is plumbing, not the lesson, so we import it: `minigemma/memory/measure.py`'s `cpu_peak_bytes(fn)`
# runs `fn` under the profiler, keeps the CPU allocator's events (dropping kernel scratch, as above) and returns the
# peak of their running sum above what was allocated before.

# %%
from minigemma.memory.measure import cpu_peak_bytes

# %%
small = {"2B-shaped": GemmaConfig.tiny(vocab_size=16384, hidden_size=256, intermediate_size=2048, num_heads=8,
                                       num_kv_heads=1, head_dim=32, max_seq_len=512),
         "7B-shaped": GemmaConfig.tiny(vocab_size=16384, hidden_size=192, intermediate_size=1536, num_heads=16,
                                       num_kv_heads=16, head_dim=16, max_seq_len=512)}
comparison = []
for name, cfg in small.items():
    for attention, last_only in (("sdpa", True), ("eager", True), ("sdpa", False)):
        torch.manual_seed(0)
        model = mg.Gemma(cfg).to(torch.bfloat16).eval().set_attention(attention)
        cache = model.new_cache(1, 256)
        ids = torch.randint(0, cfg.vocab_size, (1, 256))
        with torch.no_grad():
            measured = cpu_peak_bytes(lambda: model(ids, cache=cache, last_only=last_only))
        phase, predicted = peak_phase(forward_phases(cfg, 256, 1, "bf16", 0, attention, last_only))
        comparison.append((predicted, measured))
        print(f"{name} {attention:5s} last_only={last_only!s:5s}: predicted {predicted:>9,} B, measured "
              f"{measured:>9,} B (peak: {phase})")
        assert abs(predicted - measured) <= 0.01 * measured      # the bound tests/test_memory.py uses

# %% [markdown]
# ## 7. Putting it together: 2B and 7B at 1k, 4k and 8k tokens
#
# `estimate` adds the four terms. The context is the worst case: a prompt that fills the whole cache is
# prefilled at once; then the decode step at that length is checked too, and the larger peak counts. The
# overhead is an explicit assumption, not a fudge factor: the CUDA context and loaded kernels (about half a
# GiB; `nvidia-smi` shows it, `torch.cuda.max_memory_allocated` does not). Change it if you measured yours.

# %% export minigemma.memory.estimate

# %%
print(f"{'model':5s} {'tokens':>6s} {'weights':>9s} {'KV cache':>9s} {'buffers':>9s} {'overhead':>9s} "
      f"{'total GiB':>10s} {'total GB':>9s}   peak at")
for name, cfg in (("2B", gemma_2b), ("7B", gemma_7b)):
    for context in (1024, 4096, 8192):
        e = estimate(cfg, context)
        parts = [sum(e.weights.values()), e.kv_cache, sum(e.buffers.values()), sum(e.overhead.values())]
        print(f"{name:5s} {context:>6,} " + " ".join(f"{p / GiB:9.2f}" for p in parts)
              + f" {e.total / GiB:10.2f} {e.total / GB:9.2f}   {e.peak_at}")

# %% [markdown]
# Line by line for the 7B at 8,192 tokens in bfloat16:
#
# * weights: $8{,}537{,}680{,}896 \times 2$ = 17,075,361,792 bytes;
# * KV cache: $2 \times 28 \times 16 \times 256 \times 2 \times 8192$ = 3,758,096,384 bytes;
# * buffers at the peak (the MLP of prefill): $3 \times 8192 \times 24576 \times 2$ bytes for gate/up/product,
#   plus four $8192 \times 3072 \times 2$ residual-stream tensors, the causal mask and RoPE tables;
# * overhead: $2^{29}$ bytes, assumed.

# %%
e = estimate(gemma_7b, 8192)
assert sum(e.weights.values()) == 8_537_680_896 * 2
assert e.kv_cache == 2 * 28 * 16 * 256 * 2 * 8192
for label, nbytes in e.buffers.items():
    print(f"  {label:40s} {nbytes:>15,} B")
print(f"  {'total':40s} {e.total:>15,} B = {describe(e.total)}")

# %%
contexts = list(range(256, 8193, 256))
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, (name, cfg) in zip(axes, (("Gemma 2B", gemma_2b), ("Gemma 7B", gemma_7b))):
    runs = [estimate(cfg, n) for n in contexts]
    layers = {"weights": [sum(r.weights.values()) for r in runs], "KV cache": [r.kv_cache for r in runs],
              "peak buffers": [sum(r.buffers.values()) for r in runs],
              "CUDA context (assumed)": [sum(r.overhead.values()) for r in runs]}
    ax.stackplot(contexts, *[[v / GiB for v in values] for values in layers.values()], labels=list(layers))
    eager = [estimate(cfg, n, attention="eager").total / GiB for n in contexts]
    all_logits = [estimate(cfg, n, last_only=False).total / GiB for n in contexts]
    ax.plot(contexts, eager, "k--", label="total with eager attention")
    ax.plot(contexts, all_logits, "k:", label="total with all-position logits")
    ax.set_title(f"{name}, bf16, batch 1")
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("GiB")
axes[0].legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Measured on a GPU?
#
# `benchmarks/vram_gpu.py` runs random-weight 2B and 7B in bfloat16 on a CUDA GPU (prefill at 1k/4k/8k, then a
# few decode steps), reads `torch.cuda.max_memory_allocated`, and writes `benchmarks/vram_gpu.csv` with the
# device name and date. When that file exists, the cell below plots it; otherwise it shows the CPU comparison of
# section 6, which is what the test suite checks on every run.

# %%
csv_path = Path("../benchmarks/vram_gpu.csv")
fig, ax = plt.subplots(figsize=(5, 4))
if csv_path.exists():
    import csv
    rows = list(csv.DictReader(csv_path.open()))
    for row in rows:
        ax.scatter(int(row["predicted_peak"]) / GiB, int(row["measured_peak"]) / GiB, color="C0")
    print(f"{len(rows)} GPU runs recorded ({rows[0]['device']}, {rows[0]['date']}); worst measured/predicted "
          f"ratio {max(float(r['measured_over_predicted']) for r in rows):.3f}")
    unit, scale, title = "GiB", GiB, "GPU: max_memory_allocated vs prediction"
else:
    print("No GPU run is recorded yet (benchmarks/vram_gpu.csv is absent); showing the CPU comparison.")
    unit, scale, title = "MiB", 2**20, "CPU (profiler): measured vs predicted peak buffers"
    ax.scatter([p / scale for p, m in comparison], [m / scale for p, m in comparison])
top = ax.get_xlim()[1]
ax.plot([0, top], [0, top], "k:", label="measured = predicted")
ax.set_xlabel(f"predicted, {unit}")
ax.set_ylabel(f"measured, {unit}")
ax.set_title(title, fontsize=10)
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 8. A calculator
#
# Pick a model, the compute dtype, the context and the batch: each bar is one weight format, stacked as
# weights + KV cache + peak buffers + the assumed CUDA context, against common GPU sizes. (Float formats compute
# in their own dtype; quantized ones in the chosen dtype. The widget needs a live kernel; the figure just below
# it is the same chart for the 7B at 8k tokens.)

# %%
WIDGET_FORMATS = ["fp32", "bf16", "int8", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "nf4", "int4"]

def draw_stack(ax, cfg, dtype, context, batch, attention="sdpa", last_only=True):
    parts = {"weights": [], "KV cache": [], "peak buffers": [], "CUDA context (assumed)": []}
    for fmt in WIDGET_FORMATS:
        e = estimate(cfg, context, batch, fmt, fmt if fmt in ("fp32", "bf16") else dtype, None, attention,
                     last_only)
        for key, value in zip(parts, (sum(e.weights.values()), e.kv_cache, sum(e.buffers.values()),
                                      sum(e.overhead.values()))):
            parts[key].append(value / GiB)
    left = [0.0] * len(WIDGET_FORMATS)
    for label, values in parts.items():
        ax.barh(WIDGET_FORMATS, values, left=left, label=label)
        left = [a + b for a, b in zip(left, values)]
    for name, capacity in GPUS:                     # dashed lines at common GPU sizes, labelled on top
        if capacity / GiB <= max(left) * 1.3:
            ax.axvline(capacity / GiB, color="gray", lw=0.8, ls="--")
            ax.text(capacity / GiB, -0.6, name.split(" ")[0] + " GiB", fontsize=7, ha="center", va="bottom")
    ax.set_ylim(len(WIDGET_FORMATS) - 0.5, -1.2)   # first format on top, room for the labels
    ax.set_xlabel("GiB")
    ax.legend(fontsize=7, loc="lower right")
    return left

def stack_png(model_name, dtype, context, batch, attention, all_logits):
    cfg = {"2b": gemma_2b, "7b": gemma_7b}[model_name]
    fig = Figure(figsize=(8, 3.6), dpi=80)
    ax = fig.subplots()
    totals = draw_stack(ax, cfg, dtype, context, batch, attention, not all_logits)
    ax.set_title(f"Gemma {model_name.upper()}, {context:,} tokens, batch {batch}: bf16 needs "
                 f"{totals[1]:.2f} GiB -> {smallest_gpu(int(totals[1] * GiB)) or 'more than 80 GiB'}", fontsize=9)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    return png.getvalue()

controls = {"model_name": widgets.Dropdown(options=["2b", "7b"], value="2b", description="model"),
            "dtype": widgets.Dropdown(options=["bf16", "fp16", "fp32"], value="bf16", description="dtype"),
            "context": widgets.IntSlider(value=4096, min=256, max=8192, step=256, description="context"),
            "batch": widgets.IntSlider(value=1, min=1, max=32, description="batch"),
            "attention": widgets.Dropdown(options=["sdpa", "eager"], value="sdpa", description="attention"),
            "all_logits": widgets.Checkbox(value=False, description="all-position logits")}
chart = widgets.Image(format="png", layout=widgets.Layout(width="640px"))  # shown at its drawn size: 8 in x 80 dpi

def redraw(_change=None):
    chart.value = stack_png(**{name: control.value for name, control in controls.items()})

for control in controls.values():
    control.observe(redraw, names="value")
redraw()
display(widgets.VBox([widgets.HBox(list(controls.values())[:3]), widgets.HBox(list(controls.values())[3:]),
                      chart]), exclude={"text/plain"})

# %% [markdown]
# **Check: the widget redraws from the same `estimate`.** Changing a control from code changes the picture.

# %%
before = chart.value
controls["context"].value = 8192
assert chart.value != before
controls["context"].value = 4096
print("the chart follows the controls")

fig, ax = plt.subplots(figsize=(8, 3.6))
totals = draw_stack(ax, gemma_7b, "bf16", 8192, 1)
ax.set_title("Gemma 7B, 8,192 tokens, batch 1, sdpa, last-position logits", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9. The command line
#
# `minigemma vram` prints the same numbers as a table, in the layout of public calculators (format × context),
# with the smallest common GPU that fits and a breakdown in bytes. `--model` also takes a checkpoint path (a
# Hugging Face directory or a `.ckpt`): only its config is read.
#
# ```bash
# minigemma vram --model 2b --context 1024,4096,8192 --dtype bf16 --batch 1
# minigemma vram --model path/to/gemma-7b --context 8k --attention eager --all-logits
# ```

# %%
from minigemma.cli import main
exit_code = main(["vram", "--model", "7b", "--context", "1024,4096,8192", "--dtype", "bf16", "--batch", "1"])
assert exit_code == 0

# %% [markdown]
# ## 10. Common mistakes
#
# * **Spec-sheet head counts.** 2B has 8 query heads and 1 KV head, 7B 16 and 16, with `head_dim` 256; $D/H$ is
#   not the head size. Wrong counts misjudge the KV cache by 0.5× to 16× (section 5).
# * **Forgetting the logits.** With a 256k vocabulary, logits for every position of an 8k prompt are 3.9 GiB in
#   bf16, nearly as much as the 2B's weights (4.67 GiB). Ask only for the last position when generating.
# * **Eager attention at long context.** Its scores grow as $H S^2$: about 10 GiB for the 7B at 8k tokens.
#   Fused attention (`sdpa`) does not store them.
# * **GB vs GiB.** A 7% difference; GPUs are sized in GiB.
# * **Counting the tied embedding twice.** Gemma has no separate `lm_head`: adding one would add 0.98 GiB (2B)
#   or 1.46 GiB (7B) in bf16 that is not there.
# * **Assuming "4-bit" means a quarter of bf16.** Scales add bits, and most tools keep the embedding (a fifth of
#   the 2B) in 16 bits: NF4 2B weights are 2.01 GiB, not 1.17.
# * **Keeping every layer's activations.** A forward pass that stores all $L + 1$ hidden states adds
#   $(L + 1) B S D b$ (0.6 GiB for the 2B at 8k); minigemma keeps them only when `return_hidden=True`.
# * **Reading `nvidia-smi` as PyTorch's allocation.** It adds the CUDA context and the caching allocator's
#   reserve; `torch.cuda.max_memory_allocated` is what the model itself used.
#
# The exactness checks of sections 3 and 5 catch the first and the fifth: a prediction must equal the bytes
# minigemma really allocates (on the meta device: shapes, no memory), and with the spec sheet's heads or a
# second head it does not.

# %% include check_catches

# %%
def check_kv_cache(predicted_config, tokens=8192):
    """A prediction must equal the bytes of the cache minigemma allocates for the checkpoint's real config."""
    real = KVCache(gemma_2b, batch_size=1, max_len=tokens, dtype=torch.bfloat16, device="meta").nbytes
    predicted = kv_cache_bytes(predicted_config, tokens, 1, "bf16")
    assert predicted == real, f"predicted {describe(predicted)}, allocated {describe(real)}"


def check_weights(predicted):
    with torch.device("meta"):
        real = sum(p.nbytes for p in mg.Gemma(gemma_2b).to(torch.bfloat16).parameters())
    assert predicted == real, f"predicted {describe(predicted)}, allocated {describe(real)}"


check_kv_cache(gemma_2b)                                  # the truth passes
spec_sheet = gemma_2b.replace(num_heads=16, num_kv_heads=1, head_dim=2048 // 16)
assert check_catches(lambda: check_kv_cache(spec_sheet))
print("spec-sheet 16/1 heads (d_h 128): caught,", describe(kv_cache_bytes(spec_sheet, 8192, 1, "bf16")),
      "predicted vs", describe(kv_cache_bytes(gemma_2b, 8192, 1, "bf16")), "allocated")
tied = sum(weight_bytes(gemma_2b, "bf16").values())
check_weights(tied)
assert check_catches(lambda: check_weights(tied + 2 * gemma_2b.vocab_size * gemma_2b.hidden_size))
print("a separate lm_head counted: caught,", describe(tied + 2 * gemma_2b.vocab_size * gemma_2b.hidden_size),
      "predicted vs", describe(tied), "allocated")

every = estimate(gemma_2b, 8192, last_only=False)
print("2B, 8k prompt, all-position logits:", describe(every.buffers["logits"]), "| peak at", every.peak_at)
eager = estimate(gemma_7b, 8192, attention="eager")
print("7B, 8k prompt, eager attention peak buffers:", describe(sum(eager.buffers.values())))
print("a separate lm_head would add:", describe(2 * gemma_2b.vocab_size * gemma_2b.hidden_size), "(2B, bf16)")

# %% [markdown]
# ## Summary
#
# * Memory = weights (by format, scales and per-tensor choices included) + KV cache ($2 L H_{kv} d_h$ bytes per
#   token and byte of dtype) + the peak of temporary buffers + an explicit overhead assumption.
# * Predictions equal the real tensors' bytes exactly for 2B and 7B weights and KV caches, the real GGUF file
#   tensor by tensor, and the profiler's measured peak on small models.
# * Gemma 2B fits an 8 GiB GPU in bf16 at 8k tokens; 7B in bf16 needs a 24 GiB card (Q4_K_M: 12 GiB).
# * **Package modules produced:** `minigemma/memory/inference.py` (weights, KV cache, temporary buffers, `estimate`),
#   `minigemma/memory/measure.py` (the profiler measurement that checks them),
#   `minigemma/memory/formats.py` (storage formats and quantization recipes) and the `minigemma vram` command
#   (`minigemma/memory/vram_cli.py`). `benchmarks/vram_gpu.py` checks the prediction on a real GPU.
# * The tied embedding of a `Q4_K_M` file is `Q6_K` when its rows split into 256-weight blocks (Gemma 1) and falls
#   back to `Q8_0` when they do not (the 270M's 640-wide rows).
#
# **Exercise:** [`../exercises/09_vram.ipynb`](../exercises/09_vram.ipynb): count weights and KV cache from any
# config. Next: notebook 10 builds Gemma 3 from the same pieces and runs the real 270M.
