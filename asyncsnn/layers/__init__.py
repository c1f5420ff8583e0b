"""Layer modules: spiking neuron layers to put in your own PyTorch models.

* :class:`AsyncLIF` -- LIF neurons as the asynchronous chip runs them: spikes wait in their
  core's queue until released (``F`` per core per step, in the scheduler's order); with
  :func:`run`, autograd runs through that schedule ("unlayered backprop") for any model that
  threads its layers' state; without a clock it is the plain layer-synchronous LIF;
* :class:`SPSN` and :class:`LI` -- parallel-in-time stochastic neurons and a leaky-integrator
  readout, whole sequences at once, with state carried across pieces of a stream;
* :class:`Sequential` -- ``nn.Sequential`` that threads the state;
* :func:`to_network` / :func:`chip_frames` -- the model on the chip (:class:`asyncsnn.Chip`).

The equations are in :mod:`asyncsnn.layers.functional` (pure functions, explicit state).

>>> import torch, asyncsnn.layers as L
>>> model = L.Sequential(torch.nn.Linear(8, 6, bias=False), L.AsyncLIF(6, beta=0.9),
...                      torch.nn.Linear(6, 3, bias=False), L.AsyncLIF(3, output=True))
>>> res = L.run(model, torch.ones(2, 4, 8), scheduler="momentum", F=2)
>>> tuple(res.out_counts.shape)
(2, 4, 3)
"""

from ..extras import require

require("torch", "train", "asyncsnn.layers (layer modules)")

from . import functional  # noqa: E402
from .clock import Clock  # noqa: E402
from .modules import LI, SPSN, AsyncLIF, Sequential  # noqa: E402
from .run import LayerRun, RunState, async_layers, chip_frames, run, to_network  # noqa: E402

__all__ = ["AsyncLIF", "Clock", "LI", "LayerRun", "RunState", "SPSN", "Sequential", "async_layers", "chip_frames",
           "functional", "run", "to_network"]
