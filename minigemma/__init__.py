"""minigemma: Google's Gemma 1 (2B and 7B) built in PyTorch one readable module at a time.

    import minigemma as mg
    model = mg.load_model("path/to/gemma-2b")          # or mg.Gemma(mg.GemmaConfig.gemma_2b())
    tok = mg.Tokenizer("path/to/gemma-2b/tokenizer.model")
    new_ids = mg.generate(model, tok.encode("The capital of France is"), max_new_tokens=16)
    print(tok.decode(new_ids))

Modules, in the order the course builds them: config, tokenizer, embedding, rmsnorm, rope, attention, mlp, block,
model, kv_cache, generate, checkpoint (with tensor_files), cli.
"""
from .config import GemmaConfig
from .model import Gemma
from .gemma3 import Gemma3, Gemma3Config
from .tokenizer import Tokenizer, TokenizerError
from .generate import generate
from .weights.checkpoint import load_model
from .weights.tensor_files import CheckpointError

__version__ = "0.1.0"
__all__ = ["GemmaConfig", "Gemma", "Gemma3Config", "Gemma3", "Tokenizer", "TokenizerError", "generate", "load_model", "CheckpointError"]
