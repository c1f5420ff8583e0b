"""The run contract: how a network runs, on the chip and in PyTorch.

:class:`RunOptions` is the one list of run options (timing mode, scheduler, release limit
``F``, seed, input mode, step caps, trace, threads) with their defaults, their checks and the
one parser of ``F = "inf"``. ``Chip.place(net).run``, ``AsyncSimulator.forward``, the numpy
reference, the training config, the experiment and the command line all take or build one;
the emulator receives it as one typed object (:meth:`RunOptions.to_native`).

>>> from asyncsnn import RunOptions
>>> RunOptions(scheduler="momentum", F="inf").F is None
True
>>> RunOptions(F=16).replace(seed=3).seed
3

The names of the choices come from the emulator's core, the one place they are defined:
:data:`MODES`, :data:`SCHEDULERS`, :data:`INPUT_MODES`.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

import numpy as np

from . import _native
from .errors import InputError

MODES: tuple[str, ...] = tuple(_native.MODES)
"""Timing modes of the emulator: ``steps`` (the reference model, forward step by forward step)
and ``events`` (integer ticks with routing latencies and buffers)."""
SCHEDULERS: tuple[str, ...] = tuple(_native.SCHEDULERS)
"""Orders of the pending sources of a core: ``fifo``, ``random``, ``momentum``, ``layered``."""
INPUT_MODES: tuple[str, ...] = tuple(_native.INPUT_MODES)
"""How input events enter: ``all_at_once`` (step 0 of the frame releases them all) or
``scheduled`` (they queue at the input port with the same ``F``)."""
RUNAWAY_STEPS: int = int(_native.RUNAWAY_STEPS)
"""The default of :attr:`RunOptions.runaway_steps`, the same on the chip and in PyTorch."""

_U64 = 2**64
_INFINITY = ("inf", "infinity", "none", "null")

FValue = Union[int, str, None]


def option_error(field_name: str, message: str) -> InputError:
    """The error of a bad run option: an :class:`InputError` naming the field, which also
    carries ``field`` and ``detail`` so that a config can report it under its own name."""
    err = InputError(f"invalid input: {field_name}: {message}")
    err.field, err.detail = field_name, message  # type: ignore[attr-defined]
    return err


def parse_f(value: Any, field_name: str = "F") -> Optional[int]:
    """A release limit: an integer >= 1, or ``None`` / ``"inf"`` (also ``"none"``, ``inf``)
    for no limit. Strings of digits (from a command line) are integers."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _INFINITY:
            return None
        if text.lstrip("+").isdigit():
            value = int(text)
        else:
            raise option_error(field_name, f"{value!r}; expected an integer >= 1 or \"inf\"")
    if isinstance(value, float) and value == float("inf"):
        return None
    return _count(value, field_name, 1, "(or \"inf\" for no limit)")


def f_label(F: Optional[int]) -> Union[int, str]:
    """A release limit for tables and files: the number, or ``"inf"`` for no limit."""
    return "inf" if F is None else int(F)


