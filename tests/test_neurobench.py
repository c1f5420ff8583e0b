"""NeuroBench's own harness scores an asyncsnn layer model run asynchronously, and its metrics
are asyncsnn's (classification accuracy, activation sparsity, synaptic operations)."""

from __future__ import annotations

import pytest
import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations

import asyncsnn
import asyncsnn.layers as L
from asyncsnn.neurobench import neurobench_model


@pytest.mark.parametrize("scheduler,F", [("momentum", 2), ("fifo", 1), ("random", None)])
def test_neurobench_scores_an_asyncsnn_model_as_asyncsnn_does(scheduler, F):
    torch.manual_seed(0)
    model = L.Sequential(torch.nn.Linear(12, 10, bias=False), L.AsyncLIF(10, beta=0.5, core_size=4),
                         torch.nn.Linear(10, 4, bias=False), L.AsyncLIF(4, beta=0.5, output=True))
    with torch.no_grad():
        for lin in (model[0], model[2]):
            lin.weight.mul_(3).add_(0.3)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(20, 6, 12, generator=gen) < 0.4).float()
    y = torch.randint(0, 4, (20,), generator=gen)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    opts = asyncsnn.RunOptions(scheduler=scheduler, F=F, seed=3)
    bench = Benchmark(neurobench_model(model, opts), loader, [], [],
                      [[Footprint, ParameterCount, ConnectionSparsity],
                       [ClassificationAccuracy, ActivationSparsity, SynapticOperations]])
    got = bench.run(quiet=True)
    ours = L.run(model, x, opts).sample_metrics(y)  # one run over the whole set: the same schedule
    assert 0 < ours["synaptic_operations"].mean()
    assert got["ClassificationAccuracy"] == pytest.approx(ours["correct"].mean(), abs=1e-12)
    assert got["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"].mean(), abs=1e-12)
    syn = got["SynapticOperations"]
    assert syn["Effective_ACs"] + syn["Effective_MACs"] == pytest.approx(ours["synaptic_operations"].mean())
    assert got["ParameterCount"] == 12 * 10 + 10 * 4


def test_neurobench_model_needs_layer_modules():
    with pytest.raises(ValueError, match="AsyncLIF"):
        neurobench_model(torch.nn.Sequential(torch.nn.Linear(2, 2)))
