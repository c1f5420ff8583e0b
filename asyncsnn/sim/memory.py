"""Memory accounting of training: how many bytes autograd keeps for the backward pass."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class SavedBytes:
    """Counter filled by :func:`saved_tensor_bytes`."""

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set = set()


@contextlib.contextmanager
def saved_tensor_bytes() -> Iterator[SavedBytes]:
    """Count the bytes of the distinct storages that autograd saves for backward inside the
    block (works on any device; on CUDA, ``torch.cuda.max_memory_allocated`` is the other
    view). This is what the ``full`` versus ``truncated`` gradient choice changes."""
    counter = SavedBytes()

    def pack(t: torch.Tensor):
        try:
            key = (t.untyped_storage().data_ptr(), t.device)
            nbytes = t.untyped_storage().nbytes()
        except RuntimeError:  # tensors without storage (e.g. some wrappers)
            key, nbytes = (id(t), t.device), t.numel() * t.element_size()
        if key not in counter._seen:
            counter._seen.add(key)
            counter.bytes += nbytes
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield counter
