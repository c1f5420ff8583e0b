"""The emulated chip: configuration, placement of a network, and runs.

>>> import numpy as np, asyncsnn
>>> net = asyncsnn.Network.feedforward([np.full((2, 3), 0.6, np.float32)], refractory=True)
>>> chip = asyncsnn.Chip.preset("ideal")
>>> res = chip.run(net, np.ones((1, 2, 3), np.uint32), scheduler="random", F=1, seed=3)
>>> res.options.scheduler, res.options.F
('random', 1)
>>> res.out_counts.shape
(1, 2, 2)
"""

from __future__ import annotations

import json
import os
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import _native, metrics
from .errors import ConfigError, InputError
from .network import Network
from .options import RunOptions

MAX_WORK = 2**40  # neuron updates a run may ask for without saying so (Placement.run's max_work)
FRAME_WORK = 64  # what a frame costs besides its neurons, in neuron updates (cores, groups, outputs)

_U32_MAX = np.iinfo(np.uint32).max


def _merge(base: dict, overrides: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        if k == "core" and isinstance(v, Mapping):
            out["core"] = {**out.get("core", {}), **v}
        elif k.startswith("core_") and k[5:] in out.get("core", {}):
            out["core"] = {**out["core"], k[5:]: v}
        elif k == "arithmetic" and isinstance(v, str):
            if v == "f32":
                out["arithmetic"] = {"kind": "f32"}
            elif v == "fixed":
                out["arithmetic"] = {"kind": "fixed", "weight_bits": 8, "potential_bits": 16, "frac_bits": 6,
                                     "leak_bits": 8}
            else:
                raise ConfigError(f"invalid chip config: arithmetic: {v!r}; allowed: 'f32', 'fixed' or a dict")
        else:
            out[k] = v
    return out


# Chip fields that take one of a few names (the emulator's enums).
_CHOICES = {"overflow": ("backpressure", "drop"), "neuron_update": ("when_idle", "on_arrival")}


def _check_choices(cfg: dict) -> None:
    for name, allowed in _CHOICES.items():
        if name in cfg and cfg[name] not in allowed:
            raise ConfigError(f"invalid chip config: {name}: {cfg[name]!r}; allowed: {', '.join(allowed)}")


def _check_finite(value: Any, field: str) -> None:
    """JSON cannot carry NaN or infinity: name the field here instead."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{field}.{k}" if field else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{field}[{i}]")
    elif isinstance(value, float) and not np.isfinite(value):
        raise ConfigError(f"invalid chip config: {field}: {value} is not a finite number")


class Chip:
    """A chip description.

    Build one from a preset (``Chip.preset("loihi")``), a TOML file (``Chip.from_toml(path)``)
    or keywords (``Chip(mesh_width=4, ...)``, on top of the ``ideal`` preset, or of ``base=``).
    Keyword overrides use the TOML field names; core capacities go in ``core={...}`` or as
    ``core_neurons=...``; ``arithmetic`` is ``"f32"``, ``"fixed"`` or a dict.
    """

    def __init__(self, base: str = "ideal", **overrides: Any) -> None:
        cfg = json.loads(_native.ChipConfig.preset(base).to_json())
        if overrides:
            cfg = _merge(cfg, overrides)
        _check_finite(cfg, "")
        _check_choices(cfg)
        try:
            text = json.dumps(cfg, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid chip config: {e}") from None
        self._config = _native.ChipConfig.from_json(text)

    @classmethod
    def _wrap(cls, config: "_native.ChipConfig") -> "Chip":
        obj = cls.__new__(cls)
        obj._config = config
        return obj

    @classmethod
    def from_json(cls, text: str) -> "Chip":
        """From the JSON form of a description (:meth:`to_json`)."""
        return cls._wrap(_native.ChipConfig.from_json(text))

    def to_json(self) -> str:
        return self._config.to_json()

    def __reduce__(self):
        return (Chip.from_json, (self.to_json(),))  # (pickle, copy: the description, as JSON)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chip) and self.config == other.config

    def __hash__(self) -> int:
        return hash(self.to_json())

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Chip":
        """A built-in preset (``loihi``, ``edge``, ``ideal``), optionally with overrides."""
        if not isinstance(name, str):
            raise ConfigError(f"invalid chip config: preset: {name!r} is not a name; presets: "
                              f"{', '.join(cls.presets())}")
        if overrides:
            return cls(base=name, **overrides)
        return cls._wrap(_native.ChipConfig.preset(name))

    @classmethod
    def from_toml(cls, path_or_text: str | Path, **overrides: Any) -> "Chip":
        """From a TOML file path or TOML text."""
        p = Path(str(path_or_text))
        text = str(path_or_text)
        if "\n" not in text and p.suffix == ".toml":
            if not p.exists():
                raise FileNotFoundError(f"chip file {p} does not exist")
            text = p.read_text()
        chip = cls._wrap(_native.ChipConfig.from_toml(text))
        if overrides:
            cfg = _merge(chip.config, overrides)
            _check_choices(cfg)
            chip = cls._wrap(_native.ChipConfig.from_json(json.dumps(cfg)))
        return chip

    @classmethod
    def fitting(cls, base: str, network: Optional[Network] = None, **overrides: Any) -> "Chip":
        """``base`` (a preset name or a ``.toml`` file) with ``overrides``; given a network with
        its own core mapping, a mesh too small for it grows to the smallest near-square mesh that
        holds it (unless the overrides set the mesh)."""
        toml = str(base).endswith(".toml")
        core_of = network.core_of if network is not None else None
        n = int(np.max(core_of)) + 1 if core_of is not None and len(core_of) else 1
        if n > 1 and not toml and not {"mesh_width", "mesh_height"} & set(overrides):
            cfg = cls.preset(base).config
            if n > cfg["mesh_width"] * cfg["mesh_height"]:
                w = int(np.ceil(np.sqrt(n)))
                overrides.update(mesh_width=w, mesh_height=int(np.ceil(n / w)))
        return cls.from_toml(base, **overrides) if toml else cls.preset(base, **overrides)

    @staticmethod
    def presets() -> list[str]:
        return list(_native.ChipConfig.presets())

    @property
    def config(self) -> dict:
        """The full description as a dict (TOML field names)."""
        return json.loads(self._config.to_json())

    @property
    def native(self) -> "_native.ChipConfig":
        return self._config

    @property
    def n_cores(self) -> int:
        return int(self._config.n_cores)

    @property
    def name(self) -> str:
        return str(self.config["name"])

    def to_toml(self) -> str:
        return self._config.to_toml()

    def __repr__(self) -> str:
        c = self.config
        return f"Chip({c['name']!r}, mesh={c['mesh_width']}x{c['mesh_height']}, arithmetic={c['arithmetic']['kind']})"

    def place(self, network: Network, mapping: Optional[Sequence[int]] = None) -> "Placement":
        """Place ``network`` on this chip (``mapping[neuron] = core``; default: the network's
        own ``core_of`` if it has one, else automatically).

        Raises :class:`MappingError` listing every over-full core before anything runs.
        """
        native_net = network.to_native()
        core_of = None
        if mapping is None:
            mapping = network.core_of
        if mapping is not None:
            m = np.asarray(mapping)
            if m.ndim != 1 or m.dtype.kind not in "iu":
                raise InputError(f"invalid input: mapping: expected a 1-D integer array, got {m.dtype} {m.shape}")
            core_of = np.ascontiguousarray(m, dtype=np.int64)
        return Placement(self, network, _native.Emulator(native_net, self._config, core_of))

    def run(self, network: Network, inputs: Any = None, options: Optional[RunOptions] = None, *,
            mapping: Optional[Sequence[int]] = None, **kwargs: Any) -> "RunResult":
        """Place ``network`` and run ``inputs`` (see :meth:`Placement.run`)."""
        return self.place(network, mapping).run(inputs, options, **kwargs)


def _dense_counts(inputs: Any, n_inputs: int) -> np.ndarray:
    a = np.asarray(inputs)
    if a.ndim != 3:
        raise InputError(
            f"invalid input: inputs: expected dense frames of shape (batch, frames, channels), got shape {a.shape}"
        )
    if a.shape[2] != n_inputs:
        raise InputError(f"invalid input: inputs: {a.shape[2]} channels; the network has {n_inputs} inputs")
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a, dtype=np.uint32)
    if a.dtype.kind not in "fiu":
        raise InputError(f"invalid input: inputs: dtype {a.dtype} is not numeric")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError("invalid input: inputs: event counts must be finite")
        if (a != np.round(a)).any():
            raise InputError("invalid input: inputs: event counts must be whole numbers")
    if a.size and (a.min() < 0 or a.max() > _U32_MAX):
        raise InputError(f"invalid input: inputs: event counts must be in 0..={_U32_MAX}")
    return np.ascontiguousarray(a, dtype=np.uint32)


@dataclass
class Placement:
    """A network placed on a chip; run it as often as needed."""

    chip: Chip
    network: Network
    native: Any = field(repr=False)

    @property
    def core_of(self) -> np.ndarray:
        return np.asarray(self.native.core_of)

    @property
    def nbytes(self) -> int:
        """Bytes the placement holds: the compiled network (per-neuron state, each synapse's
        32-bit target and weight, the per-core segments); about 8 to 13 per synapse."""
        return int(self.native.nbytes)

    def __reduce__(self):
        # (pickle, copy: placed again on the same chip, on the same cores)
        return (_place, (self.chip, self.network, self.core_of.astype(np.int64)))

    def usage(self) -> dict[str, np.ndarray]:
        """Per-core neurons, synapses, fan-in and fan-out."""
        return dict(self.native.usage())

    def run(self, inputs: Any = None, options: Optional[RunOptions] = None, *,
            events: Optional[Sequence[tuple[Any, Any]]] = None, dt: int = 1, n_frames: Optional[int] = None,
            labels: Optional[Sequence[int]] = None, max_work: Optional[int] = MAX_WORK,
            executor: Any = None, shards: Optional[int] = None, **run_options: Any) -> "RunResult":
        """Run a batch with ``options`` (a :class:`~asyncsnn.options.RunOptions`), or the
        defaults changed by ``run_options`` keywords (``scheduler="random", F=1, ...``).

        Inputs are dense event counts ``(batch, frames, channels)``, or ``events``: one
        ``(times, channels)`` pair of 1-D integer arrays per sample, binned into frames of
        ``dt`` time units (``n_frames``: default, enough for the latest event of the batch).
        ``labels`` give the first-correct latency and the accuracy.

        A batch of more than ``max_work`` neuron updates (samples x frames x (neurons + 64);
        default 2^40, about 20 minutes of one core) is refused up front with an
        :class:`~asyncsnn.errors.InputError`; pass a larger number, or ``None``, to run it
        anyway. The interpreter is released while the emulator runs, and Ctrl-C
        (``KeyboardInterrupt``) stops it within a forward step.

        With an ``executor`` (:mod:`asyncsnn.executors`: a local process pool, Ray tasks) the
        batch is cut into ``shards`` (default: one per pool worker or Ray CPU) of consecutive
        samples, run as tasks, and merged: each sample keeps its index in the scheduler hash
        (``sample_offset``), so the result equals the one-process run array for array.
        """
        if max_work is not None and (isinstance(max_work, bool) or not isinstance(max_work, numbers.Integral)
                                     or max_work < 1):
            raise InputError(f"invalid input: max_work: {max_work!r} must be an integer >= 1, or None (no bound)")
        opts = RunOptions.of(options, **run_options)
        lab = None
        if labels is not None:
            raw_labels = np.asarray(labels)
            if raw_labels.size and raw_labels.dtype.kind not in "iu":  # NaN or 2.5 is no class (no silent cast)
                raise InputError(f"invalid input: labels: expected integer class indices, got {raw_labels.dtype}")
            lab = np.ascontiguousarray(raw_labels, dtype=np.int64)
            if lab.ndim != 1:
                raise InputError(f"invalid input: labels: expected a 1-D array, got shape {lab.shape}")
        if (inputs is None) == (events is None):
            raise InputError("invalid input: inputs: give exactly one of dense `inputs` or `events`")
        if inputs is not None:
            x: Any = _dense_counts(inputs, self.network.n_inputs)
        else:
            x = _event_streams(events, dt, n_frames)
        if inputs is not None:
            batch, frames = x.shape[0], x.shape[1]
        else:
            times = x[0]
            last = max((int(t.max()) for t in times if len(t)), default=-1)
            batch = len(times)
            frames = x[3] if x[3] is not None else (last // max(x[2], 1) + 1 if last >= 0 else 0)
        _check_work(batch, frames, self.network, max_work)
        _check_memory(batch, frames, self.network, opts)
        if executor is not None:
            return _run_sharded(self, x, inputs is not None, frames, opts, lab, executor, shards)
        raw = self.native.run(x, opts.to_native(), lab)
        if inputs is not None and x.shape[0] == 0:  # an empty batch keeps the (batch, frames, ...) shapes
            n_out, t = self.network.n_outputs, x.shape[1]
            raw = dict(raw, out_counts=np.zeros((0, t, n_out), raw["out_counts"].dtype),
                       v_final=np.zeros((0, self.network.n_neurons), raw["v_final"].dtype))
            if raw.get("out_potential") is not None:
                raw["out_potential"] = np.zeros((0, t, n_out), raw["out_potential"].dtype)
        return RunResult.from_native(raw, opts, labels=lab, readout=self.network.readout)


def _run_shard(placement: "Placement", x: Any, dense: bool, frames: int, opts: RunOptions,
               labels: Optional[np.ndarray]) -> "RunResult":
    """One shard of a sharded run (in a worker): dense counts, or event streams with the batch's frame count."""
    if dense:
        return placement.run(x, opts, labels=labels, max_work=None)
    times, chans, dt, _ = x
    return placement.run(events=list(zip(times, chans)), dt=dt, n_frames=frames, labels=labels, options=opts,
                         max_work=None)


def _run_sharded(placement: "Placement", x: Any, dense: bool, frames: int, opts: RunOptions,
                 labels: Optional[np.ndarray], executor: Any, shards: Optional[int]) -> "RunResult":
    """:meth:`Placement.run` on an executor: consecutive samples per task, merged in order."""
    from .executors import Task, TaskError

    batch = x.shape[0] if dense else len(x[0])
    if shards is None:
        shards = executor.parallelism()
    if isinstance(shards, bool) or not isinstance(shards, numbers.Integral) or shards < 1:
        raise InputError(f"invalid input: shards: {shards!r} must be an integer >= 1")
    shards = max(1, min(int(shards), batch))
    bounds = [batch * k // shards for k in range(shards + 1)]
    tasks = []
    for k in range(shards):
        lo, hi = bounds[k], bounds[k + 1]
        part = x[lo:hi] if dense else (x[0][lo:hi], x[1][lo:hi], x[2], x[3])
        tasks.append(Task(f"run samples {lo}..{hi - 1}", _run_shard,
                          (placement, part, dense, frames, opts.replace(sample_offset=opts.sample_offset + lo),
                           None if labels is None else labels[lo:hi]), key=lo))
    parts: dict[int, RunResult] = {}
    for task, outcome in executor.run(tasks):
        if isinstance(outcome, TaskError):  # the shard's own error where it travelled (InputError, ...)
            raise outcome.original if outcome.original is not None else outcome
        parts[task.key] = outcome
    return RunResult.concatenate([parts[k] for k in sorted(parts)], opts, labels)


def _place(chip: Chip, network: Network, core_of: np.ndarray) -> "Placement":
    return chip.place(network, core_of)


FRAME_BYTES = 64  # what the emulator keeps per sample and frame besides the outputs (measured: ~1 GB / 2^24)
NEURON_BYTES = 96  # state per neuron of a sample in flight


def _system_available() -> Optional[int]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> Optional[int]:
    """What the process's address-space limit (``ulimit -v``) still allows, if it has one."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(soft - int(line.split()[1]) * 1024, 0)
    except (ImportError, OSError, ValueError):
        pass
    return None


def available_memory() -> Optional[int]:
    """Bytes this process can still get: the system's ``MemAvailable``, or less where the
    process has an address-space limit; ``None`` where neither can be read."""
    have = [b for b in (_system_available(), _address_space_left()) if b is not None]
    return min(have) if have else None


def _check_work(batch: int, frames: int, network: Network, max_work: Optional[int]) -> None:
    """Refuse, up front, a run that asks for more than ``max_work`` neuron updates."""
    work = batch * frames * (network.n_neurons + FRAME_WORK)
    if max_work is not None and work > max_work:
        raise InputError(f"invalid input: max_work: {batch} samples x {frames} frames x ({network.n_neurons} "
                         f"neurons + {FRAME_WORK}) = {work:.3g} neuron updates is more than max_work = "
                         f"{max_work:.3g}; pass a larger max_work (or None) to run it anyway, or run fewer "
                         "samples or frames")


def _check_memory(batch: int, frames: int, network: Network, opts: RunOptions) -> None:
    """Refuse, up front, a run whose results alone cannot fit in memory: a ``MemoryError``
    naming the request, instead of an allocation failure that aborts the interpreter."""
    per_frame = network.n_outputs * 4 * (2 if network.readout == "potential" else 1) + FRAME_BYTES
    need = batch * (frames * per_frame + network.n_neurons * (8 + NEURON_BYTES))
    require_memory(f"run: {batch} samples x {frames} frames x {network.n_outputs} outputs", need,
                   "run fewer samples or frames at a time", what=" for their results")


def require_memory(request: str, need: int, advice: str, *, what: str = "") -> None:
    """A ``MemoryError`` naming ``request`` when the ``need`` bytes it asks for are more than the
    process can get (:func:`available_memory`), before anything is allocated."""
    have = available_memory()
    if have is not None and need > have:
        raise MemoryError(f"{request} need about {need / 1e9:.1f} GB{what}; {have / 1e9:.1f} GB are available "
                          f"({advice})")


def _event_streams(events: Any, dt: Any, n_frames: Any) -> tuple:
    """``(times, channels, dt, n_frames)`` as the emulator takes event streams."""
    times, chans = [], []
    if isinstance(events, (str, bytes, np.ndarray)) or not isinstance(events, Sequence):
        raise InputError(f"invalid input: events: expected a list of (times, channels) pairs, got "
                         f"{type(events).__name__}")
    for i, ev in enumerate(events):
        try:
            t, c = ev
        except (TypeError, ValueError):
            raise InputError(f"invalid input: events[{i}]: expected a (times, channels) pair") from None
        try:
            t, c = np.asarray(t), np.asarray(c)
        except (TypeError, ValueError):
            raise InputError(f"invalid input: events[{i}]: times and channels must be 1-D integer arrays") from None
        if t.ndim != 1 or c.ndim != 1 or t.dtype.kind not in "iu" or c.dtype.kind not in "iu":
            raise InputError(f"invalid input: events[{i}]: times and channels must be 1-D integer arrays")
        times.append(np.ascontiguousarray(t, dtype=np.int64))
        chans.append(np.ascontiguousarray(c, dtype=np.int64))
    if isinstance(dt, bool) or not isinstance(dt, numbers.Integral) or not 1 <= dt < 2**63:
        raise InputError(f"invalid input: dt: {dt!r} must be an integer in 1..2^63")
    if n_frames is not None and (isinstance(n_frames, bool) or not isinstance(n_frames, numbers.Integral)
                                 or not 0 <= n_frames < 2**32):
        raise InputError(f"invalid input: n_frames: {n_frames!r} is outside 0..2^32")
    return times, chans, int(dt), None if n_frames is None else int(n_frames)


@dataclass
class RunResult:
    """What a batch run returns (numpy arrays, batch first).

    * ``out_counts`` ``(batch, frames, outputs)``: output spike counts per frame;
    * ``first_spike`` ``(batch, outputs)``: global step (``steps``) or tick (``events``) of
      each output neuron's first spike, -1 if none;
    * ``v_final`` ``(batch, neurons)``: potentials after the last frame;
    * ``out_potential`` ``(batch, frames, outputs)``: the output population's potentials at
      the end of every frame (the readout of a non-firing ``integrator`` output);
    * ``trace`` ``(rows, 5)``: ``[sample, frame, step, time, neuron]`` (with ``trace=True``);
    * ``releases`` ``(rows, 7)``: ``[sample, frame, step, time, group, source, count]``, every
      release of a pending source in release order (with ``trace=True``; ``group`` is the
      core, or the number of cores for the input port);
    * ``core_spikes``, ``core_synops``, ``core_busy_ticks`` ``(batch, cores)``;
    * ``metrics``: name -> ``(batch,)`` ``float64`` array, named as in
      :data:`asyncsnn.metrics.METRICS` (NaN: never happened);
    * ``options``: the :class:`~asyncsnn.options.RunOptions` of the run.
    """

    out_counts: np.ndarray
    first_spike: np.ndarray
    v_final: np.ndarray
    trace: np.ndarray
    releases: np.ndarray
    core_spikes: np.ndarray
    core_synops: np.ndarray
    core_busy_ticks: np.ndarray
    metrics: dict[str, np.ndarray]
    options: RunOptions = field(default_factory=RunOptions)
    labels: Optional[np.ndarray] = None
    out_potential: Optional[np.ndarray] = None
    readout: str = "counts"
    """``counts`` (spiking output: most spikes wins) or ``potential`` (integrator output: the
    highest mean potential over frames wins)."""

    @classmethod
    def from_native(cls, raw: dict, options: RunOptions, labels: Optional[np.ndarray],
                    readout: str = "counts") -> "RunResult":
        return cls(
            out_counts=raw["out_counts"], first_spike=raw["first_spike"], v_final=raw["v_final"],
            trace=raw["trace"], releases=raw["releases"], core_spikes=raw["core_spikes"], core_synops=raw["core_synops"],
            core_busy_ticks=raw["core_busy_ticks"], metrics=metrics.Metrics(raw["metrics"]), options=options,
            labels=labels, out_potential=raw["out_potential"], readout=readout,
        )

    @classmethod
    def concatenate(cls, parts: Sequence["RunResult"], options: RunOptions,
                    labels: Optional[np.ndarray] = None) -> "RunResult":
        """The runs of consecutive shards of one batch as one run (trace and release rows get
        their sample index in the whole batch)."""
        if not parts:
            raise InputError("invalid input: parts: nothing to concatenate")
        offsets = np.cumsum([0] + [p.batch_size for p in parts[:-1]])

        def rows(name: str) -> np.ndarray:
            out = []
            for off, p in zip(offsets, parts):
                r = getattr(p, name).copy()
                if len(r):
                    r[:, 0] += off
                out.append(r)
            return np.concatenate(out)

        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        first = parts[0]
        return cls(
            out_counts=cat("out_counts"), first_spike=cat("first_spike"), v_final=cat("v_final"), trace=rows("trace"),
            releases=rows("releases"), core_spikes=cat("core_spikes"), core_synops=cat("core_synops"),
            core_busy_ticks=cat("core_busy_ticks"),
            metrics=metrics.Metrics({k: np.concatenate([p.metrics[k] for p in parts]) for k in first.metrics}),
            options=options, labels=labels,
            out_potential=None if first.out_potential is None else cat("out_potential"), readout=first.readout,
        )

    @property
    def mode(self) -> str:
        return self.options.mode

    @property
    def batch_size(self) -> int:
        return int(self.out_counts.shape[0])

    def predictions(self) -> np.ndarray:
        """See :func:`asyncsnn.metrics.predictions` (with this run's readout)."""
        return metrics.predictions(self.out_potential if self.readout == "potential" else self.out_counts,
                                   self.readout)

    def accuracy(self, labels: Optional[Sequence[int]] = None) -> float:
        y = self.labels if labels is None else np.asarray(labels)
        if y is None:
            raise InputError("invalid input: labels: accuracy needs labels (pass them to run or here)")
        return float((self.predictions() == y).mean()) if len(y) else float("nan")

    def sample_metrics(self) -> dict[str, np.ndarray]:
        """Per-sample metrics, with ``correct`` (given labels) and ``answered``."""
        return metrics.Metrics({**metrics.outcome(self.predictions(), self.labels), **self.metrics})

    def summary(self) -> dict[str, float]:
        """The batch's figures (see :func:`asyncsnn.metrics.summarize`)."""
        n_neurons = self.v_final.shape[1] if self.v_final.ndim == 2 else 0
        return metrics.summarize([self.sample_metrics()], n_neurons, self.out_counts.shape[1])
