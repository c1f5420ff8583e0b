"""Parallel-in-time spiking neurons (SPSN) and the sequential LIF baselines.

* :mod:`functional`: the SPSN membrane as a causal convolution (chunked, FFT or direct), stochastic
  firing (straight-through ``sb``, Gumbel-softmax ``gs``, deterministic), hash-driven draws,
  the rate regulariser;
* :mod:`lif`: the same neuron with a reset, computed sequentially: the plain loop, a fused
  recurrence and a ``torch.compile`` variant;
* :class:`SeqNet`: feed-forward networks of either neuron with a non-firing readout.
"""

from ..extras import require

require("torch", "train", "asyncsnn.spsn (SPSN neurons)")

from . import functional, lif
from .model import SeqNet, SeqOutput

__all__ = ["SeqNet", "SeqOutput", "functional", "lif"]
