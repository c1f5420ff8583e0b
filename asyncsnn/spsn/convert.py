"""Turn a trained SPSN network into an LIF network for the asynchronous schedulers, to fine-tune
with unlayered backprop (``asyncsnn train --set model.init_from=RUN``).

The SPSN membrane at a constant input ``x`` settles at ``U = W x / (1 - alpha)``; an LIF neuron
with leak ``beta`` and no synaptic trace settles at ``v = W' x / (1 - beta)``. So the hidden
weights (and biases) become ``W' = W (1 - beta) / (1 - alpha)``, with the same threshold (the SPSN
neuron fires half the time at ``U = theta``) and a subtract reset, so that the rate grows with
the drive as the SPSN firing probability does. Biases become the weights of a bias channel: one
more input that fires once in every frame (``asyncsnn.spsn.deploy.with_bias``).

The SPSN readout does not fire; the LIF output must. Its threshold is calibrated on data: the
median over samples and frames of the leading class's readout potential (at least 1e-3), so
that the leading class would fire in about half of the frames if the LIF hidden layers matched
the SPSN ones. They do not exactly (no synaptic trace, deterministic firing with a reset), so
the accuracy before fine-tuning is lower than the SPSN network's and varies from run to run; it
is reported (``conversion.json``) and fine-tuning recovers it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import checkpoints
from ..network import Network, Population
from .deploy import seqnet_projections
from .model import SeqNet


def load_run(run_dir: str | Path, device: str = "cpu") -> SeqNet:
    """The SPSN model of an ``asyncsnn train`` run (``train.method = "spsn"``) at its checkpoint."""
    run = Path(run_dir)
    cfg_path, ck = run / "config.json", run / "checkpoint.pt"
    if not cfg_path.exists() or not ck.exists():
        raise FileNotFoundError(f"model.init_from: {run} is not a finished training run (needs config.json and "
                                "checkpoint.pt)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("train", {}).get("method") != "spsn":
        raise ValueError(f"model.init_from: {run} was trained with method {cfg.get('train', {}).get('method')!r}; "
                         "expected an SPSN run (train.method = 'spsn')")
    state = checkpoints.load(ck, device)["model"]
    ws = [state[k] for k in sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))]
    sizes = [int(ws[0].shape[1])] + [int(w.shape[0]) for w in ws]
    m = cfg["model"]
    model = SeqNet(sizes, neuron="spsn", alpha=m["alpha"], beta=m["beta"], theta=m["theta"],
                   bias=any(k.endswith(".bias") for k in state))
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def to_lif(model: SeqNet, calibration: torch.Tensor, *, core_neurons: int = 0) -> Network:
    """The LIF network of an SPSN ``model`` (see the module docstring), its output threshold
    calibrated on ``calibration`` frames ``(B, T, inputs)``. With biases, the network has one
    more input, the bias channel."""
    if model.neuron != "spsn":
        raise ValueError(f"model.neuron: {model.neuron!r}; to_lif converts SPSN networks")
    if calibration.ndim != 3 or calibration.shape[2] != model.sizes[0] or calibration.shape[0] == 0:
        raise ValueError(f"calibration: expected (batch >= 1, frames, {model.sizes[0]}), got "
                         f"{tuple(calibration.shape)}")
    sizes = model.sizes
    top = model.eval()(calibration.float()).readout.amax(2).flatten().double().detach()  # leading class
    theta_out = max(float(torch.quantile(top, 0.5)), 1e-3)
    pops = [Population(size, theta=model.theta, beta=model.beta, reset="subtract", name=f"hidden{k}")
            for k, size in enumerate(sizes[1:-1])]
    pops.append(Population(sizes[-1], theta=theta_out, beta=model.beta, reset="subtract", name="output"))
    n_in, projs = seqnet_projections(model, (1.0 - model.beta) / (1.0 - model.alpha))
    n = sum(sizes[1:])
    core_of = np.arange(n) // core_neurons if core_neurons else None
    return Network(n_in, pops, projs, output=len(pops) - 1, core_of=core_of).validate()
