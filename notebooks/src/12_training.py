# Notebook 12: training. The loss by hand, chunked; perplexity; gradients checked; LoRA built up; a real fine-tune.

# %% [markdown]
# # 12 · Training and fine-tuning: the loss, gradients, LoRA, and a real fine-tune of Gemma 3 270M
#
# **What you will build.** `minigemma/loss.py` (next-token cross-entropy, computed in chunks, and perplexity) and
# `minigemma/lora.py` (low-rank adapters as a transform on a finished model, merged back or saved in PEFT's
# files). Around them, `minigemma/train/` holds the training loop and gradient checkpointing, and
# `minigemma/memory/training.py` the memory a training step needs.
#
# **What you need to know.** The whole model (notebook 07), generation (08), memory (09).
#
# **How we check.** The loss and the gradients against transformers (the tests do it on the real 270M too),
# the adapter against the `peft` library, and the fine-tune by what the model does before and after.

# %%
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from IPython.display import Image, display

import minigemma as mg
from minigemma.loss import IGNORE_INDEX, causal_lm_loss, final_hidden, labels_for, nll_from_hidden, perplexity
from minigemma.lora import LoRALinear, add_lora, load_adapter, lora_layers, merge_lora, save_adapter
from minigemma.memory.inference import GiB, parameter_count
from minigemma.memory.training import training_estimate
from minigemma.reference.compare import hf_gemma_config
from minigemma.train.chat_data import read_examples
from minigemma.train.finetune import answer, answer_perplexity, finetune, plot_losses
from minigemma.weights.gguf.model import default_gguf_path
from minigemma.weights.layouts import hf_to_minigemma_name

torch.manual_seed(0)
torch.set_num_threads(2)
print("torch", torch.__version__)

# %% [markdown]
# ## 1. The loss by hand: shift by one, ignore what is not an answer
#
# A language model's logits at position *t* are its guess for the token at *t + 1*. Five tokens give four
# predictions. Here a vocabulary of 6 and hand-made logits:

# %%
ids = torch.tensor([[2, 4, 1, 5, 3]])                    # (batch 1, seq 5)
logits = torch.randn(1, 5, 6, generator=torch.Generator().manual_seed(0))   # (batch, seq, vocab)
predictions, targets = logits[:, :-1], ids[:, 1:]        # position t predicts token t + 1
log_probs = predictions.log_softmax(-1)                  # (1, 4, 6)
picked = log_probs.gather(-1, targets[..., None])[..., 0]   # (1, 4): log p(the true next token)
print("targets", targets.tolist(), "\n-log p", (-picked).round(decimals=3).tolist())
by_hand = -picked.mean()
print("loss by hand", round(float(by_hand), 4), " F.cross_entropy", round(float(
    F.cross_entropy(predictions.reshape(-1, 6), targets.reshape(-1))), 4))

# %% [markdown]
# Padding and the prompt should not be scored: label them -100 (transformers' convention) and average over the
# rest only. Here the first two positions are the "prompt":

# %%
labels = ids.clone()
labels[:, :2] = IGNORE_INDEX                             # tokens 0, 1 are the prompt: never targets
kept = labels[:, 1:] != IGNORE_INDEX
masked = -(picked * kept).sum() / kept.sum()
print("kept targets", labels[:, 1:][kept].tolist(), " loss", round(float(masked), 4), " F.cross_entropy",
      round(float(F.cross_entropy(predictions.reshape(-1, 6), labels[:, 1:].reshape(-1), ignore_index=-100)), 4))

# %% [markdown]
# ## 2. Chunks: never all the logits at once
#
# Gemma's vocabulary is 256k (262k for Gemma 3). The logits of every position in float32:

# %%
for tokens in (1024, 8192):
    print(f"{tokens:5d} tokens x 262,144 x 4 bytes = {tokens * 262144 * 4 / GiB:5.2f} GiB of logits "
          f"(and as much again for their gradient)")

