"""The chip's arbitration queue, driven directly from Python, with every argument checked.

:class:`SpikeQueue` wraps the emulator's own queue (``asyncsnn._native.SpikeQueue``): the
arguments are checked here, so a wrong type or an out-of-range number is an
:class:`~asyncsnn.InputError` naming the argument and its range, never a conversion error from
the binding.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np

from . import _native
from .errors import InputError
from .options import _count

_U32 = 2**32
_U64 = 2**64


def _int(value: Any, name: str, hi: int = _U32) -> int:
    """An integer in ``0..hi`` (``hi`` excluded): the run options' own check (an InputError
    naming the argument)."""
    return _count(value, name, 0, hi=hi - 1)


def _ints(values: Any, name: str) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise InputError(f"invalid input: {name}: expected a sequence of integers, got {type(values).__name__}")
    return [_int(v, f"{name}[{i}]") for i, v in enumerate(values)]


class SpikeQueue:
    """The emulator's arbitration queue, driven directly: sources are numbered inputs first;
    ``group_of[s]`` is each source's arbitration group, ``population[n]`` each neuron's
    population (for ``layered``); ``seed`` and ``sample`` enter the scheduler hash."""

    def __init__(self, n_inputs: int, group_of: Sequence[int], population: Sequence[int], seed: int = 0,
                 sample: int = 0) -> None:
        group = _ints(group_of, "group_of")
        pops = _ints(population, "population")
        n_in = _int(n_inputs, "n_inputs")
        if n_in > len(group):
            raise InputError(f"invalid input: n_inputs: {n_in} is outside 0..={len(group)} (the sources of group_of)")
        self._q = _native.SpikeQueue(n_in, group, pops, _int(seed, "seed", _U64), _int(sample, "sample", _U64))

    def push(self, source: int, count: int = 1, frame: int = 0, step: int = 0,
             overshoot: Optional[float] = None) -> None:
        """``count`` spikes of ``source`` become pending at ``(frame, step)`` (``overshoot``: of
        its most recent firing, for ``momentum``)."""
        if overshoot is not None and (isinstance(overshoot, (bool, np.bool_)) or not isinstance(overshoot, numbers.Real)
                                      or not np.isfinite(overshoot)):
            raise InputError(f"invalid input: overshoot: {overshoot!r} must be a finite number (or None)")
        self._q.push(_int(source, "source"), _int(count, "count"), _int(frame, "frame"), _int(step, "step"),
                     None if overshoot is None else float(overshoot))

    def release(self, group: int, f: Optional[int], scheduler: str, frame: int = 0,
                step: int = 0) -> list[tuple[int, int]]:
        """Release the first ``f`` (``None``: all) pending sources of ``group`` in the order of
        ``scheduler``: ``[(source, count), ...]``."""
        if f is not None:
            f = _int(f, "f", 2**63)
        if not isinstance(scheduler, str):
            raise InputError(f"invalid input: scheduler: {scheduler!r} must be a string")
        return self._q.release(_int(group, "group"), f, scheduler, _int(frame, "frame"), _int(step, "step"))

    def counts(self) -> list[int]:
        """The pending count of every source."""
        return self._q.counts()

    def group_len(self, group: int) -> int:
        """Sources pending in ``group``."""
        return self._q.group_len(_int(group, "group"))

    @property
    def n_groups(self) -> int:
        return self._q.n_groups


__all__ = ["SpikeQueue", "hash_key"]


def hash_key(seed: int, sample: int, frame: int, step: int, source: int) -> int:
    """The scheduler hash ``key(seed, sample, frame, step, source)`` as the emulator computes it
    (each argument an integer in ``0..2^64``, taken mod 2^32; :mod:`asyncsnn.hashing` is the
    same hash for numpy and torch)."""
    args = {"seed": seed, "sample": sample, "frame": frame, "step": step, "source": source}
    return int(_native.hash_key(*(_int(v, k, _U64) for k, v in args.items())))
