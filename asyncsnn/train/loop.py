"""The training loop behind ``asyncsnn train``: data, model, epochs, metrics, checkpoints.

A run lives in its own folder (never overwritten): ``config.json`` (resolved), ``metrics.csv``
and ``metrics.json`` (one row per epoch), ``checkpoint.pt`` (written atomically after every
epoch, so a crash leaves the previous one intact) and ``network.npz`` (the trained network with
its core mapping, loadable by ``asyncsnn emulate`` and ``asyncsnn evaluate``). ``resume``
continues a run from its checkpoint; every random choice (initial weights, batch order, input
dropout, scheduler hash) derives from the seed and the epoch, so a resumed run ends where an
uninterrupted one would.
"""

from __future__ import annotations

import abc
import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import checkpoints, metrics
from ..network import Network, Population, Projection
from ..options import RunOptions, f_label
from ..progress import logger, progress
from ..runs import new_run_dir, write_csv, write_json
from ..sim import AsyncSimulator
from ..sim.layered import layered_run
from . import distributed, losses
from .config import METHODS, Config, ModelConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device: {name!r} requested but CUDA is not available")
    return dev


def build_network(m: ModelConfig, n_inputs: int, n_classes: int, seed: int, dt_us: Optional[int] = None,
                  path: Optional[str] = None, field_name: str = "model.network") -> Network:
    """A feed-forward network (optionally with recurrent hidden populations) with random
    initial weights, or the network file ``path`` (default ``m.network``): asyncsnn's ``.npz``,
    or a NIR graph (``.nir``, read for frames of the data's ``dt_us``)."""
    path = path or m.network
    if path:
        if str(path).endswith(".nir"):
            from .. import nir as nir_io

            if dt_us is None:
                raise ValueError(f"{field_name}: a NIR file needs the data's frame length (data.dt)")
            net = nir_io.from_nir(path, dt_us * 1e-6)
        else:
            net = Network.load(path)
        if net.n_inputs not in (n_inputs, n_inputs + 1) or net.n_outputs != n_classes:
            raise ValueError(f"{field_name}: {path} has {net.n_inputs} inputs and {net.n_outputs} outputs; "
                             f"the dataset needs {n_inputs} (or one more: a bias channel) and {n_classes}")
        return net
    rng = np.random.default_rng([seed, 17])
    sizes = [n_inputs, *m.hidden, n_classes]
    pops, projs = [], []
    for i in range(1, len(sizes)):
        a, b = sizes[i - 1], sizes[i]
        pops.append(Population(b, m.theta, m.beta, m.reset, m.refractory, name=f"layer{i - 1}"))
        w = rng.normal(m.gain / a, m.gain / np.sqrt(a), size=(b, a)).astype(np.float32)
        projs.append(Projection("input" if i == 1 else i - 2, i - 1, w))
        if m.recurrent and i < len(sizes) - 1:
            projs.append(Projection(i - 1, i - 1, rng.normal(0.0, 0.5 / np.sqrt(b), size=(b, b)).astype(np.float32)))
    n = sum(sizes[1:])
    core_of = np.arange(n) // m.core_neurons if m.core_neurons else None
    return Network(n_inputs, pops, projs, output=len(pops) - 1, core_of=core_of).validate()


def run_model(sim: AsyncSimulator, frames: torch.Tensor, t, options: Optional[RunOptions] = None, *,
              layered: bool = False):
    """Run a batch with the readout and engine of ``t`` (an :class:`OptimConfig`):
    asynchronously with ``options`` (default: the config's run options), or with ``layered``
    layer-synchronously."""
    need_first = t.readout == "first_spike"
    if layered:
        return layered_run(sim, frames, first_time=need_first)
    return sim(frames, t.run_options() if options is None else options, gradient=t.gradient, first_time=need_first,
               engine=t.engine, cuda_graphs=t.cuda_graphs, compile=t.compile)


def loss_of(result, labels: torch.Tensor, sim: AsyncSimulator, t, n_frames: int) -> torch.Tensor:
    z = losses.logits(result, t.readout, theta_out=sim.theta[sim.out_slice], out_slice=sim.out_slice, tau=t.tau)
    loss = torch.nn.functional.cross_entropy(z, labels)
    if t.spike_penalty:
        loss = loss + t.spike_penalty * losses.spike_penalty(result.spike_counts, n_frames)
    return loss