def _count(value: Any, field_name: str, lo: int, hint: str = "", hi: Optional[int] = None) -> int:
    """``value`` as an int in ``lo..`` (or ``lo..=hi``): integral types only, never a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # 8.0 is not an integer either
        raise option_error(field_name, f"{value!r} is not an integer")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        allowed = f"{lo}..={hi}" if hi is not None else f"{lo}.."
        raise option_error(field_name, f"{v} is outside {allowed}" + (f" {hint}" if hint else ""))
    return v


def _choice(value: Any, field_name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise option_error(field_name, f"{value!r}; allowed: {', '.join(allowed)}")
    return str(value)


@dataclass(frozen=True)
class RunOptions:
    """How a network runs (the execution model of ``docs/execution-model.md``).

    * ``mode``: ``steps`` or ``events`` (the emulator; the PyTorch simulator runs ``steps``);
    * ``scheduler``: the order in which a core releases its pending spikes;
    * ``F``: releases per core and forward step (``None`` or ``"inf"``: unlimited);
    * ``seed``, ``sample_offset``: the scheduler hash's seed, and what is added to a sample's
      index in the batch to form its ``sample`` (``0 .. 2^64``);
    * ``input_mode``: ``all_at_once`` or ``scheduled``;
    * ``max_steps``: a cap on the forward steps of a frame (what is pending carries over), at
      most ``runaway_steps`` (raise that explicitly for a larger cap);
    * ``runaway_steps``: without a cap, the steps after which a frame that has not settled is a
      :class:`RunawayError` (the same default on both sides, :data:`RUNAWAY_STEPS`);
    * ``trace``: record every spike (and release);
    * ``threads``: emulator worker threads (``None``: all cores; results never depend on it).

    Frozen and hashable; :meth:`replace` makes a changed copy. A bad value raises
    :class:`InputError` naming the field and the allowed range.
    """

    mode: str = "steps"
    scheduler: str = "fifo"
    F: FValue = None
    seed: int = 0
    sample_offset: int = 0
    input_mode: str = "all_at_once"
    max_steps: Optional[int] = None
    runaway_steps: int = RUNAWAY_STEPS
    trace: bool = False
    threads: Optional[int] = None
    _native_options: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: set once, here)
        put("mode", _choice(self.mode, "mode", MODES))
        put("scheduler", _choice(self.scheduler, "scheduler", SCHEDULERS))
        put("input_mode", _choice(self.input_mode, "input_mode", INPUT_MODES))
        put("F", parse_f(self.F, "F"))
        put("seed", _count(self.seed, "seed", 0, hi=_U64 - 1))
        put("sample_offset", _count(self.sample_offset, "sample_offset", 0, hi=_U64 - 1))
        if self.max_steps is not None:
            put("max_steps", _count(self.max_steps, "max_steps", 1, "(or None for no cap)"))
        put("runaway_steps", _count(self.runaway_steps, "runaway_steps", 1, hi=_U64 - 1))
        if self.max_steps is not None and self.max_steps > self.runaway_steps:
            # no argument switches the runaway guard off without saying so
            raise option_error("max_steps", f"{self.max_steps} is above runaway_steps = {self.runaway_steps}; raise "
                                            "runaway_steps explicitly for a larger cap")
        if not isinstance(self.trace, (bool, np.bool_)):
            raise option_error("trace", f"{self.trace!r}; allowed: True, False")
        put("trace", bool(self.trace))
        if self.threads is not None:
            put("threads", _count(self.threads, "threads", 1, "(or None for all cores)", hi=1024))

    # ----------------------------------------------------------------- building
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in order."""
        return tuple(f.name for f in fields(cls) if f.init)

    @classmethod
    def of(cls, options: Optional["RunOptions"] = None, /, **overrides: Any) -> "RunOptions":
        """``options`` (default: the defaults) with ``overrides``: what every function that
        takes run options as keywords calls. An unknown keyword is a ``TypeError`` listing the
        options."""
        if options is not None and not isinstance(options, RunOptions):
            raise TypeError(f"options: expected a RunOptions, got {type(options).__name__}")
        unknown = sorted(set(overrides) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown run option {unknown[0]!r}; the options are: {', '.join(cls.names())}")
        if options is None:
            return cls(**overrides)
        return options.replace(**overrides) if overrides else options

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with ``changes`` (checked like the constructor's arguments)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- reading
    @property
    def f_label(self) -> Union[int, str]:
        """``F`` for tables and files: the number, or ``"inf"``."""
        return f_label(self.F)  # type: ignore[arg-type]

    @property
    def step_limit(self) -> tuple[int, bool]:
        """The steps a frame may take and whether reaching them is an error: ``(max_steps,
        False)`` with a cap, else ``(runaway_steps, True)``."""
        if self.max_steps is not None:
            return int(self.max_steps), False
        return int(self.runaway_steps), True

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (``F`` as ``"inf"`` when unlimited, as TOML has no null):
        what run folders and network files record; :meth:`from_dict` reads it back."""
        return {**self.__getstate__(), "F": self.f_label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunOptions":
        """Options from :meth:`to_dict` (unknown keys are an :class:`InputError`)."""
        if not isinstance(d, dict):
            raise option_error("options", f"expected a table of run options, got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.names()))
        if unknown:
            raise option_error(unknown[0], f"unknown run option; allowed: {', '.join(cls.names())}")
        return cls(**d)

    def to_native_kwargs(self) -> dict[str, Any]:
        """The keywords of the emulator's ``RunOptions`` (``F`` is its ``f``)."""
        d = self.__getstate__()
        d["f"] = d.pop("F")
        return d

    def to_native(self) -> "_native.RunOptions":
        """The typed object the emulator receives (made once per options object)."""
        if self._native_options is None:
            object.__setattr__(self, "_native_options", _native.RunOptions(**self.to_native_kwargs()))
        return self._native_options

    def __getstate__(self) -> dict:
        """The option values by name (what pickles, and what the other forms start from)."""
        return {name: getattr(self, name) for name in self.names()}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_native_options", None)


__all__ = ["INPUT_MODES", "MODES", "RUNAWAY_STEPS", "RunOptions", "SCHEDULERS", "f_label", "option_error", "parse_f"]
