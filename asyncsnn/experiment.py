"""The main job: what happens when a model trained layer-synchronously runs asynchronously on a
chip, and how much better does a model trained with unlayered backprop do?

For each dataset, :func:`run_experiment` trains

* one **layered** model (BPTT over frames, every layer integrating its whole input before the
  next one runs; its training does not involve a scheduler, so the one model serves every
  scheduler), and
* one **unlayered** model per scheduler (backprop through that scheduler's asynchronous
  schedule, at the training ``F`` of the config),

from the same initial weights, then runs both asynchronously with that scheduler for every
``F`` of the sweep, in the PyTorch simulator and on the emulated chip (``steps`` and ``events``
modes). In ``steps`` mode the chip must agree exactly with the simulator (checked per cell).

Outputs in the run folder: ``results.json`` (everything), ``cells.csv`` (one row per dataset,
scheduler, model, ``F`` and engine), ``relative.csv`` (unlayered versus layered per cell),
``decide_early.csv`` (accuracy when deciding after a budget of spikes, steps or nanoseconds),
``summary.md`` and plots.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np

from .extras import require

require("torch", "train", "the experiment (training)")
require("pydantic", "train", "the experiment's typed config")

from pydantic import Field, field_validator, model_validator  # noqa: E402

from . import settings  # noqa: E402
from .errors import ConfigError, InputError  # noqa: E402
from .options import MODES, f_label  # noqa: E402
from .runs import markdown_table, new_run_dir, write_csv, write_json  # noqa: E402
from .settings import Section  # noqa: E402
from .train.config import Config, read_config_file  # noqa: E402

# The asynchronous schedulers of asyncsnn.SCHEDULERS (all but `layered`), in the study's order.
EXPERIMENT_SCHEDULERS = ("random", "momentum", "fifo")
MODELS = ("layered", "unlayered")

# The default: the embedded temporal dataset in 5 long frames (20 ms each). Long frames put many
# input spikes into each frame, so the order in which a chip releases them matters; this is where
# layer-synchronous training and asynchronous execution part ways. Each layer has a core of its
# own on a 4 x 4 Loihi-like mesh, so F bounds the spikes a layer releases per forward step. About
# a minute on 2 CPU cores.
DEFAULT: dict[str, Any] = {
    "data": {"name": "manifold", "dt": 20_000, "n_frames": 5,
             "options": {"n_classes": 4, "train_per_class": 96, "test_per_class": 32}},
    "model": {"hidden": [64, 64], "core_neurons": 64},
    "train": {"lr": 0.01, "epochs": 15, "F": 8, "batch_size": 32},
    "experiment": {"chip_set": {"mesh_width": 4, "mesh_height": 4}},
}

# --full: both generated datasets at a larger size, spoken-digits (generated when missing, if
# espeak-ng is installed), and N-MNIST and SHD where their files are on disk (skipped with a
# note otherwise). Meant for a GPU.
FULL: dict[str, Any] = {
    "data": {"name": "manifold", "dt": 20_000, "n_frames": 5},
    "model": {"hidden": [128, 128], "core_neurons": 64},
    "train": {"lr": 0.005, "epochs": 30, "F": 8, "batch_size": 64},
    "experiment": {
        "datasets": [
            {"name": "manifold", "label": "manifold", "dt": 20_000, "n_frames": 5,
             "options": {"n_classes": 8, "train_per_class": 256, "test_per_class": 64}},
            {"name": "digits", "label": "digits", "dt": 30_000, "n_frames": 10, "options": {}},
            {"name": "nmnist", "label": "nmnist", "dt": 30_000, "n_frames": 10, "optional": True,
             "options": {"first_saccade_only": False}, "set": {"model.hidden": [256, 256], "train.epochs": 10}},
            {"name": "shd", "label": "shd", "dt": 20_000, "n_frames": 50, "optional": True,
             "set": {"model.hidden": [128, 128], "train.epochs": 30}},
            # SHD's pipeline offline (espeak-ng + lauscher), made here when missing and espeak-ng
            # is installed; SHD-like frames: 10 ms, 100 of them.
            {"name": "spoken-digits", "label": "spoken-digits", "dt": 10_000, "n_frames": 100, "optional": True,
             "generate": True, "set": {"model.hidden": [128, 128], "model.gain": 1.0, "train.epochs": 30,
                                       "train.batch_size": 32}},
        ],
        "test_limit": 2000,
    },
}


class DatasetSpec(Section):
    """One dataset of the experiment. ``set`` holds ``section.key`` overrides of the base config
    for this dataset only; ``optional`` datasets whose files are missing are skipped with a note."""

    name: str = Field(description="dataset name")
    dt: int = Field(4000, ge=1, description="frame length in microseconds")
    n_frames: Optional[int] = Field(None, ge=1, description="frames per sample (null: the recording's length)")
    options: dict[str, Any] = Field(default_factory=dict, description="the dataset's options")
    label: Optional[str] = Field(None, description="the dataset's name in tables (default: its name)")
    optional: bool = Field(False, description="skip it, with a note, when its files are missing")
    generate: bool = Field(False, description="make a synthesized dataset (spoken-digits) when it is missing")
    set: dict[str, Any] = Field(default_factory=dict, description="section.key overrides for this dataset")

    @property
    def key(self) -> str:
        return self.label or self.name

    @model_validator(mode="before")
    @classmethod
    def _a_name_alone(cls, raw: Any) -> Any:
        return {"name": raw} if isinstance(raw, str) else raw


class ExperimentSettings(Section):
    """``[experiment]``: what is trained, and every cell it is evaluated in."""

    datasets: list[DatasetSpec] = Field(default_factory=list, description="tables of name, dt, n_frames, options, "
                                                                         "label, optional, set (empty: [data])")
    schedulers: list[Literal[EXPERIMENT_SCHEDULERS]] = Field(
        default_factory=lambda: list(EXPERIMENT_SCHEDULERS), min_length=1,
        description="schedulers: one unlayered model each, and each is an evaluation column")
    F: list[Optional[int]] = Field(default_factory=lambda: [1, 4, 16, None], min_length=1,
                                   description="release limits of the evaluation (\"inf\": none)")
    modes: list[Literal[MODES]] = Field(default_factory=lambda: list(MODES), description="emulator modes")
    chip: str = Field("loihi", min_length=1, description="chip preset name or .toml file")
    chip_set: dict[str, Any] = Field(default_factory=dict, description="chip field overrides")
    only: list[str] = Field(default_factory=list, description="run only the datasets with these labels "
                                                                "(empty: all of them)")
    test_limit: Optional[int] = Field(None, ge=1, description="evaluate on the first N test samples")
    eval_seed: Optional[int] = Field(None, ge=0, description="scheduler seed of the evaluation (null: train.seed)")
    raster_sample: int = Field(0, ge=0, description="test sample drawn in the rasters")
    curve_points: int = Field(60, ge=2, le=10_000, description="points of each decide-early curve")

    @field_validator("schedulers", "modes", "only", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [v for v in value.split(",") if v] if isinstance(value, str) else value

    @field_validator("schedulers", "modes")
    @classmethod
    def _distinct(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError(f"{value!r} repeats an entry")
        return value

    @field_validator("F", mode="before")
    @classmethod
    def _release_limits(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError(f"{value!r}: expected a list such as [1, 4, 16, \"inf\"]")
        return [settings.run_option("F", v) for v in value]


@dataclass
class ExperimentConfig:
    """The base training config (sections ``data``, ``model``, ``train``, ``out``), the
    ``experiment`` section, and ``overrides`` (``section.key`` settings applied to every dataset's
    config last, e.g. from ``--set``)."""

    base: Config
    experiment: ExperimentSettings
    overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = self.base.to_dict()
        e = self.experiment.model_dump()
        e["F"] = [f_label(f) for f in self.experiment.F]
        d["experiment"] = e
        d["overrides"] = dict(self.overrides)
        return d

    def dataset_specs(self) -> list[DatasetSpec]:
        if self.experiment.datasets:
            specs = list(self.experiment.datasets)
        else:
            d = self.base.data
            specs = [DatasetSpec(name=d.name, dt=d.dt, n_frames=d.n_frames, options=d.dataset_options())]
        only = self.experiment.only
        if only:
            keys = [s.key for s in specs]
            unknown = [k for k in only if k not in keys]
            if unknown:
                raise ConfigError(f"invalid config: experiment.only: {unknown} are not among the datasets {keys}")
            specs = [s for s in specs if s.key in only]
        return specs

    def dataset_config(self, spec: DatasetSpec) -> Config:
        """The training config of one dataset: base, then the dataset, its ``set``, the overrides."""
        d = self.base.to_dict()
        d["data"].update(name=spec.name, dt=spec.dt, n_frames=spec.n_frames, options=dict(spec.options))
        cfg = Config.from_dict(d)
        if spec.set:
            cfg = cfg.with_overrides(spec.set)
        if self.overrides:
            cfg = cfg.with_overrides(self.overrides)
        return cfg

    def check_rules(self) -> "ExperimentConfig":
        """The rules between keys (each key is checked on its own when set)."""
        keys = [s.key for s in self.dataset_specs()]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"invalid config: experiment.datasets: labels {keys} repeat; give each a distinct label")
        for s in self.dataset_specs():
            self.dataset_config(s)  # raises ConfigError naming the field
        return self


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: sections merge key by key; the experiment's lists replace."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def experiment_config(raw: Optional[dict] = None, overrides: Optional[dict] = None, *, full: bool = False) -> ExperimentConfig:
    """Parse a config dict (file contents) over the :data:`DEFAULT` (or :data:`FULL`) preset.

    ``overrides`` are ``section.key`` settings: ``experiment.*`` ones set the experiment,
    the others apply to every dataset's training config (after the dataset's own settings)."""
    preset = FULL if full else DEFAULT
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("invalid config: expected a table of sections")
    merged = {k: _merge(preset.get(k, {}), raw[k]) if isinstance(raw.get(k), dict) and isinstance(preset.get(k), dict)
              else copy.deepcopy(raw.get(k, preset.get(k))) for k in set(preset) | set(raw)}
    exp_raw = dict(merged.pop("experiment", {}) or {})
    base_overrides: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if key == "out":
            merged["out"] = str(value)
        elif section == "experiment":
            if not name:
                raise ConfigError(f"invalid config: {key}: expected experiment.KEY")
            exp_raw[name] = value
        else:
            base_overrides[key] = value
    base = Config.from_dict(merged)
    return ExperimentConfig(base, settings.validate(ExperimentSettings, exp_raw, "experiment"),
                            base_overrides).check_rules()


def listing(*, full: bool = False) -> str:
    """Every key of an experiment file with its default and meaning: ``[experiment]``, then the
    training sections, whose defaults the :data:`DEFAULT` (or :data:`FULL`) preset changes."""
    preset = FULL if full else DEFAULT
    changed = ", ".join(f"{sec}.{k}" for sec in ("data", "model", "train") for k in preset.get(sec, {}))
    return "\n".join([*settings.listing(ExperimentSettings, "experiment"), "",
                      f"# the training sections; the {'--full' if full else 'default'} preset sets {changed}",
                      Config.listing()])


def load_experiment_config(path: Optional[str | Path] = None, overrides: Optional[dict] = None, *,
                           full: bool = False) -> ExperimentConfig:
    """Read a ``.toml`` or ``.json`` experiment file (sections ``experiment``, ``data``, ``model``,
    ``train``; all optional) over the default or ``--full`` preset, then apply ``overrides``."""
    raw: dict = {}
    if path is not None:
        raw = read_config_file(path)
        saved = raw.pop("overrides", None)  # a run folder's config.json: its overrides come first
        if isinstance(saved, dict):
            overrides = {**saved, **(overrides or {})}
    return experiment_config(raw, overrides, full=full)


# ---------------------------------------------------------------------------------------- analysis


def decide_early(trace: np.ndarray, labels: np.ndarray, output_start: int, n_outputs: int,
                 grid: np.ndarray, axis: str) -> np.ndarray:
    """Accuracy (over all samples of ``labels``) when each sample decides from the spikes
    emitted up to a budget: the output neuron with the most spikes so far (ties to the lowest
    index; no output spike yet counts as wrong).

    ``trace`` rows are ``[sample, frame, step, time, neuron]`` in emission order. ``axis="spikes"``:
    the budget is the number of spikes (of any neuron) integrated so far, the decision after
    budget ``k`` using the first ``k`` spikes; ``axis="time"``: the budget is a time (the trace's
    ``time`` column: the global step, or the tick in ``events`` mode), using spikes with
    ``time <= t``. At a budget beyond every sample's last spike the curve equals the accuracy."""
    labels = np.asarray(labels, np.int64)
    grid = np.asarray(grid, np.float64)
    n = len(labels)
    if n == 0:
        return np.full(len(grid), np.nan)
    trace = np.asarray(trace, np.int64).reshape(-1, 5)
    order = np.lexsort((np.arange(len(trace)), trace[:, 3], trace[:, 0]))  # stable: by sample, then time
    tr = trace[order]
    starts = np.searchsorted(tr[:, 0], np.arange(n + 1))
    correct = np.zeros(len(grid))
    for s in range(n):
        rows = tr[starts[s]:starts[s + 1]]
        out = (rows[:, 4] >= output_start) & (rows[:, 4] < output_start + n_outputs)
        if not out.any():
            continue
        pos = np.flatnonzero(out)
        cls = rows[pos, 4] - output_start
        counts = np.zeros((len(pos), n_outputs), np.int64)
        counts[np.arange(len(pos)), cls] = 1
        counts = np.cumsum(counts, axis=0)
        decision = counts.argmax(axis=1)            # after each output spike
        if axis == "spikes":
            # output spike j is the (pos_j + 1)-th spike of the sample
            idx = np.searchsorted(pos + 1, grid, side="right") - 1
        else:
            idx = np.searchsorted(rows[pos, 3], grid, side="right") - 1
        ok = idx >= 0
        correct[ok] += decision[idx[ok]] == labels[s]
    return correct / n


