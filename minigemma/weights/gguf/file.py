"""Reading the GGUF container (llama.cpp's one-file format): metadata, the tensor table, and dequantized tensors.

Layout (version 2 or 3, little-endian):

    b"GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count times:      key (string) | value_type u32 | value
    tensor_count times:  name (string) | n_dims u32 | dims (n_dims x u64, fastest-moving first) | ggml_type u32
                         | offset u64 (from the start of the data section)
    zero padding up to a multiple of `general.alignment` (default 32), then the data section.

A string is a u64 byte count and UTF-8 bytes; an array is an element type u32, a count u64 and the elements.
We parse this small header ourselves with `struct` and numpy: gguf's GGUFReader makes a numpy view per array
element, which takes tens of seconds for Gemma 3's 262,144-string vocabulary; this takes a fraction of a second.
The gguf package still does the real work of turning quantized blocks back into floats (gguf.quants.dequantize).
Every read is bounds-checked, so a truncated or corrupt file fails with a CheckpointError naming what is cut off.
Not here: what the names and values mean for Gemma (model.py, tokenizer.py); writing GGUF files.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..guards import CheckpointError, regular_file

SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
MAX_ARRAY_DEPTH = 4           # llama.cpp writes flat arrays; nesting is legal but never deep
MAX_DIMS = 4                  # GGML_MAX_DIMS


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]        # torch order: slowest-moving first (the file lists dims the other way round)
    ggml_type: int                # 0 F32, 1 F16, 8 Q8_0, 12 Q4_K, ... (gguf.GGMLQuantizationType)
    start: int                    # absolute byte offset in the file
    nbytes: int


@dataclass
class GGUFFile:
    path: Path
    metadata: dict = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor `name` as float32 numpy, in torch order."""
        from gguf.quants import dequantize
        info = self.tensors[name]
        block, type_size = quant_size(info)
        raw = np.fromfile(self.path, dtype=np.uint8, count=info.nbytes, offset=info.start)
        rows = raw.reshape(-1, info.shape[-1] // block * type_size)          # (rows, bytes per row)
        try:
            values = dequantize(rows, quant_type(info))
        except NotImplementedError:
            raise CheckpointError(f"{self.path}: tensor {name} uses quantization {quant_type(info).name}, which "
                                  "the installed gguf package cannot dequantize") from None
        return values.reshape(info.shape).astype(np.float32, copy=False)


def quant_type(info: TensorInfo):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    try:
        qtype = GGMLQuantizationType(info.ggml_type)
    except ValueError:
        qtype = None
    if qtype is None or qtype not in GGML_QUANT_SIZES:
        raise CheckpointError(f"tensor {info.name} has unknown quantization type {info.ggml_type}")
    return qtype


class Cursor:
    """Reads values one after another from `data`, raising CheckpointError instead of running off the end."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CheckpointError(f"{self.path}: truncated GGUF: the header needs byte {self.pos + n:,}, the file "
                                  f"has {len(self.data):,}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def scalar(self, value_type: int):
        fmt = SCALARS[value_type]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return bytes(self.take(self.scalar(10))).decode("utf-8", errors="replace")

    def strings(self, count: int) -> list[str]:
        """`count` strings in a row (a vocabulary: the one hot loop of the header, kept tight)."""
        data, pos, out = self.data, self.pos, []
        try:
            for _ in range(count):
                (n,) = struct.unpack_from("<Q", data, pos)
                out.append(str(data[pos + 8:pos + 8 + n], "utf-8", "replace"))
                pos += 8 + n
        except (struct.error, OverflowError):                # ran off the end, or a length beyond any file
            pos = len(data) + 8
        if pos > len(data):
            raise CheckpointError(f"{self.path}: truncated GGUF: a string array runs past the end of the file "
                                  f"({len(data):,} bytes)")
        self.pos = pos
        return out

    def value(self, value_type: int, depth: int = 0):
        if value_type == STRING:
            return self.string()
        if value_type == ARRAY:
            item_type, count = self.scalar(4), self.scalar(10)
            if depth >= MAX_ARRAY_DEPTH:                      # checked before recursing (no RecursionError)
                raise CheckpointError(f"{self.path}: corrupt GGUF: arrays nested more than {MAX_ARRAY_DEPTH} deep")
            if item_type in SCALARS:                          # numbers: one numpy read for the whole array
                dtype = np.dtype(SCALARS[item_type])
                return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).tolist()
            if item_type == STRING:
                return self.strings(count)
            return [self.value(item_type, depth + 1) for _ in range(count)]
        if value_type not in SCALARS:
            raise CheckpointError(f"{self.path}: corrupt GGUF: unknown metadata value type {value_type}")
        return self.scalar(value_type)


def read_gguf(path) -> GGUFFile:
    """Parse a GGUF file's metadata and tensor table (the tensor data is read later, one tensor at a time)."""
    path = regular_file(path, "GGUF file")
    data = memoryview(np.memmap(path, dtype=np.uint8, mode="r")) if path.stat().st_size else memoryview(b"")
    if bytes(data[:4]) != b"GGUF":
        raise CheckpointError(f"{path}: not a GGUF file (it does not start with the bytes 'GGUF')")
    cursor = Cursor(data, path)
    cursor.take(4)
    version, tensor_count, kv_count = cursor.scalar(4), cursor.scalar(10), cursor.scalar(10)
    if version not in (2, 3):
        raise CheckpointError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    gguf = GGUFFile(path)
    for _ in range(kv_count):
        key = cursor.string()
        gguf.metadata[key] = cursor.value(cursor.scalar(4))
    table = []
    for _ in range(tensor_count):
        name, n_dims = cursor.string(), cursor.scalar(4)
        if n_dims > MAX_DIMS:
            raise CheckpointError(f"{path}: corrupt GGUF: tensor {name} has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = [cursor.scalar(10) for _ in range(n_dims)]
        table.append((name, tuple(reversed(dims)), cursor.scalar(4), cursor.scalar(10)))
    alignment = gguf.metadata.get("general.alignment", 32)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1):
        raise CheckpointError(f"{path}: GGUF general.alignment should be a power of two, found {alignment!r:.40}")
    data_start = math.ceil(cursor.pos / alignment) * alignment
    for name, shape, ggml_type, offset in table:
        block, type_size = quant_size(TensorInfo(name, shape, ggml_type, 0, 0))
        if not shape or shape[-1] % block:
            raise CheckpointError(f"{path}: corrupt GGUF: tensor {name} has shape {shape}, whose rows are not whole "
                                  f"blocks of {block} values")
        info = TensorInfo(name, shape, ggml_type, data_start + offset, math.prod(shape) // block * type_size)
        if info.start + info.nbytes > len(data):
            raise CheckpointError(f"{path}: truncated GGUF: tensor {name} ends at byte {info.start + info.nbytes:,}, "
                                  f"the file has {len(data):,}")
        gguf.tensors[name] = info
    return gguf


def quant_size(info: TensorInfo) -> tuple[int, int]:
    """(values per block, bytes per block) of a tensor's storage type."""
    from gguf import GGML_QUANT_SIZES
    return GGML_QUANT_SIZES[quant_type(info)]
