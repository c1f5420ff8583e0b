"""Networks, chips, placements, results and simulators are values: edits take effect, and they
pickle, deep-copy and go through torch.save (what keeping a best model, a process pool and
distributed training need)."""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import asyncsnn
from asyncsnn import Chip, Population, Projection, RunOptions
from asyncsnn.generate import poisson_frames, random_feedforward
from asyncsnn.sim import AsyncSimulator

X = poisson_frames(4, 3, 6, 0.6, seed=0)


def net():
    return random_feedforward([6, 8, 3], seed=1, grid=True, gain=3.0)


def test_an_edit_in_place_takes_effect():
    n = net()
    chip = Chip.preset("ideal")
    before = chip.run(n, X).out_counts
    assert before.sum() > 0
    n.projections[0].weights[:] = 0.0  # edit the array the network holds
    assert chip.run(n, X).out_counts.sum() == 0
    assert AsyncSimulator(n)(torch.tensor(X, dtype=torch.float32)).out_counts.sum() == 0
    n.projections[0] = Projection("input", 0, np.full((8, 6), 2.0, np.float32))  # replace a list item
    assert np.array_equal(chip.run(n, X).out_counts, chip.run(copy.deepcopy(n), X).out_counts)
    n.populations[0] = Population(8, theta=1e6)  # and a population
    assert chip.run(n, X).out_counts.sum() == 0
    with pytest.raises(asyncsnn.NetworkError, match="non-finite"):
        n.projections[0].weights[0, 0] = np.nan
        chip.run(n, X)


def test_unchanged_networks_are_converted_once():
    n = net()
    first = n.to_native()
    assert n.to_native() is first and n.validate().to_native() is first


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (copy.deepcopy, lambda x: x)])
def test_values_survive_pickle_and_copy(dumps, loads):
    n = net()
    opts = RunOptions(scheduler="random", F=1, seed=4)
    chip = Chip.preset("loihi", mesh_width=2, mesh_height=2, core_neurons=4)
    place = chip.place(n)
    res = place.run(X, opts, labels=[0, 1, 2, 0])
    n2, chip2, place2, res2, opts2 = (loads(dumps(v)) for v in (n, chip, place, res, opts))
    assert chip2 == chip and chip2.n_cores == chip.n_cores and opts2 == opts
    assert np.array_equal(place2.core_of, place.core_of)
    again = place2.run(X, opts2, labels=[0, 1, 2, 0])
    assert np.array_equal(again.out_counts, res.out_counts) and np.array_equal(res2.out_counts, res.out_counts)
    assert res2.options == opts and res2.summary()["accuracy"] == res.summary()["accuracy"]
    assert np.array_equal(chip.run(n2, X, opts).out_counts, chip.run(n, X, opts).out_counts)


def test_the_simulator_goes_through_deepcopy_and_torch_save(tmp_path):
    sim = AsyncSimulator(net())
    x = torch.tensor(X, dtype=torch.float32)
    out = sim(x, F=2).out_counts.detach()
    clone = copy.deepcopy(sim)
    with torch.no_grad():
        sim.weights[0].zero_()  # the copy keeps its own weights
    assert torch.equal(clone(x, F=2).out_counts.detach(), out)
    path = tmp_path / "sim.pt"
    torch.save(clone, path)
    loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded(x, F=2).out_counts.detach(), out)
    # a state dict loads with weights_only=True into a simulator of the same network
    torch.save(clone.state_dict(), tmp_path / "state.pt")
    fresh = AsyncSimulator(net())
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(fresh(x, F=2).out_counts.detach(), out)
    buf = io.BytesIO()
    pickle.dump(loaded.to_network(), buf)
    assert pickle.loads(buf.getvalue()).dense_weights().tolist() == clone.to_network().dense_weights().tolist()


def test_printing_a_network_is_short():
    big = random_feedforward([2312, 64, 10], seed=0)
    text = repr(big)
    assert len(text) < 200 and "2312" in text and "dense 64x2312" in text
    assert "Projection('input' -> 0" not in text and "array(" not in text
