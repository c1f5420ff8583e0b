"""asyncsnn: spiking neural networks trained for, and run on, asynchronous neuromorphic chips.

The emulator half (Rust, through :mod:`asyncsnn._native`):

* :class:`Chip` -- a chip description (preset, TOML file or keywords);
* :class:`Network` -- populations of LIF neurons and projections;
* :class:`RunOptions` -- how a network runs (mode, scheduler, ``F``, seed, ...), the one list of
  run options shared by the chip and the PyTorch simulator;
* ``Chip.place(network).run(inputs, RunOptions(...))`` (or ``run(inputs, scheduler=..., F=...)``)
  -- a batch run returning a :class:`RunResult`, whose metrics are named as in
  :mod:`asyncsnn.metrics`;
* :class:`SpikeQueue` -- the chip's arbitration queue and schedulers, driven directly.
"""

from ._native import __version__
from .chip import Chip, Placement, RunResult
from .errors import ConfigError, InputError, InternalError, MappingError, NetworkError, RunawayError
from .network import Conv2d, Network, Population, Projection
from .options import INPUT_MODES, MODES, RUNAWAY_STEPS, SCHEDULERS, RunOptions
from .queue import SpikeQueue, hash_key

__all__ = [
    "Chip",
    "ConfigError",
    "INPUT_MODES",
    "InputError",
    "InternalError",
    "MODES",
    "MappingError",
    "Network",
    "NetworkError",
    "Placement",
    "Population",
    "Projection",
    "Conv2d",
    "RUNAWAY_STEPS",
    "RunOptions",
    "RunResult",
    "RunawayError",
    "SCHEDULERS",
    "SpikeQueue",
    "__version__",
    "hash_key",
]
