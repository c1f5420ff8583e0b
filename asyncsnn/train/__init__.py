"""Training for asynchronous execution: losses, metrics, the training loop, export.

``asyncsnn train`` and ``asyncsnn evaluate`` are thin commands over :func:`train`,
:func:`resume` and :func:`evaluate_side_by_side`.
"""

from ..extras import require

require("torch", "train", "asyncsnn.train (training)")
require("pydantic", "train", "asyncsnn.train (the typed config)")

from .config import Config, load_config
from .export import evaluate_side_by_side, export_network, quantize_network
from .loop import Trainer, build_network, resume, run_model, train

__all__ = ["Config", "Trainer", "build_network", "evaluate_side_by_side", "export_network", "load_config",
           "quantize_network", "resume", "run_model", "train"]