# %% [markdown]
# So we keep the final hidden states (seq × 640 for the 270M) and turn a chunk of rows at a time into logits.
# With gradients on, each chunk is recomputed in the backward pass, so only one chunk of logits is ever alive.
# The sum of per-chunk losses is the same number whatever the chunk size:

# %%
cfg = mg.GemmaConfig.tiny(num_heads=4, num_kv_heads=1)
tiny = mg.Gemma(cfg).eval()
batch_ids = torch.randint(3, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    full = F.cross_entropy(tiny(batch_ids)[:, :-1].reshape(-1, cfg.vocab_size), batch_ids[:, 1:].reshape(-1))
    for chunk in (1, 5, 64):
        print(f"chunk {chunk:2d}: {float(causal_lm_loss(tiny, batch_ids, chunk_size=chunk)):.6f}   "
              f"all logits at once: {float(full):.6f}")

# %% [markdown]
# ### What we just built: the loss
# The package's code: the shift, one chunk, and the loop over chunks (only scored rows reach the head).

# %% export minigemma.loss.shift_labels minigemma.loss.chunk_nll_sum minigemma.loss.nll_from_hidden

# %% [markdown]
# ## 3. Perplexity of the real Gemma 3 270M on a held-out course text
#
# Perplexity = exp(mean loss): the model is, on average, as unsure as a uniform choice among that many tokens.

# %%
gguf = default_gguf_path()
model, tok = mg.load_model(gguf), mg.Tokenizer(gguf)
course_text = ("A decoder block adds attention and a gated MLP to the residual stream. Gradients flow back "
               "through the same additions, which is why deep stacks of blocks still train.")
ids_270m = tok.encode(course_text)
result = perplexity(model, ids_270m, window=256)
print(f"{result['tokens']} tokens, loss {result['nll']:.3f} nats/token, perplexity {result['perplexity']:.1f}")
shuffled = torch.tensor(ids_270m)[torch.randperm(len(ids_270m), generator=torch.Generator().manual_seed(0))]
print(f"the same tokens shuffled: perplexity {perplexity(model, shuffled.tolist(), window=256)['perplexity']:.0f}")

# %% [markdown]
# ## 4. Gradients, checked against transformers
#
# On a random-weight Gemma 1 (float32), the gradient of every parameter from our loss equals transformers'
# (`tests/test_loss.py` does MHA and MQA, with per-block gradient checkpointing too).

# %%
from transformers import GemmaForCausalLM

torch.manual_seed(0)
ref = GemmaForCausalLM(hf_gemma_config(cfg, attn_implementation="eager")).float()
ours = mg.Gemma(cfg)
state = {hf_to_minigemma_name(n, gemma3=False): t for n, t in ref.state_dict().items()}
state.pop(None)                                          # lm_head is tied to the embedding
ours.load_state_dict(state)
reference_loss = ref(batch_ids, labels=batch_ids).loss   # kept for the "common mistakes" check
reference_loss.backward()
causal_lm_loss(ours, batch_ids).backward()
mine = dict(ours.named_parameters())
worst = max(float((mine[hf_to_minigemma_name(n, False)].grad - p.grad).abs().max() / p.grad.abs().max())
            for n, p in ref.named_parameters() if hf_to_minigemma_name(n, False))
print(f"largest gradient difference, relative to the tensor's largest entry: {worst:.1e}")

# %% [markdown]
# ## 5. LoRA, built up
#
# Fine-tuning every weight needs gradients and two AdamW states for each. LoRA freezes W and learns a
# low-rank change instead: W + (α/r)·B A with A (r × in), B (out × r). First on one matrix:

# %%
W = torch.randn(8, 16)                                   # (out, in), frozen
r, alpha = 2, 4
A = torch.randn(r, 16) * 0.1                             # (r, in)
B = torch.zeros(8, r)                                    # (out, r): zero, so training starts from W exactly
x = torch.randn(3, 16)
print("same as W at the start:", torch.equal(x @ W.T + (alpha / r) * (x @ A.T) @ B.T, x @ W.T))
B = torch.randn(8, r) * 0.1                              # pretend training moved B
delta = (alpha / r) * B @ A                              # (out, in), rank 2
print("rank of the update:", int(torch.linalg.matrix_rank(delta)), " trainable numbers:", A.numel() + B.numel(),
      "instead of", W.numel())
print("unmerged == merged:", torch.allclose(x @ W.T + (alpha / r) * (x @ A.T) @ B.T, x @ (W + delta).T, atol=1e-6))

# %% [markdown]
# The module wraps any linear-like layer (a quantized one too: that is QLoRA), and the transform puts one around
# each chosen projection. Merging folds the update into W, so the merged model costs nothing extra:

# %%
based = mg.Gemma(cfg).eval()
based.load_state_dict(state)                             # the same weights as transformers' `ref`
lora_model = add_lora(based, ["q_proj", "v_proj"], r=4, alpha=8)
with torch.no_grad():
    for layer in lora_layers(lora_model).values():
        layer.lora_B.normal_(std=0.1, generator=torch.Generator().manual_seed(0))   # as if trained
    unmerged = lora_model(batch_ids)
print(len(lora_layers(lora_model)), "adapters;", sum(p.numel() for p in lora_model.parameters() if p.requires_grad),
      "trainable of", sum(p.numel() for p in lora_model.parameters()))
import warnings
from peft import PeftModel

warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)   # transformers' notice to PEFT

