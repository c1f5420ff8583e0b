"""Your own model, trained for the asynchronous chip in a plain PyTorch loop, then run on it.

The model is an ordinary ``nn.Module`` made of ``nn.Linear`` layers and asyncsnn's ``AsyncLIF``
neuron layers. ``asyncsnn.layers.run`` runs it the way the chip does (spikes wait in their core's
queue until released, ``F`` per core per step, in the scheduler's order), so the loss and its
gradient are those of the asynchronous schedule. Then ``to_network`` puts it on the emulated
chip, which reproduces the same outputs exactly.

    python examples/own_model.py                 # about a minute on 2 CPU cores
    python examples/own_model.py --epochs 1 --per-class 8
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import asyncsnn
import asyncsnn.layers as L
from asyncsnn import data


def build(n_in: int, n_classes: int, hidden: int = 64) -> L.Sequential:
    """Two layers of LIF neurons with biases, each layer on cores of 16 neurons."""
    return L.Sequential(
        torch.nn.Linear(n_in, hidden, bias=False),
        L.AsyncLIF(hidden, beta=0.9, bias=True, core_size=16, surrogate="atan", slope=4.0),
        torch.nn.Linear(hidden, n_classes, bias=False),
        L.AsyncLIF(n_classes, beta=0.9, output=True),
    )


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--per-class", type=int, default=48, help="training samples per class")
    ap.add_argument("--F", type=int, default=4, help="releases per core and step")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    splits = data.load("manifold", dt=4000, n_frames=25, n_classes=4, train_per_class=args.per_class,
                       test_per_class=16)
    train = torch.utils.data.DataLoader(splits.train, batch_size=32, shuffle=True, collate_fn=data.collate,
                                        generator=torch.Generator().manual_seed(args.seed))
    x_test, y_test, _ = data.collate(list(splits.test))
    options = asyncsnn.RunOptions(scheduler="momentum", F=args.F, seed=args.seed)

    model = build(x_test.shape[2], 4)
    with torch.no_grad():  # sparse spike input needs larger weights than the default init
        model[0].weight.mul_(4.0)
        model[2].weight.mul_(2.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        for i, (x, y, _) in enumerate(train):
            # each batch its own schedule draw: the hash is keyed by the sample index
            res = L.run(model, x, options, sample_offset=(epoch * len(train) + i) * 32)
            loss = torch.nn.functional.cross_entropy(res.out_counts.sum(1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # correct: answered (an output spike) with the most spikes on the label
            acc = float(L.run(model, x_test, options).sample_metrics(y_test)["correct"].mean())
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {acc:.3f}")

    # On the chip: the network, its core mapping, and the frames with the bias channel.
    net = L.to_network(model, options=options, dt=4000)
    placement = asyncsnn.Chip.preset("loihi").place(net)
    chip = placement.run(L.chip_frames(model, x_test), options, labels=y_test.numpy())
    with torch.no_grad():
        ours = L.run(model, x_test, options)
    same = np.array_equal(chip.out_counts, ours.out_counts.numpy())
    summary = chip.summary()
    print(f"chip: accuracy {summary['accuracy']:.3f}, {summary['spikes']:.1f} spikes per sample, "
          f"energy {summary['energy_total_pj'] / 1000:.1f} nJ per sample; same output counts as PyTorch: {same}")
    return {"accuracy": float(summary["accuracy"]), "same": bool(same), "pytorch_accuracy": acc}


if __name__ == "__main__":
    main()
