"""asyncsnn: spiking neural networks trained for, and run on, asynchronous neuromorphic chips.

The emulator half (Rust, through :mod:`asyncsnn._native`):

* :class:`Chip` -- a chip description (preset, TOML file or keywords);
* :class:`Network` -- populations of LIF neurons and projections;
* ``Chip.place(network).run(inputs, mode=..., scheduler=..., F=..., seed=...)`` -- a batch run
  returning a :class:`RunResult`;
* :class:`SpikeQueue` -- the chip's arbitration queue and schedulers, driven directly.
"""

from ._native import SpikeQueue, __version__, hash_key
from .chip import INPUT_MODES, MODES, SCHEDULERS, Chip, Placement, RunResult
from .errors import ConfigError, InputError, InternalError, MappingError, NetworkError, RunawayError
from .network import Conv2d, Network, Population, Projection

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
    "RunResult",
    "RunawayError",
    "SCHEDULERS",
    "SpikeQueue",
    "__version__",
    "hash_key",
]