def _grid(hi: float, points: int) -> np.ndarray:
    """Up to ``points`` integer budgets from 0 to ``hi`` (at least 1)."""
    return np.unique(np.round(np.linspace(0.0, max(float(hi), 1.0), points)))


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def _ratio(a: Optional[float], b: Optional[float]) -> float:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return float("nan")
    return a / b


# Latency speed-ups: layered latency / unlayered latency (> 1: unlayered decides sooner).
SPEEDUPS = {
    "speedup_first_correct_step": "first_correct_step",
    "speedup_first_correct_spikes": "first_correct_spikes_before",
    "speedup_first_correct_ns": "first_correct_ns",
}


def relative_row(layered: dict, unlayered: dict) -> dict:
    """Unlayered versus layered from two cells' raw figures: accuracy gain in points, spike,
    synaptic-op and energy reductions (``1 - unlayered / layered``), latency speed-ups
    (``layered / unlayered``)."""
    g = lambda r, k: r.get(k, float("nan"))  # noqa: E731
    row = {
        "accuracy_layered": g(layered, "accuracy"), "accuracy_unlayered": g(unlayered, "accuracy"),
        "accuracy_gain_points": 100.0 * (g(unlayered, "accuracy") - g(layered, "accuracy")),
        "spikes_layered": g(layered, "spikes"), "spikes_unlayered": g(unlayered, "spikes"),
        "spike_reduction": 1.0 - _ratio(g(unlayered, "spikes"), g(layered, "spikes")),
        "synaptic_operations_reduction": 1.0 - _ratio(g(unlayered, "synaptic_operations"),
                                                      g(layered, "synaptic_operations")),
    }
    for name, key in SPEEDUPS.items():
        row[f"{key}_layered"] = g(layered, key)
        row[f"{key}_unlayered"] = g(unlayered, key)
        row[name] = _ratio(g(layered, key), g(unlayered, key))
    if "energy_total_pj" in layered:
        row["energy_reduction"] = 1.0 - _ratio(g(unlayered, "energy_total_pj"), g(layered, "energy_total_pj"))
    return row


