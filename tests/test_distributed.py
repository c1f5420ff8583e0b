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


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(*train_args: str, launch: tuple = ("--standalone", "--nproc-per-node", "2")) -> list[str]:
    """``torchrun LAUNCH -m asyncsnn train TRAIN_ARGS`` as a command line."""
    return [sys.executable, "-m", "torch.distributed.run", *launch, "-m", "asyncsnn", "train", *train_args,
            "--no-progress"]


def _set_args(settings: dict) -> list[str]:
    out = []
    for k, v in settings.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


@pytest.mark.parametrize("method,engine", [("unlayered", "manual"), ("unlayered", "autograd"), ("layered", "auto")])
def test_two_processes_train_to_the_weights_of_one(tmp_path, method, engine):
    """Tolerance 1e-5 on the weights after 8 optimiser steps: the gradient of the batch is the sum
    of the two slices' gradients, added in another order than one process adds them (float
    rounding, ~1e-7 per step); the spikes, which a larger difference would change, are the same
    (equal training metrics)."""
    settings = {**SETTINGS, "train.method": method, "train.engine": engine}
    one = train(load_config(None, {**settings, "out": str(tmp_path / "one")}), progress=False, log=lambda s: None)
    out = tmp_path / "two"
    r = subprocess.run(_torchrun(*_set_args(settings), "--out", str(out)), capture_output=True, text=True,
                       timeout=600, env=ENV)
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


def test_spsn_trains_data_parallel_and_a_run_resumes_under_torchrun(tmp_path):
    """SPSN draws its firing noise per rank (the same distribution, not the one-process draws):
    it trains to a finished run folder; that folder resumes under torchrun to more epochs."""
    settings = {**SETTINGS, "train.method": "spsn", "model.hidden": [12]}
    r = subprocess.run(_torchrun(*_set_args(settings), "--out", str(tmp_path)), capture_output=True, text=True,
                       timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    r = subprocess.run(_torchrun("--resume", str(run), "--epochs", "3"), capture_output=True, text=True, timeout=600,
                       env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 3
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 3


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks through /proc")
def test_a_rank_that_dies_ends_the_job_with_an_error_not_a_hang(tmp_path):
    """SIGKILL to one rank in the middle of training: torchrun stops the other and exits non-zero
    within seconds (the survivor does not wait in an all-reduce for gloo's 30-minute timeout), and
    the run folder says the run did not finish (its last checkpoint resumes it)."""
    import signal
    import time

    settings = {**SETTINGS, "train.epochs": 400}
    p = subprocess.Popen(_torchrun(*_set_args(settings), "--out", str(tmp_path)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # until an epoch is saved
            runs = list(tmp_path.iterdir())
            if runs and (runs[0] / "checkpoint.pt").exists():
                break
            time.sleep(0.2)
        ranks = _children(p.pid)
        assert len(ranks) == 2, ranks
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.time()
        _, err = p.communicate(timeout=120)
        assert p.returncode != 0
        assert time.time() - t0 < 60
    finally:
        if p.poll() is None:
            p.kill()
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "status.json").read_text())["state"] != "finished"
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] >= 1


def test_two_nodes_through_a_rendezvous_train_to_the_weights_of_one(tmp_path):
    """Multi-node: two torchrun launches (``--nnodes 2``, one process each, a c10d rendezvous on
    this machine standing in for the head node) train as one process does."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one = train(load_config(None, {**SETTINGS, "out": str(tmp_path / "one")}), progress=False, log=lambda s: None)
    out = tmp_path / "nodes"
    launch = ("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
              f"127.0.0.1:{port}", "--rdzv-id", "t")
    procs = [subprocess.Popen(_torchrun(*_set_args(SETTINGS), "--out", str(out), launch=launch),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    (run,) = out.iterdir()
    a = torch.load(one.checkpoint_path, weights_only=True)["model"]
    b = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=1e-5, rtol=0), k
