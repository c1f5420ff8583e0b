"""The PyTorch half: a batched, differentiable simulator of the asynchronous execution model.

Work in progress (issue 3): the forward model and autograd through the schedule are here and
agree with the emulator's `steps` mode exactly; training loop, readouts, the layered baseline,
export and the CLI come next.
"""

from . import functional
from .memory import saved_tensor_bytes
from .simulator import AsyncSimulator, SimResult

__all__ = ["AsyncSimulator", "SimResult", "functional", "saved_tensor_bytes"]