# the figures of a cell (see asyncsnn.metrics)
CELL_KEYS = ("accuracy", "answered", "spikes", "spike_density", "activation_sparsity", "synaptic_operations",
             "steps", "first_out_step", "first_out_spikes_before", "first_correct_step", "first_correct_spikes_before",
             "first_out_ns", "first_correct_ns", "energy_total_pj", "time_ns", "dropped_link", "dropped_buffer",
             "samples")


# ---------------------------------------------------------------------------------------- the run


@dataclass
class ExperimentResult:
    run_dir: Path
    cells: list[dict]
    relative: list[dict]
    curves: list[dict]
    trained: list[dict]
    skipped: list[dict]
    seconds: float

    def summary_rows(self, engine: str) -> list[dict]:
        return [r for r in self.relative if r["engine"] == engine]


def _log_default(msg: str) -> None:
    from .progress import logger

    logger.info(msg)


def _load_or_generate(spec: DatasetSpec, d: Any, log: Callable[[str], None], progress: bool) -> Any:
    """``d.load()``; a missing synthesized dataset whose spec says ``generate`` is made first
    (with the spec's options as its config, into the folder it is loaded from)."""
    from .data import SYNTHESIZED, data_root, speech
    from .data.base import DatasetNotFoundError

    try:
        return d.load()
    except DatasetNotFoundError:
        if not (spec.generate and spec.name in SYNTHESIZED):
            raise
        folder = Path(spec.options.get("folder") or speech.default_folder(data_root(d.data_dir))).expanduser()
        if (Path(folder) / speech.MANIFEST).exists():
            raise  # made, but damaged: the error says how to remake it
        made_with = speech.config({k: v for k, v in spec.options.items() if k != "folder"})
        log(f"[{spec.key}] not generated yet: generating it into {folder} (a few minutes)")
        try:
            speech.generate(made_with, folder, show_progress=progress)
        except speech.GenerationError as e:
            raise DatasetNotFoundError(str(e)) from e
        return d.load()


