"""A model trained in snnTorch, brought to the asynchronous chip through NIR, fine-tuned there.

1. train an snnTorch network (Linear + Leaky) the usual way: BPTT over frames, layer by layer;
2. export it with snnTorch's own NIR export and read it with ``asyncsnn.nir.from_nir``;
3. check that asyncsnn's layer-synchronous run gives snnTorch's accuracy, then measure what the
   model loses when the chip runs it asynchronously (each core releases ``F`` spikes per step);
4. fine-tune it with unlayered backprop (through the chip's schedule) and measure again;
5. write the fine-tuned network back to NIR and read it with snnTorch's NIR import.

    python examples/snntorch_via_nir.py               # about a minute on 2 CPU cores
    python examples/snntorch_via_nir.py --quick       # a smoke run

Needs snnTorch and nirtorch (``pip install --no-deps snntorch nirtorch``) and ``asyncsnn[all]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import asyncsnn
from asyncsnn import data
from asyncsnn import nir as anir
from asyncsnn.runs import markdown_table
from asyncsnn.sim import AsyncSimulator

DT_NIR = 1e-4  # snnTorch writes its time constants for dt = 1e-4 s
SCHEDULERS = ("momentum", "fifo", "random")
FS = (1, 4, 16, None)


def snntorch_model(n_in: int, hidden: int, n_out: int):
    """Two hidden layers of Leaky neurons (zero reset, as NIR's LIF), as in the study."""
    import snntorch as snn

    leaky = lambda n, **kw: snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), init_hidden=True,  # noqa: E731
                                      reset_mechanism="zero", reset_delay=False, **kw)
    # Biases on the first layer only: on the chip a bias is an input event of the frame's first step,
    # which reaches a deeper layer before the spikes of the layer below (asyncsnn.nir's docstring)
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), leaky(hidden),
                               torch.nn.Linear(hidden, hidden, bias=False), leaky(hidden),
                               torch.nn.Linear(hidden, n_out, bias=False), leaky(n_out, output=True))