class Method(abc.ABC):
    """What a training method (``train.method``) does: build the model, train it on a batch,
    evaluate it, and give its chip network. The trainer holds one and never asks for its name."""

    name = ""

    @abc.abstractmethod
    def build(self, tr: "Trainer", n_channels: int) -> torch.nn.Module:
        """The model the method trains."""

    @abc.abstractmethod
    def train_batch(self, tr: "Trainer", x: torch.Tensor, y: torch.Tensor, b: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """The loss of batch ``b`` and its per-sample metrics."""

    @abc.abstractmethod
    def eval_batch(self, tr: "Trainer", x: torch.Tensor, y: torch.Tensor, b: int,
                   options: Optional[RunOptions], layered: bool) -> dict:
        """Per-sample metrics of an evaluation batch."""

    def epoch_metrics(self, tr: "Trainer") -> dict:
        """Metrics that this method adds to every epoch's row."""
        return {}

    @abc.abstractmethod
    def chip_network(self, tr: "Trainer") -> Network:
        """The trained network as the chip runs it."""

    @abc.abstractmethod
    def describe(self, tr: "Trainer") -> tuple[str, str]:
        """What was trained, and what to do with it next (for the command line)."""


class AsyncMethod(Method):
    """``unlayered``: backprop through the asynchronous schedule of the config's run options;
    ``layered``: BPTT through the layer-synchronous run of the same network. Both models are
    evaluated asynchronously, with the training schedule."""

    def __init__(self, name: str, layered: bool) -> None:
        self.name, self.layered = name, layered

    def build(self, tr: "Trainer", n_channels: int) -> torch.nn.Module:
        m = tr.cfg.model
        if m.init_from and str(m.init_from).endswith(".nir"):  # a model from another tool, through NIR
            net = build_network(m, n_channels, tr.n_classes, tr.cfg.train.seed, tr.cfg.data.dt, m.init_from,
                                "model.init_from")
        elif m.init_from:
            net = self._convert_spsn(tr, m.init_from, n_channels)
        else:
            net = build_network(m, n_channels, tr.n_classes, tr.cfg.train.seed, tr.cfg.data.dt)
        return AsyncSimulator(net, surrogate=m.surrogate, slope=m.slope)

    @staticmethod
    def _convert_spsn(tr: "Trainer", run: str, n_channels: int) -> Network:
        """The SPSN run ``run`` as an LIF network (``asyncsnn.spsn.convert``), calibrated on the
        first training samples; saved as ``converted.npz`` in the run folder."""
        from ..data import collate
        from ..spsn.convert import load_run, to_lif

        spsn = load_run(run)
        if spsn.sizes[0] != n_channels or spsn.sizes[-1] != tr.n_classes:
            raise ValueError(f"model.init_from: {run} has {spsn.sizes[0]} inputs and {spsn.sizes[-1]} classes; the "
                             f"dataset has {n_channels} and {tr.n_classes}")
        calib = collate([tr.train_set[i] for i in range(min(256, len(tr.train_set)))])[0]
        net = to_lif(spsn, calib, core_neurons=tr.cfg.model.core_neurons)
        if tr.dist.main:
            net.save(tr.run_dir / "converted.npz")
        tr.log(f"converted the SPSN network of {run} ({'-'.join(map(str, spsn.sizes))}) to LIF; output "
               f"threshold {net.populations[-1].theta:.4g}")
        return net

    def train_batch(self, tr, x, y, offset, generator):
        t = tr.cfg.train
        res = run_model(tr.sim, x, t, t.run_options(seed=t.seed + tr.epoch, sample_offset=offset),
                        layered=self.layered)
        return loss_of(res, y, tr.sim, t, x.shape[1]), res.sample_metrics(y)

    def eval_batch(self, tr, x, y, b, options, layered):
        t = tr.cfg.train
        opts = (t.run_options(seed=t.seed) if options is None else options).replace(sample_offset=b * t.batch_size)
        return run_model(tr.sim, x, t, opts, layered=layered).sample_metrics(y)

    def epoch_metrics(self, tr):
        # the layered model on its own, layer-synchronous schedule (the test rows are asynchronous)
        return {"test_layered_accuracy": tr.evaluate(layered=True)["accuracy"]} if self.layered else {}

    def chip_network(self, tr):
        return tr.sim.to_network()

    def describe(self, tr):
        t = tr.cfg.train
        sizes = "-".join(str(p.size) for p in tr.sim.network.populations)
        return (f"network {tr.sim.n_inputs}->{sizes}; {self.name} training, test run asynchronously "
                f"({t.scheduler}, F={f_label(t.F)})", f"evaluate on the chip: asyncsnn evaluate {tr.run_dir}")


class SpsnMethod(Method):
    """``spsn``: parallel-in-time stochastic neurons (:class:`~asyncsnn.spsn.SeqNet`); the chip
    network is its deployed form (stochastic populations, an integrator readout)."""

    name = "spsn"

    def build(self, tr, n_channels):
        from ..spsn import SeqNet

        m = tr.cfg.model
        return SeqNet([n_channels, *m.hidden, tr.n_classes], neuron="spsn", alpha=m.alpha, beta=m.beta, theta=m.theta,
                      firing=m.firing, eval_firing=m.eval_firing, tau=m.tau_gs, gain=m.gain, seed=tr.cfg.train.seed)

    def train_batch(self, tr, x, y, offset, generator):
        t = tr.cfg.train
        out = tr.sim(x, generator=generator, sample_offset=offset)
        loss = torch.nn.functional.cross_entropy(out.logits, y)
        if t.rate_penalty:
            loss = loss + t.rate_penalty * out.rate_penalty(t.rate_target)
        return loss, out.sample_metrics(y)

    def eval_batch(self, tr, x, y, b, options, layered):
        return tr.sim(x, sample_offset=b * tr.cfg.train.batch_size).sample_metrics(y)

    def chip_network(self, tr):
        from ..spsn.deploy import export

        return export(tr.sim)

    def describe(self, tr):
        m = tr.cfg.model
        return (f"SPSN network {'-'.join(str(s) for s in tr.sim.sizes)} ({m.firing} firing, evaluated "
                f"{m.eval_firing}); steps = time steps per sample",
                f"network.npz is its chip form (stochastic neurons, hash draws); evaluate it on the chip: "
                f"asyncsnn evaluate {tr.run_dir}")


METHOD_TYPES: dict[str, Method] = {"unlayered": AsyncMethod("unlayered", layered=False),
                                   "layered": AsyncMethod("layered", layered=True), "spsn": SpsnMethod()}
assert tuple(METHOD_TYPES) == METHODS


@dataclass
class Trainer:
    """State of one training run (see the module docstring)."""

    cfg: Config
    run_dir: Path
    progress: bool = True
    log: Callable[[str], None] = field(default=logger.info)

    def __post_init__(self) -> None:
        t = self.cfg.train
        seed_everything(t.seed)
        self.dist = distributed.setup(t.device)
        self.device = resolve_device(t.device)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per local rank
        if not self.dist.main:
            self.progress, self.log = False, lambda s: None  # rank 0 reports and writes
        d = self.cfg.data
        splits = d.load()
        self.train_set, self.test_set = splits.train, splits.test
        if d.train_limit is not None:
            self.train_set = torch.utils.data.Subset(self.train_set, range(min(d.train_limit, len(self.train_set))))
        if d.test_limit is not None:
            self.test_set = torch.utils.data.Subset(self.test_set, range(min(d.test_limit, len(self.test_set))))
        info = splits.info
        self.n_classes = int(info.n_classes)
        self.method = METHOD_TYPES[t.method]
        self.sim = self.method.build(self, int(info.n_channels)).to(self.device)
        # a converted network (or a network file) may take one more input: the bias channel
        self.bias_channel = getattr(self.sim, "n_inputs", None) == int(info.n_channels) + 1
        self.opt = torch.optim.Adam(self.sim.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.epoch = 0
        self.history: list[dict] = []

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Frames as the network takes them (the bias channel appended where it has one)."""
        if not self.bias_channel:
            return x
        return torch.cat([x, torch.ones(x.shape[:2] + (1,), dtype=x.dtype, device=x.device)], 2)

    # ----------------------------------------------------------------- data
    def loader(self, dataset, shuffle: bool, epoch: int) -> torch.utils.data.DataLoader:
        from ..data import collate

        g = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch)
        return torch.utils.data.DataLoader(dataset, batch_size=self.cfg.train.batch_size, shuffle=shuffle,
                                           generator=g, collate_fn=collate)

    # ----------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> Optional[Path]:
        if not self.dist.main:
            return None
        state = {"epoch": self.epoch, "model": self.sim.state_dict(), "optim": self.opt.state_dict(),
                 "config": self.cfg.to_dict(), "history": self.history}
        return checkpoints.save(self.checkpoint_path, state)

    def load_checkpoint(self) -> None:
        state = checkpoints.load(self.checkpoint_path, self.device)
        self.sim.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    # ----------------------------------------------------------------- epochs
    def train_epoch(self) -> dict:
        t = self.cfg.train
        self.sim.train()
        rows, total_loss, n = [], 0.0, 0
        drop_gen = torch.Generator(device="cpu").manual_seed(t.seed * 7919 + self.epoch)
        it = progress(self.loader(self.train_set, True, self.epoch), desc=f"epoch {self.epoch + 1}/{t.epochs}",
                      enabled=self.progress)
        dist = self.dist
        for b, (x, y, _) in enumerate(it):
            x = self.inputs(losses.input_dropout(x, t.input_dropout, drop_gen))
            n_batch, offset = len(y), b * t.batch_size
            if dist.active:  # this rank's slice of the batch; its samples keep their global index
                lo, hi = dist.shard(n_batch)
                x, y, offset = x[lo:hi], y[lo:hi], offset + lo
                # (an SPSN's noise: each rank draws its own, seeded by the rank)
                gen = torch.Generator().manual_seed((t.seed * 7919 + self.epoch) * 1_000_003 + b * 1_009 + dist.rank)
            else:
                gen = drop_gen
            x, y = x.to(self.device), y.to(self.device)
            self.opt.zero_grad(set_to_none=True)
            if len(y):
                loss, row = self.method.train_batch(self, x, y, offset, gen)
                (loss * (len(y) / n_batch) if dist.active else loss).backward()
                part = float(loss.detach()) * len(y)
            else:
                row, part = None, 0.0
            if dist.active:
                dist.all_reduce_grads(self.sim.parameters())  # the sum of the slices' shares: the batch's mean
                part = dist.sum(part)
                row = distributed.merge_rows([r for r in dist.gather(row) if r is not None])
            self.opt.step()
            total_loss += part
            n += n_batch
            rows.append(row)
            it.set_postfix(loss=f"{total_loss / n:.3f}")
        s = metrics.summarize(rows, self.sim.n_neurons, self._frames(self.train_set))
        return {"train_loss": total_loss / max(n, 1), "train_accuracy": s.get("accuracy", float("nan")),
                "train_spikes": s.get("spikes", float("nan"))}

    def _frames(self, dataset) -> int:
        return int(dataset[0][0].shape[0]) if len(dataset) else 0

    @torch.no_grad()
    def evaluate(self, dataset=None, *, options: Optional[RunOptions] = None, layered: bool = False) -> dict:
        """Run metrics on ``dataset`` (default: the test split), asynchronously with
        ``options`` (default: the training schedule; the sample offset is set per batch) or,
        with ``layered``, layer-synchronously."""
        dataset = self.test_set if dataset is None else dataset
        self.sim.eval()
        rows = []
        for b, (x, y, _) in enumerate(self.loader(dataset, False, 0)):
            x, y = self.inputs(x).to(self.device), y.to(self.device)
            rows.append(self.method.eval_batch(self, x, y, b, options, layered))
        return metrics.summarize(rows, self.sim.n_neurons, self._frames(dataset))

    def chip_network(self) -> Network:
        """The trained network as the chip runs it, with the run options it was trained for and
        the frame length of its data (what ``network.npz`` holds)."""
        t = self.cfg.train
        return dataclasses.replace(self.method.chip_network(self), run_options=t.run_options(seed=t.seed),
                                   dt=self.cfg.data.dt)

    def fit(self) -> list[dict]:
        if self.cfg.model.init_from and self.epoch == 0 and not (self.run_dir / "conversion.json").exists():
            before = self.evaluate()  # the converted network before any fine-tuning
            if self.dist.main:
                write_json(self.run_dir / "conversion.json", {"init_from": self.cfg.model.init_from, "test": before})
            self.log(f"converted network before fine-tuning: test accuracy {before['accuracy']:.3f}, spikes/sample "
                     f"{before['spikes']:.1f}")
        self._status("running")
        try:
            self._epochs()
        except KeyboardInterrupt:
            # what is on disk is the last saved epoch (checkpoint and metrics, written atomically)
            done = int(checkpoints.load(self.checkpoint_path)["epoch"]) if self.checkpoint_path.exists() else 0
            self._status("interrupted", done)
            self.log(f"interrupted; the run folder holds epoch {done}: continue with asyncsnn train --resume "
                     f"{self.run_dir}")
            raise
        if self.dist.main:
            self.chip_network().save(self.run_dir / "network.npz")
        self._status("finished")
        self.dist.barrier()
        return self.history

    def _status(self, state: str, done: Optional[int] = None) -> None:
        """``status.json``: whether the run is running, interrupted or finished, and how far."""
        if not self.dist.main:
            return
        write_json(self.run_dir / "status.json", {"state": state, "epochs_done": self.epoch if done is None else done,
                                                  "epochs": self.cfg.train.epochs})

    def _epochs(self) -> None:
        t = self.cfg.train
        while self.epoch < t.epochs:
            t0 = time.perf_counter()
            row = {"epoch": self.epoch + 1, **self.train_epoch()}
            ev = self.evaluate()
            row.update({f"test_{k}": v for k, v in ev.items()})
            row.update(self.method.epoch_metrics(self))
            row["seconds"] = time.perf_counter() - t0
            self.epoch += 1
            self.history.append(row)
            self.save_checkpoint()
            if self.dist.main:
                write_csv(self.run_dir / "metrics.csv", self.history)
                write_json(self.run_dir / "metrics.json", {"history": self.history})
            self.log(f"epoch {row['epoch']}/{t.epochs}: loss {row['train_loss']:.3f}, train acc "
                     f"{row['train_accuracy']:.3f}, test acc {row['test_accuracy']:.3f}, spikes/sample "
                     f"{row['test_spikes']:.1f}, steps {row['test_steps']:.1f} ({row['seconds']:.1f} s)")
            self._status("running")


def train(cfg: Config, *, run_dir: Optional[Path] = None, progress: bool = True,
          log: Optional[Callable[[str], None]] = None) -> Trainer:
    """Train in a new run folder under ``cfg.out`` (or ``run_dir``); returns the trainer. Under
    ``torchrun`` every rank trains its slice of each batch (:mod:`asyncsnn.train.distributed`)
    and rank 0 makes and writes the run folder."""
    dist = distributed.setup(cfg.train.device)

    def make() -> Path:
        d = Path(run_dir) if run_dir is not None else new_run_dir(cfg.out, f"train-{cfg.train.method}")
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "config.json", cfg.to_dict())
        return d

    run_dir = distributed.shared_run_dir(dist, make)
    trainer = Trainer(cfg, run_dir, progress, **({"log": log} if log else {}))
    trainer.log(f"run folder {run_dir}; seed {cfg.train.seed}; device {trainer.device}; "
                f"{len(trainer.train_set)} train / {len(trainer.test_set)} test samples")
    trainer.fit()
    return trainer


def resume(run_dir: str | Path, *, epochs: Optional[int] = None, progress: bool = True,
           log: Optional[Callable[[str], None]] = None) -> Trainer:
    """Continue the run in ``run_dir`` from its checkpoint (optionally to more epochs)."""
    import json

    run_dir = Path(run_dir)
    ck = run_dir / "checkpoint.pt"
    if not ck.exists():
        raise FileNotFoundError(f"resume: {ck} does not exist (no finished epoch to resume from)")
    cfg = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    if epochs is not None:
        cfg = cfg.with_overrides({"train.epochs": int(epochs)})
        write_json(run_dir / "config.json", cfg.to_dict())
    trainer = Trainer(cfg, run_dir, progress, **({"log": log} if log else {}))
    trainer.load_checkpoint()
    trainer.log(f"resuming {run_dir} after epoch {trainer.epoch}")
    trainer.fit()
    return trainer
