"""Data-parallel training (issue 25): ``torchrun --nproc-per-node 2 -m asyncsnn train`` on the CPU
(gloo) ends with the weights of the same training in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from asyncsnn.train import load_config, train

# 24 training samples in batches of 7 (7, 7, 7, 3): the two ranks' slices are 3 + 4 and 1 + 2, so
# uneven shards and a short last batch are part of the check.
SETTINGS = {"data.options": {"n_classes": 3, "train_per_class": 8, "test_per_class": 4, "n_channels": 20},
            "data.n_frames": 6, "data.dt": 8000, "model.hidden": [8], "train.batch_size": 7, "train.epochs": 2,
            "train.input_dropout": 0.1, "train.spike_penalty": 0.001}


def _set_args(settings: dict) -> list[str]:
    out = []
    for k, v in settings.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


@pytest.mark.parametrize("method", ["unlayered", "layered"])
def test_two_processes_train_to_the_weights_of_one(tmp_path, method):
    """Tolerance 1e-5 on the weights after 8 optimiser steps: the gradient of the batch is the sum
    of the two slices' gradients, added in another order than one process adds them (float
    rounding, ~1e-7 per step); the spikes, which a larger difference would change, are the same
    (equal training metrics)."""
    settings = {**SETTINGS, "train.method": method}
    one = train(load_config(None, {**settings, "out": str(tmp_path / "one")}), progress=False, log=lambda s: None)
    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "asyncsnn", "train", *_set_args(settings), "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = out.iterdir()  # one run folder, written by rank 0
    a = torch.load(one.checkpoint_path, weights_only=True)
    b = torch.load(run / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-5, rtol=0), (k, (v - b["model"][k]).abs().max())
    for ra, rb in zip(a["history"], b["history"]):
        for k in ("train_accuracy", "train_spikes", "test_accuracy", "test_spikes", "test_steps"):
            assert ra[k] == pytest.approx(rb[k], abs=1e-9), k
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert (run / "network.npz").exists()
