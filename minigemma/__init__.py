"""minigemma: Google's Gemma 1 (2B and 7B) built in PyTorch one readable module at a time.

    import minigemma as mg
    model = mg.load_model("path/to/gemma-2b")          # or mg.Gemma(mg.GemmaConfig.gemma_2b())
    tok = mg.Tokenizer("path/to/gemma-2b/tokenizer.model")
    new_ids = mg.generate(model, tok.encode("The capital of France is"), max_new_tokens=16)
    print(tok.decode(new_ids))

The map. At the top, the lesson modules, in the order the course builds them (notebook number in brackets):
    config [00]       every size and constant: GemmaConfig, presets gemma_2b / gemma_7b / tiny
    tokenizer [01]    SentencePiece BPE with Gemma's special ids;  bpe [01]: the same encoder from scratch
    embedding [02]    lookup x sqrt(hidden), and the tied output head
    rmsnorm [03]      RMSNorm with (1 + weight), statistics in float32
    rope [04]         rotary embedding, half-split pairs, rotated in float32
    attention [05]    causal attention: MHA / MQA / GQA from one code path
    mlp [06]          GeGLU with tanh GELU
    block, model [07] the pre-norm decoder block; the whole model with its tied logits
    kv_cache, generate [08]   the pre-allocated KV cache; greedy and sampled generation
    gemma3 [10]       Gemma 3 as subclasses of the above: QK-norm, sandwich norms, local/global layers
    loss, lora [12]   chunked next-token cross-entropy and perplexity; LoRA adapters as a transform (PEFT files)
Below them, everything that is not a lesson, one subpackage per capability:
    weights/    loading checkpoints: checkpoint (load_model), assemble (the one weight-assembly path), layouts
                (Hugging Face and gemma_pytorch names and configs), tensor_files (safetensors reader), guards
                (hostile-file checks, CheckpointError), summary (what `minigemma info` reports), gguf/ (file reader,
                Gemma 3 loader, tokenizer; packing: Q4_K's packed scales)
    memory/     bytes from the config [09]: inference (the estimate), formats (weight storage formats), measure
                (torch.profiler check), vram_cli (the `minigemma vram` command); training [12] (weights,
                gradients, optimizer states, activations) and training_cli (`minigemma vram --train`)
    train/      around the loss [12]: checkpointing (per-block gradient checkpointing as a transform), chat_data
                (the course's chat set), loop (AdamW, warm-up, clipping), finetune (the LoRA run), eval_cli
                (`minigemma eval`)
    reference/  compare: minigemma against transformers on a real Gemma 1 checkpoint of your own
    grading/    the exercises' autograder: core, compare, runner, notebook, report, toy_tokenizer, release (what is
                graded), probe (in the learner's kernel) and remote (its grader side), session (one kernel run),
                sandbox, and checks/ with one module per component (tokenizer, embedding, rmsnorm, rope, attention, mlp, block, kv_cache,
                sampling, vram, attention_module, generation, own_gemma, own_gemma3)
    quant/      transforms of a finished model: quantize (transform; int8 and int4 linears over PyTorch's packed
                kernels, int8_groups, embedding for the tied head), kv_int8 (an int8 KV cache), ggml_blocks
                (GGUF block bytes -> codes and scales, and floats), gguf_native (a GGUF loaded with its blocks kept)
    compiled/   decode: an optional torch.compile'd one-token step over a fixed-size KV cache (`generate --compile`)
    cli/        the `minigemma` command: every flag and its type (args), generate, info
"""
from .config import GemmaConfig
from .model import Gemma
from .gemma3 import Gemma3, Gemma3Config
from .tokenizer import Tokenizer, TokenizerError
from .generate import generate
from .weights.checkpoint import load_model
from .weights.tensor_files import CheckpointError
from .quant import quantize

__version__ = "0.1.0"
__all__ = ["GemmaConfig", "Gemma", "Gemma3Config", "Gemma3", "Tokenizer", "TokenizerError", "generate", "load_model",
           "CheckpointError", "quantize"]