def run_experiment(cfg: ExperimentConfig, *, run_dir: Optional[Path] = None, progress: bool = True,
                   plots: bool = True, log: Callable[[str], None] = _log_default, executor: Any = None,
                   _previous: Optional[dict] = None) -> ExperimentResult:
    """Train and evaluate everything ``cfg`` asks for in a new run folder (see the module docstring).

    The independent pieces (training each model, then evaluating each dataset, scheduler and
    ``F``) run on ``executor`` (an :class:`~asyncsnn.executors.Executor`; default: one after
    another in this process); the tables are the same whichever runs them. ``status.json`` says
    whether the study is running, interrupted, failed or finished, and ``results.json`` holds what
    finished after every piece (``"complete": false`` until the end), so a study that was stopped
    or killed, or had a piece fail, continues with :func:`resume_experiment`."""
    from .executors import Sequential

    t0 = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(cfg.base.out, "experiment")
    run_dir.mkdir(parents=True, exist_ok=True)
    if _previous is None:
        write_json(run_dir / "config.json", cfg.to_dict())
    executor = executor if executor is not None else Sequential()
    study = _Study(cfg, run_dir, _Previous(_previous), executor, progress, plots, log, t0)
    status = {"command": "experiment", "executor": executor.name}
    write_json(run_dir / "status.json", {**status, "state": "running"})
    try:
        study.run()
    except KeyboardInterrupt:
        result = study.save(complete=False)  # what finished is kept, marked as partial
        write_json(run_dir / "status.json", {**status, "state": "interrupted", **study.counts()})
        log(f"interrupted: {len(result.trained)} models trained and {len(result.cells)} cells kept in {run_dir}; "
            f"continue with: asyncsnn experiment --resume {run_dir}")
        raise
    finally:
        executor.close()
    if study.failed:
        study.save(complete=False)
        names = [e.name for e in study.failed]
        write_json(run_dir / "status.json", {**status, "state": "failed", "failed": names, "missing": study.missing(),
                                              **study.counts()})
        raise StudyError(run_dir, study.failed, study.missing())
    result = study.save(complete=True)
    write_json(run_dir / "status.json", {**status, "state": "finished", **study.counts()})
    return result


class StudyError(RuntimeError):
    """Pieces of a study failed: each is named (with its error); the cells they would have made
    are listed as missing; :func:`resume_experiment` runs them again."""

    def __init__(self, run_dir: Path, failed: list, missing: list[str]) -> None:
        lines = [f"{len(failed)} piece(s) of the study failed (results so far in {run_dir}; missing: "
                 f"{', '.join(missing) or 'none'}; rerun them with: asyncsnn experiment --resume {run_dir}):"]
        lines += [f"  {e}" for e in failed]
        super().__init__("\n".join(lines))
        self.run_dir, self.failed, self.missing = run_dir, failed, missing


def resume_experiment(run_dir: str | Path, *, progress: bool = True, plots: bool = True,
                      log: Callable[[str], None] = _log_default, executor: Any = None) -> ExperimentResult:
    """Continue an interrupted, killed or failed study in its run folder: models whose training
    finished are loaded from their ``network.npz``, an interrupted training resumes from its
    checkpoint, and the evaluation cells of every (dataset, scheduler, F) that finished are kept;
    the rest runs as it would have. The tables end as an uninterrupted run's."""
    import json

    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / "status.json").read_text())
        raw = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"invalid input: --resume: {run_dir} is not an experiment run folder ({e})") from None
    if not isinstance(status, dict) or status.get("command") != "experiment" or not isinstance(raw, dict):
        raise InputError(f"invalid input: --resume: {run_dir} is not an experiment run folder")
    if status.get("state") == "finished":
        raise InputError(f"invalid input: --resume: {run_dir} has finished already (its tables are complete)")
    cfg = load_experiment_config(run_dir / "config.json")  # (its overrides included)
    previous: dict = {}
    if (run_dir / "results.json").exists():
        previous = json.loads((run_dir / "results.json").read_text())
    log(f"resuming {run_dir}")
    return run_experiment(cfg, run_dir=run_dir, progress=progress, plots=plots, log=log, executor=executor,
                          _previous=previous)


