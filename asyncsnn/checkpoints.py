"""Checkpoints that cannot run code when they are loaded.

A checkpoint (``checkpoint.pt`` of a run folder) holds tensors and plain data only: numbers,
strings, booleans, ``None``, lists, tuples and dicts of them. It is written atomically
(:func:`save`: a temporary file that nothing else can have planted, flushed, then renamed) and
read with ``torch.load(weights_only=True)`` (:func:`load`), which refuses any other object, so a
run folder received from someone else cannot execute code on ``--resume`` or ``model.init_from``:
loading a crafted file fails with an :class:`~asyncsnn.InputError`.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

from .errors import InputError
from .runs import atomic_write


def plain(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with numpy scalars as Python numbers; anything that is not a tensor or plain
    data is an error naming where it is (it would not load with ``weights_only=True``)."""
    import torch

    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return {k: plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        out = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if isinstance(value, list) else tuple(out)
    raise TypeError(f"{where}: a {type(value).__name__} is not tensors or plain data; a checkpoint holds only those")


def save(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (tensors and plain data) to ``path`` atomically: to a new temporary file
    in the same folder (created exclusively, so a planted file or symlink is never followed),
    flushed to disk, then renamed over ``path``."""
    import torch

    state = plain(state)
    return atomic_write(path, lambda fh: torch.save(state, fh), binary=True)


def load(path: str | os.PathLike, device: Any = "cpu") -> dict:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only."""
    import pickle

    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"invalid checkpoint {path}: not a checkpoint of tensors and plain data (refused: loading "
                         f"other objects could run code): {first}") from None
    if not isinstance(state, dict):
        raise InputError(f"invalid checkpoint {path}: holds a {type(state).__name__}, not a dict")
    return state


__all__ = ["load", "plain", "save"]
