"""Benchmarks: speed and memory of minigemma, side by side with transformers and with its own predictions."""