class _Previous:
    """What an interrupted study finished: training rows by (dataset, model), and the cells,
    curves and relative rows of every (dataset, scheduler, F) whose relative rows were written
    (the last thing a group writes)."""

    def __init__(self, results: Optional[dict]) -> None:
        results = results or {}
        nan = lambda rows: [{k: (float("nan") if v is None else v) for k, v in r.items()}  # noqa: E731
                            for r in rows or []]
        self.trained = {(r["dataset"], r["model"]): r for r in nan(results.get("training"))}
        self.relative = nan(results.get("relative"))
        self.done = {(r["dataset"], r["scheduler"], str(r["F"])) for r in self.relative}
        self.cells = nan(results.get("cells"))  # (only the groups in done are taken)
        self.curves = nan(results.get("decide_early"))

    def group(self, key: tuple) -> dict:
        """The rows of a finished (dataset, scheduler, F)."""
        pick = lambda rows: [r for r in rows if (r["dataset"], r["scheduler"], str(r["F"])) == key]  # noqa: E731
        return {"cells": pick(self.cells), "curves": pick(self.curves), "relative": pick(self.relative)}


def _model_name(method: str, sched: Optional[str]) -> str:
    return method if sched is None else f"unlayered-{sched}"


def _train_task(tcfg: dict, model_dir: str, progress: bool) -> dict:
    """Train one model into ``model_dir`` (or continue its interrupted training); its training
    row. The trained network is ``model_dir/network.npz``."""
    from .train.loop import resume, train

    model_dir_p = Path(model_dir)
    cfg = Config.from_dict(tcfg)
    ts = time.perf_counter()
    if (model_dir_p / "checkpoint.pt").exists() and not _finished(model_dir_p):
        trainer = resume(model_dir_p, progress=progress, log=lambda s: None)  # interrupted in training
    else:
        trainer = train(cfg, run_dir=model_dir_p, progress=progress, log=lambda s: None)
    last = trainer.history[-1] if trainer.history else {}
    return {"seconds": time.perf_counter() - ts, "epochs": cfg.train.epochs,
            "train_accuracy": last.get("train_accuracy", float("nan")),
            "test_accuracy_training_schedule": last.get("test_accuracy", float("nan")),
            "test_layered_accuracy": last.get("test_layered_accuracy", float("nan"))}


def _evaluate_task(ds: str, sched: str, F: Any, nets: dict, x: np.ndarray, y: np.ndarray, chip: Any, seed: int,
                   modes: list, device: str, n_classes: int, curve_points: int, keep: bool) -> dict:
    """Both models of one (dataset, scheduler, F), in PyTorch and on the chip: its cells, decide-
    early curves and relative rows (and, with ``keep``, the runs themselves, for the plots)."""
    from .train.export import run_side_by_side

    fl = f_label(F)
    net0 = nets["layered"]
    out_start = net0.population_starts[net0.output_index]
    tick_ns = float(chip.config.get("tick_ns", 1.0))
    cells, pair, pair_cells = [], {}, {}
    for model in MODELS:
        net = nets[model]
        # the cell's scheduler and F; the rest as the model was trained for
        opts = net.run_options.replace(scheduler=sched, F=F, seed=seed, trace=True)
        sbs = run_side_by_side(net, x, y, opts, chip=chip, modes=modes, device=device)
        agree = sbs.steps_agree()
        for row in sbs.rows:
            cell = {"dataset": ds, "scheduler": sched, "model": model, "F": fl, "engine": row["engine"],
                    **{k: row.get(k, float("nan")) for k in CELL_KEYS}, "steps_agree": agree}
            cells.append(cell)
            pair_cells[(model, row["engine"])] = cell
        pair[model] = sbs
    relative = [{"dataset": ds, "scheduler": sched, "F": fl, "engine": engine,
                 **relative_row(pair_cells[("layered", engine)], pair_cells[("unlayered", engine)])}
                for engine in ["pytorch"] + [f"emulator-{mode}" for mode in modes]]
    curves = _curves(ds, sched, fl, pair, y, out_start, n_classes, tick_ns, curve_points)
    return {"cells": cells, "curves": curves, "relative": relative, "pair": pair if keep else None}


@dataclass
class _Dataset:
    spec: Any
    dcfg: Config
    x: np.ndarray
    y: np.ndarray
    n_classes: int
    dir: Path


