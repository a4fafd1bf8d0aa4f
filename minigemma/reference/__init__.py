"""The reference side: minigemma compared with transformers' Gemma on the same weights.

Module: compare (transformers' config for a minigemma config, and the real-checkpoint checks of logits, greedy
continuations and the tokenizer, gated by MINIGEMMA_GEMMA_2B / MINIGEMMA_GEMMA_7B).
"""
