"""Q4_K's packed 6-bit scales and mins: twelve bytes of a block's header, unpacked.

Kept apart from the block decoders (minigemma/quant/ggml_blocks.py) because exercise 11 hands it to the learner,
whose Q4_K decoder is graded with the decoders themselves refused.
Not here: the blocks' codes (quant/ggml_blocks.py) or reading a file (file.py).
"""
from __future__ import annotations

import torch


def q4_k_scales_and_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """12 bytes -> 8 six-bit scales and 8 six-bit mins, one each per 32-weight sub-block.

    Bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits; bytes 8-11 hold the low 4 bits of
    scale j+4 (low nibble) and min j+4 (high nibble), whose top 2 bits sit in bits 6-7 of bytes j and j+4.
    """
    p = packed.long()                                               # (n, 12)
    scales = torch.cat((p[:, 0:4] & 63, (p[:, 8:12] & 0x0F) | ((p[:, 0:4] >> 6) << 4)), dim=1)   # (n, 8)
    mins = torch.cat((p[:, 4:8] & 63, (p[:, 8:12] >> 4) | ((p[:, 4:8] >> 6) << 4)), dim=1)       # (n, 8)
    return scales.float(), mins.float()
