"""The PyTorch half: a batched, differentiable simulator of the asynchronous execution model.

* :class:`AsyncSimulator` runs frames through forward steps with the per-core release limit
  ``F`` and a scheduler, exactly as the emulator's ``steps`` mode, with surrogate-gradient
  spikes so that autograd runs through the schedule ("unlayered backprop");
* :func:`layered.layered_run` is the layer-synchronous baseline on the same weights;
* :mod:`functional` holds the pure functions (surrogates, select, step; the hash is
  :mod:`asyncsnn.hashing`);
* :mod:`fixed` is the chip's saturating fixed-point arithmetic (``forward(arithmetic=...)``);
* :func:`saved_tensor_bytes` measures what autograd keeps for backward.
"""

from ..extras import require

require("torch", "train", "asyncsnn.sim (the PyTorch simulator)")

from . import fixed, functional
from .layered import layered_run
from .memory import saved_tensor_bytes
from .simulator import AsyncSimulator, SimResult

__all__ = ["AsyncSimulator", "SimResult", "fixed", "functional", "layered_run", "saved_tensor_bytes"]