with tempfile.TemporaryDirectory() as folder:
    save_adapter(lora_model, folder)
    print("saved:", sorted(p.name for p in Path(folder).iterdir()))
    peft_model = PeftModel.from_pretrained(ref.eval(), folder).eval()   # transformers' Gemma + our adapter
    with torch.no_grad():
        print("PEFT on transformers vs minigemma, max |logit diff|:",
              f"{float((peft_model(batch_ids).logits - unmerged).abs().max()):.1e}")
with torch.no_grad():
    merge_lora(lora_model)
    print("merged vs unmerged, max |logit diff|:", f"{float((lora_model(batch_ids) - unmerged).abs().max()):.1e}")

# %% [markdown]
# ### What we just built: LoRA

# %% export minigemma.lora.LoRALinear minigemma.lora.merge_lora

# %% [markdown]
# ## 6. A real fine-tune: teach the 270M Gemma's chat turns
#
# The base 270M never saw `<start_of_turn>user … <end_of_turn>`. We LoRA-tune it on the course's 40 chat examples
# (`notebooks/data/chat_finetune.jsonl`), scoring only the answer and the closing `<end_of_turn>`. In this
# notebook: a few steps on the last 4 layers only (the backward pass stops there, so it fits a minute on a
# laptop CPU). The full run below is a command.

# %%
model = mg.load_model(gguf)
quick = finetune(model, tok, steps=6, batch_size=4, r=8, alpha=16, lr=5e-3, layers=range(14, 18),
                 heldout_count=2, max_new_tokens=16, progress=False)
for b, a in zip(quick["before"], quick["after"]):
    print(f"{b['question']!r}\n  before: {b['answer']!r} (stopped: {b['stopped']})\n  after:  {a['answer']!r} "
          f"(stopped: {a['stopped']})")
print("loss per step:", [round(x, 2) for x in quick["losses"]])
print("held-out answer perplexity:", {k: round(v, 1) for k, v in quick["heldout_perplexity"].items()})

# %% [markdown]
# The longer run: `python -m minigemma.train.finetune --steps 12 --lr 3e-3` (LoRA r 8 on every layer's q/v,
# batch 8; several minutes on CPU). It saved its adapter (PEFT layout, 1.5 MB) with its loss curve. We load that
# adapter onto a fresh base model and ask the held-out questions here, base and tuned side by side, live:

# %%
run = Path("../benchmarks/results/finetune")
heldout = read_examples(split="heldout")
base_model = mg.load_model(gguf)
tuned_model = load_adapter(mg.load_model(gguf), run / "adapter")
before = [answer(base_model, tok, e["user"]) for e in heldout]
after = [answer(tuned_model, tok, e["user"]) for e in heldout]
for b, a in zip(before, after):
    print(f"{b['question']!r}\n  base:  {b['answer'][:60]!r} (stopped: {b['stopped']})\n  tuned: {a['answer']!r} "
          f"(stopped: {a['stopped']})")
print("stopped at <end_of_turn> by itself: base", sum(b["stopped"] for b in before), "/", len(before),
      "  tuned", sum(a["stopped"] for a in after), "/", len(after))
print("held-out answer perplexity: base", round(answer_perplexity(base_model, tok, heldout), 1),
      "  tuned", round(answer_perplexity(tuned_model, tok, heldout), 1))
display(Image(filename=str(run / "loss_curve.png")))      # written by plot_losses in the command

# %% [markdown]
# The tuned model closes every held-out turn with `<end_of_turn>`, so a chat front-end knows when to stop; the
# base model runs on until the token limit. The answers are short and not always right ("4 + 4 is 6"): a
# 270M model and 12 steps over 40 examples teach the format, not arithmetic.

# %% [markdown]
# ## 7. Training memory versus "16 bytes per parameter"
#
# The rule of thumb: 2 (bf16 weights) + 2 (gradients) + 4 + 4 (AdamW's two states) + 4 (an fp32 master copy).
# `minigemma.memory.training` counts each part from the config; what it predicts is alive after the forward
# pass, after backward and after the first AdamW step equals, byte for byte, what `torch.profiler` measures on
# small models (`tests/test_training_memory.py`). Full fine-tuning here is pure bf16, as `torch.optim.AdamW`
# does it on bf16 weights (states in the weights' dtype):

# %%
for name, config in (("2B", mg.GemmaConfig.gemma_2b()), ("7B", mg.GemmaConfig.gemma_7b())):
    rule = 16 * parameter_count(config) / GiB
    for mode, ckpt in (("full", False), ("full", True), ("lora", True), ("qlora", True)):
        est = training_estimate(config, 4096, mode=mode, checkpointing=ckpt)
        print(f"{name} {mode:5s} checkpointing={str(ckpt):5s} 4k tokens: {est.total / GiB:6.1f} GiB   "
              f"(activations {est.parts['activations'] / GiB:5.1f})   rule: {rule:5.1f} GiB")

# %% [markdown]
# Where the rule is wrong: (1) it ignores activations, which grow with tokens and dominate full fine-tuning
# without checkpointing; (2) it assumes full fine-tuning, while LoRA needs gradients and states only for the
# adapters (a few MB), so the weights dominate; (3) the fp32 master copy and fp32 states exist only in
# mixed-precision recipes: pure bf16 AdamW needs 2 + 2 + 2 + 2 = 8 bytes per parameter; (4) it misses the logits: 8k tokens × 256k × 4 bytes is 8 GiB unless the
# loss is chunked.
#
# ## 8. Common mistakes, caught

# %% include check_catches

# %%
def check_loss(loss_fn):
    expected = float(reference_loss.detach())                   # transformers' loss on these tokens (section 4)
    with torch.no_grad():
        assert abs(float(loss_fn(ours, batch_ids)) - expected) < 1e-5 * expected


def unshifted_loss(m, x):                                # predicts the token it already sees
    wrong = torch.cat([torch.full_like(x[:, :1], IGNORE_INDEX), x[:, :-1]], dim=1)
    total, n = nll_from_hidden(final_hidden(m, x), m.embed.weight, wrong)
    return total / n


check_loss(causal_lm_loss)
print("off-by-one shift caught:", check_catches(lambda: check_loss(unshifted_loss)))

# %% [markdown]
# ## Summary
# We built the chunked next-token loss (shift, ignore -100) and perplexity, checked gradients against
# transformers, built LoRA from one matrix to a transform with merge and PEFT files, and fine-tuned the real
# 270M until it closes its chat turns. Next: `exercises/12_training.ipynb` (the loss, the padding mask, the
# LoRA scaling).
