"""Training configuration: a TOML or JSON file plus ``section.key=value`` overrides.

Every field has a default, so an empty file is a valid configuration (the embedded
``manifold`` dataset, a 2-hidden-layer network, unlayered backprop with the ``momentum``
scheduler). Unknown keys and out-of-range values raise :class:`~asyncsnn.errors.ConfigError`
naming the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError, InputError
from ..options import RUNAWAY_STEPS, RunOptions
from ..sim.functional import GRADIENTS, SURROGATES
from ..sim.simulator import ENGINES
from .losses import READOUTS

try:  # Python >= 3.11
    import tomllib
except ImportError:  # pragma: no cover - Python 3.9 / 3.10
    import tomli as tomllib  # type: ignore[no-redef]

METHODS = ("unlayered", "layered", "spsn")


# The options of the default dataset when a config gives none. Options belong to their dataset:
# another dataset without options of its own gets its loader's defaults, never these.
DEFAULT_DATASET_OPTIONS: dict[str, dict] = {"manifold": {"n_classes": 4, "train_per_class": 64, "test_per_class": 32}}


@dataclass
class DataConfig:
    name: str = "manifold"
    dt: int = 4000                  # frame length, microseconds
    n_frames: Optional[int] = 25    # frames per sample (None: as long as the recording)
    options: Optional[dict] = None  # the dataset's options (None: its defaults, see DEFAULT_DATASET_OPTIONS)
    data_dir: Optional[str] = None
    train_limit: Optional[int] = None  # use only the first N training samples
    test_limit: Optional[int] = None

    def dataset_options(self) -> dict:
        """The options passed to the dataset ``name``."""
        return dict(DEFAULT_DATASET_OPTIONS.get(self.name, {}) if self.options is None else self.options)

    def load(self, **changes):
        """The train and test splits of this dataset (``asyncsnn.data.load``)."""
        from .. import data

        kw = dict(dt=self.dt, n_frames=self.n_frames, data_dir=self.data_dir, **self.dataset_options())
        kw.update(changes)
        return data.load(self.name, **kw)


@dataclass
class ModelConfig:
    hidden: list = field(default_factory=lambda: [64, 64])
    theta: float = 1.0
    beta: float = 0.9
    reset: str = "zero"
    refractory: bool = False
    recurrent: bool = False         # add a recurrent projection to each hidden population
    gain: float = 2.0               # initial weights ~ N(gain / fan_in, (gain / sqrt(fan_in))^2)
    core_neurons: int = 0           # neurons per core, consecutive blocks (0: all on one core)
    surrogate: str = "fast_sigmoid"
    slope: float = 10.0
    network: Optional[str] = None   # start from this network file instead (sizes then ignored)
    alpha: float = 0.9              # spsn: synaptic current decay (beta is the membrane decay)
    firing: str = "sb"              # spsn: sb (straight-through Bernoulli) or gs (Gumbel-softmax)
    eval_firing: str = "deterministic"  # spsn evaluation: deterministic, sb, gs or hash
    tau_gs: float = 1.0             # spsn: Gumbel-softmax temperature
    init_from: Optional[str] = None  # an SPSN run folder: start from its network converted to LIF


# The run options (asyncsnn.RunOptions) a training config sets; the rest keep their defaults,
# and the seed and sample offset are the trainer's (they change with the epoch and the batch).
RUN_OPTIONS = ("scheduler", "F", "input_mode", "max_steps", "runaway_steps")


@dataclass
class OptimConfig:
    method: str = "unlayered"       # or "layered": BPTT over frames, layer-synchronous
    # run options (see asyncsnn.RunOptions): the schedule the model trains for
    scheduler: str = "momentum"
    F: Optional[int] = 8            # release limit per core and step (None or "inf": infinity)
    input_mode: str = "all_at_once"
    max_steps: Optional[int] = None
    runaway_steps: int = RUNAWAY_STEPS
    gradient: str = "full"          # or "truncated"
    engine: str = "auto"            # auto, manual (hand-written backward) or autograd
    cuda_graphs: bool = False       # replay chunks of steps as CUDA graphs (on CUDA)
    compile: bool = False           # torch.compile the single forward and backward steps
    readout: str = "count"
    tau: float = 10.0               # first_spike readout: steps per logit unit
    epochs: int = 8
    batch_size: int = 32
    lr: float = 0.005
    weight_decay: float = 0.0
    input_dropout: float = 0.0
    spike_penalty: float = 0.0
    rate_penalty: float = 0.0       # spsn: weight of the rate regulariser
    rate_target: float = 0.1        # spsn: firing rate per step above which it penalises
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda, cuda:1, ...

    def run_options(self, **changes: Any) -> RunOptions:
        """The run options of this config (its :data:`RUN_OPTIONS`), with ``changes``."""
        return RunOptions(**{k: getattr(self, k) for k in RUN_OPTIONS}).replace(**changes)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    out: str = "runs"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = dict(d)
        sections = {"data": DataConfig, "model": ModelConfig, "train": OptimConfig}
        kw: dict[str, Any] = {}
        for key, value in d.items():
            if key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(f"invalid config: {key}: expected a table of settings")
                allowed = {f.name for f in fields(sections[key])}
                unknown = set(value) - allowed
                if unknown:
                    raise ConfigError(f"invalid config: {key}.{sorted(unknown)[0]}: unknown setting; "
                                      f"allowed: {', '.join(sorted(allowed))}")
                kw[key] = sections[key](**value)
            elif key == "out":
                kw[key] = str(value)
            else:
                raise ConfigError(f"invalid config: {key}: unknown section; allowed: data, model, train, out")
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> "Config":
        def check(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"invalid config: {name}: {msg}")

        d, m, t = self.data, self.model, self.train
        check(d.dt >= 1, "data.dt", f"{d.dt} is outside 1.. (microseconds)")
        check(d.n_frames is None or d.n_frames >= 1, "data.n_frames", f"{d.n_frames} is outside 1..")
        check(d.options is None or isinstance(d.options, dict), "data.options", "expected a table")
        check(isinstance(m.hidden, list) and all(isinstance(h, int) and h >= 1 for h in m.hidden),
              "model.hidden", f"{m.hidden!r}: expected a list of positive sizes")
        check(m.theta > 0, "model.theta", f"{m.theta} must be > 0")
        check(0 <= m.beta <= 1, "model.beta", f"{m.beta} is outside [0, 1]")
        check(m.reset in ("zero", "subtract"), "model.reset", f"{m.reset!r}; allowed: zero, subtract")
        check(m.core_neurons >= 0, "model.core_neurons", f"{m.core_neurons} is outside 0..")
        check(m.surrogate in SURROGATES, "model.surrogate", f"{m.surrogate!r}; allowed: {', '.join(SURROGATES)}")
        check(m.slope > 0, "model.slope", f"{m.slope} must be > 0")
        check(t.method in METHODS, "train.method", f"{t.method!r}; allowed: {', '.join(METHODS)}")
        try:  # the run options are checked (and F = "inf" parsed) where they are defined
            t.F = t.run_options().F
        except InputError as e:
            raise ConfigError(f"invalid config: train.{e.field}: {e.detail}") from None  # type: ignore[attr-defined]
        check(t.gradient in GRADIENTS, "train.gradient", f"{t.gradient!r}; allowed: {', '.join(GRADIENTS)}")
        check(t.engine in ENGINES, "train.engine", f"{t.engine!r}; allowed: {', '.join(ENGINES)}")
        check(isinstance(t.cuda_graphs, bool), "train.cuda_graphs", f"{t.cuda_graphs!r}; allowed: true, false")
        check(isinstance(t.compile, bool), "train.compile", f"{t.compile!r}; allowed: true, false")
        check(t.readout in READOUTS, "train.readout", f"{t.readout!r}; allowed: {', '.join(READOUTS)}")
        check(t.tau > 0, "train.tau", f"{t.tau} must be > 0")
        check(t.epochs >= 0, "train.epochs", f"{t.epochs} is outside 0..")
        check(t.batch_size >= 1, "train.batch_size", f"{t.batch_size} is outside 1..")
        check(t.lr > 0, "train.lr", f"{t.lr} must be > 0")
        check(t.weight_decay >= 0, "train.weight_decay", f"{t.weight_decay} must be >= 0")
        check(0 <= t.input_dropout < 1, "train.input_dropout", f"{t.input_dropout} is outside [0, 1)")
        check(t.spike_penalty >= 0, "train.spike_penalty", f"{t.spike_penalty} must be >= 0")
        check(t.rate_penalty >= 0, "train.rate_penalty", f"{t.rate_penalty} must be >= 0")
        check(0 <= t.rate_target <= 1, "train.rate_target", f"{t.rate_target} is outside [0, 1]")
        check(0 <= m.alpha < 1, "model.alpha", f"{m.alpha} is outside [0, 1)")
        check(m.firing in ("sb", "gs"), "model.firing", f"{m.firing!r}; allowed: sb, gs")
        check(m.eval_firing in ("deterministic", "sb", "gs", "hash"), "model.eval_firing",
              f"{m.eval_firing!r}; allowed: deterministic, sb, gs, hash")
        check(m.tau_gs > 0, "model.tau_gs", f"{m.tau_gs} must be > 0")
        if m.init_from:
            check(t.method != "spsn" and not m.network, "model.init_from",
                  "fine-tunes an SPSN run as an LIF network: use it with method unlayered or layered, "
                  "without model.network")
        if t.method == "spsn":
            check(m.beta < 1, "model.beta", f"{m.beta}: spsn needs a membrane decay in [0, 1)")
            check(not m.recurrent and not m.network, "model.recurrent",
                  "spsn trains feed-forward networks of its own (no recurrent projection, no network file)")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """A copy with ``{"section.key": value}`` applied (``train.F`` accepts ``"inf"``)."""
        d = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section == "out" and not name:
                d["out"] = str(value)
                continue
            if section not in ("data", "model", "train") or not name:
                raise ConfigError(f"invalid config: {key}: expected SECTION.KEY with SECTION in data, model, train")
            if name not in d[section]:
                raise ConfigError(f"invalid config: {key}: unknown setting; allowed: {', '.join(sorted(d[section]))}")
            d[section][name] = value
        return Config.from_dict(d)


def read_config_file(path: str | Path) -> dict:
    """The contents of a ``.toml`` or ``.json`` config file (a clear error if missing or malformed)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"invalid config: {p}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config: {p}: expected a table of sections")
    return raw


def load_config(path: Optional[str | Path] = None, overrides: Optional[dict[str, Any]] = None) -> Config:
    """Read a ``.toml`` or ``.json`` file (or the defaults) and apply overrides."""
    cfg = Config() if path is None else Config.from_dict(read_config_file(path))
    return cfg.with_overrides(overrides or {}) if overrides else cfg.validate()


__all__ = ["Config", "DataConfig", "ModelConfig", "OptimConfig", "load_config", "read_config_file", "METHODS",
           "RUN_OPTIONS"]
