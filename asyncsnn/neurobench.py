"""NeuroBench's harness scoring an asyncsnn model run asynchronously.

:func:`neurobench_model` wraps a model of layer modules (:mod:`asyncsnn.layers`) as a
``neurobench.models.NeuroBenchModel``, so that ``neurobench.benchmarks.Benchmark`` runs it
with its own data loader, processors and metrics. Each batch runs as the chip runs it
(:func:`asyncsnn.layers.run` with the given run options); the prediction is asyncsnn's
(the output neuron with the most spikes, ``-1`` where none spiked, which no label matches).

What NeuroBench's hooks see, and so what its metrics mean here:

* its connection hooks sit on the model's ``nn.Linear`` layers, which the asynchronous run calls
  once per forward step with the spikes released at that step: NeuroBench's synaptic operations
  (``Effective_ACs`` + ``Effective_MACs``: non-zero input times non-zero weight, summed over
  calls, per sample) are then asyncsnn's ``synaptic_operations``, without the bias channel's
  (NeuroBench does not count biases). Input frames holding several events of one channel are
  not binary, which NeuroBench counts as MACs;
* its activation hooks receive, per layer of :class:`~asyncsnn.layers.AsyncLIF` neurons, which
  neuron spiked in which frame (``LayerRun.layer_active``): NeuroBench's activation sparsity (zero
  activations over all activations, all layers, frames and samples) is asyncsnn's
  ``activation_sparsity`` of the batch;
* static metrics (footprint, parameter count, connection sparsity) read the model itself.

NeuroBench is installed on its own (``pip install --no-deps "neurobench>=2.3" "snntorch>=0.9"``):
its declared dependencies include torchaudio, which would replace the installed torch with the
version it was built for; the parts the harness and these metrics use need neither.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import metrics
from .extras import require
from .options import RunOptions


def neurobench_model(model: torch.nn.Module, options: Optional[RunOptions] = None, **run_options):
    """``model`` (layer modules; see :func:`asyncsnn.layers.run`) as a NeuroBench model that
    runs with ``options`` (a :class:`~asyncsnn.RunOptions` or its fields as keywords). The
    sample offset of each batch continues from the last, so a whole test set gets the
    schedule of one run over it."""
    try:
        from neurobench.hooks.layer import LayerHook
        from neurobench.hooks.neuron import NeuronHook
        from neurobench.models import NeuroBenchModel
    except ImportError as e:
        raise ImportError("asyncsnn.neurobench needs NeuroBench: pip install --no-deps \"neurobench>=2.3\" "
                          f"\"snntorch>=0.9\" ({e})") from None
    require("torch", "train", "asyncsnn.neurobench")
    from .layers import async_layers, run

    opts = RunOptions.of(options, **run_options)
    layers = async_layers(model)
    if not layers:
        raise ValueError("model: has no AsyncLIF layer (NeuroBench scores models of asyncsnn.layers)")

    class AsyncSNNModel(NeuroBenchModel):
        """An asyncsnn layer model run asynchronously, for NeuroBench's harness."""

        def __init__(self) -> None:
            super().__init__()
            self.net, self.options, self.samples_seen = model, opts, 0
            self.last = None  # the LayerRun of the last batch

        def __net__(self) -> torch.nn.Module:
            return self.net

        def __call__(self, batch: torch.Tensor) -> torch.Tensor:
            offset = self.options.sample_offset + self.samples_seen
            with torch.no_grad():
                res = run(self.net, batch, self.options, sample_offset=offset)
            self.samples_seen += int(batch.shape[0])
            for hook, active in zip(self.activation_hooks, res.layer_active):
                hook.activation_outputs.append(active.to(torch.float32))
            self.last = res
            pred = metrics.predictions(res.out_counts, "counts")
            return torch.as_tensor(pred, device=batch.device)

        def register_hooks(self) -> None:
            # activation outputs come from the run (which neuron spiked in which frame), not
            # from forward hooks: a layer is called once per forward step, not once per frame
            for i, _ in enumerate(layers):
                self.activation_hooks.append(NeuronHook(None, f"lif{i}"))
            for layer in self.connection_layers():
                self.connection_hooks.append(LayerHook(layer))

    return AsyncSNNModel()


__all__ = ["neurobench_model"]