class _Study:
    """The study as tasks: every model's training, then every (dataset, scheduler, F)'s
    evaluation, on an executor; results kept by key and written in the config's order."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, previous: _Previous, executor: Any, progress: bool,
                 plots: bool, log: Callable[[str], None], t0: float) -> None:
        self.cfg, self.run_dir, self.previous, self.executor = cfg, run_dir, previous, executor
        self.progress, self.plots, self.log, self.t0 = progress, plots, log, t0
        self.datasets: list[_Dataset] = []
        self.skipped: list[dict] = []
        self.trained: dict[tuple, dict] = {}   # (dataset, model) -> training row
        self.groups: dict[tuple, dict] = {}    # (dataset, scheduler, F label) -> cells, curves, relative
        self.failed: list = []

    # ------------------------------------------------------------------ the order of the tables
    def _group_keys(self, ds: _Dataset) -> list[tuple]:
        e = self.cfg.experiment
        return [(ds.spec.key, sched, str(f_label(F))) for sched in e.schedulers for F in e.F]

    def _models(self) -> list[tuple[str, Optional[str]]]:
        return [("layered", None)] + [("unlayered", s) for s in self.cfg.experiment.schedulers]

    def result(self) -> ExperimentResult:
        cells, relative, curves, trained = [], [], [], []
        for ds in self.datasets:
            for method, sched in self._models():
                row = self.trained.get((ds.spec.key, _model_name(method, sched)))
                if row is not None:
                    trained.append(row)
            for key in self._group_keys(ds):
                g = self.groups.get(key)
                if g is not None:
                    cells += g["cells"]
                    relative += g["relative"]
                    curves += g["curves"]
        return ExperimentResult(self.run_dir, cells, relative, curves, trained, self.skipped,
                                time.perf_counter() - self.t0)

    def save(self, *, complete: bool) -> ExperimentResult:
        result = self.result()
        _write(result, self.cfg, complete=complete)
        return result

    def counts(self) -> dict:
        return {"models_trained": len(self.trained), "groups_done": len(self.groups),
                "cells_done": sum(len(g["cells"]) for g in self.groups.values())}

    def missing(self) -> list[str]:
        """The (dataset, scheduler, F) whose cells are not there."""
        return [f"{k[0]}/{k[1]}/F={k[2]}" for ds in self.datasets for k in self._group_keys(ds)
                if k not in self.groups]

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        from .chip import Chip
        from .executors import Task
        from .network import Network
        from .progress import progress as progress_bar
        from .train.loop import resolve_device

        self._load()
        local = self.executor.name == "sequential"
        # --- training: one layered model, one unlayered model per scheduler, for every dataset
        tasks = []

        for ds in self.datasets:
            for method, sched in self._models():
                name = _model_name(method, sched)
                model_dir = ds.dir / name
                done = self.previous.trained.get((ds.spec.key, name))
                if done is not None and _finished(model_dir):
                    self.trained[(ds.spec.key, name)] = done
                    continue
                over = {"train.method": method, "out": str(ds.dir)}
                if sched is not None:
                    over["train.scheduler"] = sched
                tcfg = ds.dcfg.with_overrides(over)
                cuda = resolve_device(tcfg.train.device).type == "cuda"  # (Ray hides GPUs from tasks without one)
                tasks.append(Task(f"train {ds.spec.key}/{name}", _train_task,
                                  (tcfg.to_dict(), str(model_dir), self.progress and local),
                                  key=(ds.spec.key, name), gpus=1 if cuda else 0))
        if tasks:
            self.log(f"training {len(tasks)} models on {self.executor.describe()}")
        bar = progress_bar(total=len(tasks), desc="train", enabled=self.progress and not local and bool(tasks))
        for task, outcome in self.executor.run(tasks):
            bar.update(1)
            if isinstance(outcome, Exception):
                self.failed.append(outcome)
                self.log(str(outcome))
                continue
            self.trained[task.key] = {"dataset": task.key[0], "model": task.key[1], **outcome}
            self.log(f"[{task.key[0]}] trained {task.key[1]} ({outcome['seconds']:.0f} s)")
            self.save(complete=False)
        bar.close()

        # --- evaluation: every scheduler x F of every dataset whose models trained
        e = self.cfg.experiment
        tasks, chips = [], {}
        for ds in self.datasets:
            names = [_model_name(m, s) for m, s in self._models()]
            if any((ds.spec.key, n) not in self.trained for n in names):
                continue  # a model failed: its cells are missing
            nets = {n: Network.load(ds.dir / n / "network.npz") for n in names}  # what chip_network() saved
            chip = Chip.fitting(e.chip, nets["layered"], **dict(e.chip_set))
            chips[ds.spec.key] = (chip, nets)
            seed = ds.dcfg.train.seed if e.eval_seed is None else e.eval_seed
            device = str(resolve_device(ds.dcfg.train.device))  # the PyTorch side runs where training ran
            for sched in e.schedulers:
                for F in e.F:
                    key = (ds.spec.key, sched, str(f_label(F)))
                    first = sched == e.schedulers[0] and F == e.F[0]
                    if key in self.previous.done:
                        self.groups[key] = self.previous.group(key)
                        if not (first and self.plots):
                            continue
                    pair_nets = {"layered": nets["layered"], "unlayered": nets[f"unlayered-{sched}"]}
                    tasks.append(Task(f"evaluate {key[0]}/{sched}/F={key[2]}", _evaluate_task,
                                      (ds.spec.key, sched, F, pair_nets, ds.x, ds.y, chip, seed, list(e.modes),
                                       device, ds.n_classes, e.curve_points, first and self.plots),
                                      key=key, gpus=1 if device.startswith("cuda") else 0))
        bar = progress_bar(total=len(tasks) * len(MODELS), desc="evaluate", enabled=self.progress and bool(tasks))
        keep: dict[str, dict] = {}
        for task, outcome in self.executor.run(tasks):
            bar.update(len(MODELS))
            if isinstance(outcome, Exception):
                self.failed.append(outcome)
                self.log(str(outcome))
                continue
            if outcome["pair"] is not None:
                keep[task.key[0]] = outcome["pair"]
            if task.key not in self.groups:  # (a finished first group runs again for its plots only)
                self.groups[task.key] = {k: outcome[k] for k in ("cells", "curves", "relative")}
                self.save(complete=False)
        bar.close()
        if self.plots:
            result = self.result()
            for ds in self.datasets:
                if ds.spec.key in keep:
                    chip, nets = chips[ds.spec.key]
                    _plots(self.run_dir, ds.spec.key, e, result.cells, result.curves, keep[ds.spec.key], nets, chip,
                           ds.y)

    def _load(self) -> None:
        """Every dataset, loaded (or generated) here; an optional one that is missing is skipped."""
        from . import data
        from .data.base import DatasetNotFoundError

        e = self.cfg.experiment
        for spec in self.cfg.dataset_specs():
            dcfg = self.cfg.dataset_config(spec)
            d = dcfg.data
            try:
                splits = _load_or_generate(spec, d, self.log, self.progress)
            except (DatasetNotFoundError, ImportError) as err:
                if not spec.optional:
                    raise
                self.skipped.append({"dataset": spec.key, "reason": str(err)})
                self.log(f"[{spec.key}] skipped: {str(err).splitlines()[0]}")
                continue
            x, y, _ = data.to_arrays(splits.test)
            limit = e.test_limit if e.test_limit is not None else d.test_limit
            if limit is not None:
                x, y = x[:limit], y[:limit]
            ds_dir = self.run_dir / spec.key
            ds_dir.mkdir(exist_ok=True)
            write_json(ds_dir / "config.json", dcfg.to_dict())
            self.datasets.append(_Dataset(spec, dcfg, x, y, int(splits.info.n_classes), ds_dir))


def _finished(model_dir: Path) -> bool:
    """Whether the training run in ``model_dir`` finished (its ``network.npz`` is the trained one)."""
    import json

    try:
        return (json.loads((model_dir / "status.json").read_text()).get("state") == "finished"
                and (model_dir / "network.npz").exists())
    except (OSError, ValueError, AttributeError):
        return False


def _curves(ds: str, sched: str, fl, pair: dict, y: np.ndarray, out_start: int, n_classes: int,
            tick_ns: float, points: int) -> list[dict]:
    """Decide-early curves of both models on a shared grid per engine and axis: spikes
    integrated, and time (global steps in ``steps`` mode, ns in ``events`` mode)."""
    rows: list[dict] = []
    for mode in pair["layered"].runs:
        runs = {m: pair[m].runs[mode] for m in MODELS}
        for axis_name, axis in (("spikes", "spikes"), ("steps" if mode == "steps" else "ns", "time")):
            if axis == "spikes":
                hi = max(_max_per_sample(runs[m].trace, len(y)) for m in MODELS)
            else:
                hi = max((float(runs[m].trace[:, 3].max()) if len(runs[m].trace) else 0.0) for m in MODELS)
            grid = _grid(hi, points)
            xs = grid * tick_ns if axis_name == "ns" else grid
            for m in MODELS:
                acc = decide_early(runs[m].trace, y, out_start, n_classes, grid, axis)
                rows.extend({"dataset": ds, "scheduler": sched, "F": fl, "engine": f"emulator-{mode}", "model": m,
                             "axis": axis_name, "x": float(xv), "accuracy": float(a)} for xv, a in zip(xs, acc))
    return rows


def _max_per_sample(trace: np.ndarray, n: int) -> int:
    if len(trace) == 0:
        return 0
    return int(np.bincount(trace[:, 0].astype(np.int64), minlength=n).max())


# ---------------------------------------------------------------------------------------- outputs

SUMMARY_COLUMNS = [
    ("dataset", "dataset", "{}"), ("scheduler", "scheduler", "{}"), ("F", "F", "{}"),
    ("accuracy_layered", "acc layered", "{:.3f}"), ("accuracy_unlayered", "acc unlayered", "{:.3f}"),
    ("accuracy_gain_points", "gain (pts)", "{:+.1f}"),
    ("spikes_layered", "spikes layered", "{:.1f}"), ("spikes_unlayered", "spikes unlayered", "{:.1f}"),
    ("spike_reduction", "spike reduction", "{:.0%}"),
    ("first_correct_step_layered", "1st-correct step L", "{:.1f}"),
    ("first_correct_step_unlayered", "1st-correct step U", "{:.1f}"),
    ("speedup_first_correct_step", "speed-up (steps)", "{:.2f}x"),
]
EVENTS_COLUMNS = [
    ("dataset", "dataset", "{}"), ("scheduler", "scheduler", "{}"), ("F", "F", "{}"),
    ("accuracy_layered", "acc layered", "{:.3f}"), ("accuracy_unlayered", "acc unlayered", "{:.3f}"),
    ("accuracy_gain_points", "gain (pts)", "{:+.1f}"),
    ("first_correct_ns_layered", "1st-correct ns L", "{:.0f}"),
    ("first_correct_ns_unlayered", "1st-correct ns U", "{:.0f}"),
    ("speedup_first_correct_ns", "speed-up (ns)", "{:.2f}x"),
    ("energy_reduction", "energy reduction", "{:.0%}"),
]


def steps_engine(modes) -> str:
    """The engine of the forward-step tables: the chip's ``steps`` mode when it ran (it equals the
    PyTorch simulator), else the simulator."""
    return "emulator-steps" if "steps" in modes else "pytorch"


def summary_markdown(result: ExperimentResult, modes) -> str:
    parts = ["# asyncsnn experiment: layered versus unlayered training, run asynchronously", ""]
    parts += [f"## Chip, `steps` mode (forward steps; equal to the PyTorch simulator: "
              f"{_agreement(result.cells)})", "", markdown_table(result.summary_rows(steps_engine(modes)),
                                                                 SUMMARY_COLUMNS), ""]
    if "events" in modes:
        parts += ["## Chip, `events` mode (network-on-chip latency, nanoseconds, energy)", "",
                  markdown_table(result.summary_rows("emulator-events"), EVENTS_COLUMNS), ""]
    parts += ["## Training", "", markdown_table(result.trained, [
        ("dataset", "dataset", "{}"), ("model", "model", "{}"), ("epochs", "epochs", "{}"),
        ("train_accuracy", "train acc", "{:.3f}"),
        ("test_accuracy_training_schedule", "test acc (async, training F)", "{:.3f}"),
        ("test_layered_accuracy", "test acc (layer-synchronous)", "{:.3f}"), ("seconds", "s", "{:.0f}")]), ""]
    for s in result.skipped:
        parts.append(f"- skipped {s['dataset']}: {s['reason'].splitlines()[0]}")
    parts += ["", f"{result.seconds:.0f} s in all. Acc: accuracy on the test set run asynchronously with the "
              "scheduler and F of the row. Spike reduction = 1 - unlayered/layered spikes per sample; speed-up = "
              "layered/unlayered latency to the first correct output spike (mean over samples that have one).", ""]
    return "\n".join(parts)


def _agreement(cells: list[dict]) -> str:
    flags = [c["steps_agree"] for c in cells if c.get("steps_agree") is not None]
    if not flags:
        return "not checked"
    return "exact in every cell" if all(flags) else f"DIFFERS in {sum(not f for f in flags)} of {len(flags)} rows"


def _write(result: ExperimentResult, cfg: ExperimentConfig, *, complete: bool = True) -> None:
    d = result.run_dir
    write_csv(d / "cells.csv", result.cells)
    write_csv(d / "relative.csv", result.relative)
    write_csv(d / "decide_early.csv", result.curves)
    write_csv(d / "training.csv", result.trained)
    write_json(d / "results.json", _nan_to_none({
        "config": cfg.to_dict(), "cells": result.cells, "relative": result.relative, "decide_early": result.curves,
        "training": result.trained, "skipped": result.skipped, "seconds": result.seconds, "complete": complete}))
    (d / "summary.md").write_text(summary_markdown(result, cfg.experiment.modes))


def _plots(run_dir: Path, ds: str, e: ExperimentSettings, cells, curves, keep, nets, chip, y) -> None:
    from .plots import _plt, core_heatmap, spike_raster

    plt = _plt()
    colors = {"layered": "tab:orange", "unlayered": "tab:blue"}
    f0 = f_label(e.F[0])
    f_last = f_label(e.F[-1])
    # decide-early / accuracy versus latency: one column per scheduler, one row per axis
    panels = [("emulator-steps", "spikes", "spikes integrated before deciding"),
              ("emulator-steps", "steps", "forward steps (global)"),
              ("emulator-events", "ns", "time on chip (ns)")]
    panels = [p for p in panels if any(c["engine"] == p[0] and c["axis"] == p[1] and c["dataset"] == ds for c in curves)]
    if panels:
        fig, axes = plt.subplots(len(panels), len(e.schedulers), figsize=(4 * len(e.schedulers), 3 * len(panels)),
                                 squeeze=False)
        for j, sched in enumerate(e.schedulers):
            for i, (engine, axis, label) in enumerate(panels):
                ax = axes[i][j]
                for m in MODELS:
                    for fl, style in ((f0, "-"), (f_last, ":")) if f0 != f_last else ((f0, "-"),):
                        pts = [(c["x"], c["accuracy"]) for c in curves if (c["dataset"], c["scheduler"], c["F"], c["engine"],
                                                                          c["model"], c["axis"]) == (ds, sched, fl, engine, m, axis)]
                        if pts:
                            xs, ys = zip(*pts)
                            ax.plot(xs, ys, style, color=colors[m], label=f"{m}, F={fl}")
                ax.set_xlabel(label)
                ax.set_ylim(0, 1.02)
                if j == 0:
                    ax.set_ylabel("accuracy")
                if i == 0:
                    ax.set_title(f"{ds}: {sched}")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(run_dir / f"decide_early-{ds}.png", dpi=110)
        plt.close(fig)
    # spike density bars: scheduler x F groups, layered next to unlayered (steps engine)
    engine = steps_engine(e.modes)
    density = {(c["scheduler"], c["model"], c["F"]): c["spike_density"] for c in cells
               if c["dataset"] == ds and c["engine"] == engine}
    groups = [(s, f_label(f)) for s in e.schedulers for f in e.F]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(groups) + 2), 3.5))
    width = 0.4
    for k, m in enumerate(MODELS):
        vals = [density[(s, m, f)] for s, f in groups]
        ax.bar(np.arange(len(groups)) + (k - 0.5) * width, vals, width, color=colors[m], label=m)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{s}\nF={f}" for s, f in groups], fontsize=7)
    ax.set_ylabel("spikes per neuron and frame")
    ax.set_title(f"{ds}: spike density run asynchronously")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / f"spike_density-{ds}.png", dpi=110)
    plt.close(fig)
    # per-core activity on the mesh and rasters, at the first scheduler and the first F
    sched = e.schedulers[0]
    cfgc = chip.config
    net0 = nets["layered"]
    starts = net0.population_starts[1:]
    out0 = net0.population_starts[net0.output_index]
    used = chip.place(net0).usage()["neurons"] > 0  # (every model has the layered one's placement)
    for m in MODELS:
        sbs = keep.get(m)
        if sbs is None:
            continue
        mode_for_cores = "events" if "events" in sbs.runs else next(iter(sbs.runs), None)
        if mode_for_cores is not None:
            run = sbs.runs[mode_for_cores]
            core_heatmap(run.core_spikes.mean(axis=0), cfgc["mesh_width"], cfgc["mesh_height"],
                         run_dir / f"cores-{ds}-{m}.png",
                         title=f"{ds}, {m}: spikes per core and sample ({sched}, F={f0}, {mode_for_cores})",
                         label="spikes / sample", used=used)
        sample = min(e.raster_sample, max(len(y) - 1, 0))
        for mode, run in sbs.runs.items():
            events = mode == "events"
            spike_raster(run.trace, sample, run_dir / f"raster-{ds}-{m}-{mode}.png", boundaries=starts,
                         title=f"{ds}, {m} model, sample {sample} (label {int(y[sample]) if len(y) else '-'}), "
                               f"{mode} mode, {sched}, F={f0}",
                         output=(out0, out0 + net0.n_outputs), n_neurons=net0.n_neurons,
                         tick_ns=float(cfgc.get("tick_ns", 1.0)) if events else None)