def snntorch_counts(model, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's time loop: output spike counts per sample (B, O)."""
    from snntorch import utils

    utils.reset(model)
    total = 0
    for t in range(x.shape[1]):
        spk = model(x[:, t])
        total = total + (spk[0] if isinstance(spk, tuple) else spk)
    return total


def accuracy_table(net: asyncsnn.Network, placement, x: np.ndarray, y: np.ndarray) -> list[dict]:
    rows = []
    for sched in SCHEDULERS:
        for F in FS:
            res = placement.run(x, asyncsnn.RunOptions(scheduler=sched, F=F), labels=y)
            s = res.summary()
            rows.append({"scheduler": sched, "F": "inf" if F is None else F, "acc": s["accuracy"],
                         "spikes": s["spikes"], "first_correct_step": s["first_correct_step"]})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: few samples and epochs")
    ap.add_argument("--out", default=None, help="write the NIR files and results.json here (default: a temp folder)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    per_class, epochs, tune_epochs = (8, 1, 1) if args.quick else (96, 15, 6)
    # the study's default data: 5 frames of 20 ms, so that many spikes compete in each frame
    splits = data.load("manifold", dt=20_000, n_frames=5, n_classes=10, train_per_class=per_class,
                       test_per_class=max(4, per_class // 2), progress=False)
    x_tr, y_tr, _ = data.collate(list(splits.train))
    x_te, y_te, _ = data.collate(list(splits.test))

    # 1. snnTorch, trained as snnTorch trains: BPTT over frames
    model = snntorch_model(x_tr.shape[2], 64, 10)
    with torch.no_grad():  # sparse spike input needs larger weights than the default init
        model[0].weight.mul_(3.0)
        model[2].weight.mul_(2.0)
        model[4].weight.mul_(2.0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(epochs):
        for i in torch.randperm(len(y_tr)).split(32):
            loss = torch.nn.functional.cross_entropy(snntorch_counts(model, x_tr[i]), y_tr[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        counts = snntorch_counts(model, x_te)
    answered = counts.max(1).values > 0
    snn_acc = float(((counts.argmax(1) == y_te) & answered).float().mean())

    # 2. through NIR
    from snntorch.export_nir import export_to_nir

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    anir.write(export_to_nir(model, torch.zeros(x_tr.shape[2])), out / "snntorch.nir")
    net = anir.from_nir(out / "snntorch.nir", DT_NIR)
    net = dataclasses.replace(net, dt=20_000)  # the data's frames: 20 ms
    chip = asyncsnn.Chip.preset("loihi", core_neurons=64)  # one core per layer, as in the study
    placement = chip.place(net)
    xb = lambda x: anir.with_bias_channel(x.numpy().astype(np.uint32), net, x.shape[2])  # noqa: E731
    sync = placement.run(xb(x_te), asyncsnn.RunOptions(scheduler="layered", F=None), labels=y_te.numpy())
    layered_acc = sync.summary()["accuracy"]
    before = accuracy_table(net, placement, xb(x_te), y_te.numpy())

    # 3. fine-tuned with unlayered backprop, for momentum at F = 4, on the chip's mapping
    opts = asyncsnn.RunOptions(scheduler="momentum", F=4)
    sim = AsyncSimulator(net, core_of=placement.core_of)
    opt = torch.optim.Adam(sim.parameters(), lr=2e-3)
    xt = torch.as_tensor(xb(x_tr), dtype=torch.float32)
    for epoch in range(tune_epochs):
        for b, i in enumerate(torch.randperm(len(y_tr)).split(32)):
            r = sim(xt[i], opts, sample_offset=(epoch * 1000 + b) * 32)
            # cross-entropy on the output counts plus a spike penalty: fewer, earlier spikes
            loss = torch.nn.functional.cross_entropy(r.out_counts.sum(1), y_tr[i]) + 5e-4 * r.spike_counts.sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    tuned = dataclasses.replace(sim.to_network(), core_of=placement.core_of, run_options=opts)
    after = accuracy_table(tuned, chip.place(tuned), xb(x_te), y_te.numpy())

    # 4. back to NIR, read by snnTorch
    from snntorch.import_nir import import_from_nir

    anir.write(tuned, out / "finetuned.nir", dt=DT_NIR, bias_channel=True)  # biases as Affine biases again
    back = import_from_nir(anir.read(out / "finetuned.nir"))
    with torch.no_grad():
        snn_back = snntorch_counts(back, x_te)
    chip_sync = chip.place(tuned).run(xb(x_te), asyncsnn.RunOptions(scheduler="layered", F=None))
    # float32 sums in another order (snnTorch: beta v + (W x + b); the chip: one synapse at a time)
    # can put a potential on the other side of the threshold: count the samples that agree
    same_back = float(np.mean(np.all(snn_back.numpy() == chip_sync.out_counts.sum(1), axis=1)))

    rows = [{"scheduler": a["scheduler"], "F": a["F"], "acc snnTorch model": a["acc"], "acc fine-tuned": b["acc"],
             "spikes before": a["spikes"], "spikes after": b["spikes"], "step before": a["first_correct_step"],
             "step after": b["first_correct_step"]} for a, b in zip(before, after)]
    cols = [("scheduler", "scheduler", "{}"), ("F", "F", "{}"), ("acc snnTorch model", "acc snnTorch model", "{:.3f}"),
            ("acc fine-tuned", "acc fine-tuned (momentum, F=4)", "{:.3f}"), ("spikes before", "spikes before", "{:.1f}"),
            ("spikes after", "spikes after", "{:.1f}"), ("step before", "1st-correct step before", "{:.1f}"),
            ("step after", "1st-correct step after", "{:.1f}")]
    print(f"snnTorch test accuracy {snn_acc:.3f}; the same network through NIR, layer-synchronous on the chip: "
          f"{layered_acc:.3f}")
    print("Run asynchronously on the chip (loihi, one core per layer, steps mode), before and after fine-tuning:")
    print(markdown_table(rows, cols))
    print(f"fine-tuned network written to {out / 'finetuned.nir'}; snnTorch's NIR import gives the chip's "
          f"layer-synchronous output spike counts on {same_back:.1%} of the test samples")
    result = {"snntorch_accuracy": snn_acc, "nir_layered_accuracy": layered_acc, "rows": rows,
              "snntorch_reads_back_same_counts": same_back}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
