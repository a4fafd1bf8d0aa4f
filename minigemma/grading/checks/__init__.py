"""One module of checks per component, in course order: tokenizer, embedding, rmsnorm, rope, attention, mlp, block,
kv_cache, sampling, vram. Each check runs the learner's function against minigemma's own and names the mistake."""
