"""Measuring what a forward pass really allocates on the CPU, to check `minigemma.memory`'s predictions.

`cpu_peak_bytes(fn)` runs fn under `torch.profiler` with `profile_memory=True`, which records every allocation and
free of PyTorch's CPU allocator (address, size, time, and the operator it happened in), and returns the peak of the
running total: the most temporary memory alive at once, above what existed before (weights, cache).

A kernel's own scratch space is left out by default: a block that one operator allocates and frees before it
returns, such as oneDNN's float32 copies of bfloat16 operands on CPUs without bfloat16 instructions. It depends on
the CPU and the kernel library, not on the model (the same bf16 matmul needs it on one machine and not on another),
so the predictions leave it out too; `kernel_scratch=True` counts it. `cpu_peak_and_retained_bytes(fn)` also
returns what fn leaves allocated (a forward pass: its saved activations); `measured_saved_bytes(model, fn)` lists
what autograd saves for backward, tensor by tensor, through saved_tensors_hooks. Not here: GPU memory (use
`torch.cuda.max_memory_allocated`), memory outside PyTorch's allocator.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def _quiet_c_stderr():
    """Silence the C-level stderr: the profiler's backend (Kineto) logs a line at every start and stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _owner(node, allocators=("aten::empty", "aten::empty_like", "aten::empty_strided")):
    """The operator call a block belongs to: the innermost one around it, skipping the empty* ops a kernel calls
    to get memory (the flash-attention kernel's per-thread buffers come from a nested aten::empty). None outside
    any operator (a tensor made in Python code)."""
    parent = node.parent
    while parent is not None and parent.name in allocators:     # ops that only hand out memory
        parent = parent.parent
    return None if parent is None else (parent.name, parent.start_time_ns, parent.end_time_ns)


def _allocation_events(nodes):
    """Every allocation (+bytes) and free (-bytes) in a profiler event tree, as
    (time in ns, bytes, address, the operator call it happened in, or None)."""
    for node in nodes:
        if str(node.tag).endswith("Allocation"):
            yield node.start_time_ns, node.extra_fields.alloc_size, node.extra_fields.ptr, _owner(node)
        yield from _allocation_events(node.children)


def _without_kernel_scratch(events: list) -> list:
    """Drop every block that is allocated and freed by the same operator call, directly inside it (not inside an
    operator it calls, except the empty* ops)."""
    open_blocks, scratch = {}, set()     # address -> index of its allocation event; indices to drop
    for i, (_, nbytes, address, op) in enumerate(events):
        if nbytes > 0:
            open_blocks[address] = i
        elif address in open_blocks:
            start = open_blocks.pop(address)
            if op is not None and events[start][3] == op:
                scratch |= {start, i}
    return [event for i, event in enumerate(events) if i not in scratch]


def _profiled_events(fn, kernel_scratch: bool) -> list:
    """fn()'s allocation events in time order, under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_c_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_c_stderr():
            prof.stop()
    tree = prof.profiler.kineto_results.experimental_event_tree()
    events = sorted(_allocation_events(tree), key=lambda event: event[0])
    return events if kernel_scratch else _without_kernel_scratch(events)


def cpu_peak_and_retained_bytes(fn, kernel_scratch: bool = False) -> tuple[int, int]:
    """(peak, retained): the most bytes alive at once while fn() runs, and the bytes it allocated that are
    still alive when it returns (what it leaves behind: a forward pass's saved activations, gradients)."""
    live = peak = 0
    for _, nbytes, _, _ in _profiled_events(fn, kernel_scratch):
        live += nbytes
        peak = max(peak, live)
    return peak, live


def cpu_peak_bytes(fn, kernel_scratch: bool = False) -> int:
    """Peak of PyTorch's CPU allocations while fn() runs, above what was allocated before."""
    return cpu_peak_and_retained_bytes(fn, kernel_scratch)[0]


def measured_saved_bytes(model, fn) -> int:
    """Bytes autograd saves while fn() runs: each distinct storage once, the model's parameters excluded."""
    import torch
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(seen.values())
