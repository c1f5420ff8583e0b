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

import os as _os

# Intel MKL's strict CNR mode (PyTorch's CPU BLAS on x86): matrix products give the same bits on
# any number of threads. Without it, MKL on AVX-512 splits the sum of a long product (more
# than about 128 terms) by thread count, and a run of the `manual` or `autograd` engine on one
# thread and on two differed in the last bits. MKL reads it at its first product, so it is set
# here, before any; a value the user set is kept. See docs/training.md.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from ._native import __version__  # noqa: E402
from .chip import Chip, Placement, RunResult  # noqa: E402
from .errors import ConfigError, InputError, InternalError, MappingError, NetworkError, RunawayError  # noqa: E402
from .network import Conv2d, Network, Population, Projection  # noqa: E402
from .options import INPUT_MODES, MODES, RUNAWAY_STEPS, SCHEDULERS, RunOptions  # noqa: E402
from .queue import SpikeQueue, hash_key  # noqa: E402

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
