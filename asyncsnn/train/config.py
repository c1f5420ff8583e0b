"""Training configuration: a TOML or JSON file plus ``section.key=value`` overrides.

Every field has a default, so an empty file is a valid configuration (the embedded
``manifold`` dataset, a 2-hidden-layer network, unlayered backprop with the ``momentum``
scheduler). The sections are typed (pydantic models, :mod:`asyncsnn.settings`): unknown keys,
values of the wrong type and out-of-range values raise :class:`~asyncsnn.errors.ConfigError`
naming the key; ``asyncsnn train --print-config`` lists every key with its default and meaning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, field_validator

from .. import settings
from ..errors import ConfigError
from ..options import INPUT_MODES, RUNAWAY_STEPS, SCHEDULERS, RunOptions
from ..settings import Section
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


class DataConfig(Section):
    """``[data]``: the dataset and how it is cut into frames."""

    name: str = Field("manifold", description="manifold, digits (generated), nmnist, shd, dvsgesture (recorded)")
    dt: int = Field(4000, ge=1, description="frame length in microseconds")
    n_frames: Optional[int] = Field(25, ge=1, description="frames per sample (null: as long as the recording)")
    options: Optional[dict[str, Any]] = Field(None, description="the dataset's options (null: its defaults)")
    data_dir: Optional[str] = Field(None, description="data root (null: $ASYNCSNN_DATA_DIR or ./datasets)")
    train_limit: Optional[int] = Field(None, ge=1, description="use only the first N training samples")
    test_limit: Optional[int] = Field(None, ge=1, description="use only the first N test samples")

    def dataset_options(self) -> dict:
        """The options passed to the dataset ``name``."""
        return dict(DEFAULT_DATASET_OPTIONS.get(self.name, {}) if self.options is None else self.options)

    def load(self, **changes):
        """The train and test splits of this dataset (``asyncsnn.data.load``)."""
        from .. import data

        kw = dict(dt=self.dt, n_frames=self.n_frames, data_dir=self.data_dir, **self.dataset_options())
        kw.update(changes)
        return data.load(self.name, **kw)


class ModelConfig(Section):
    """``[model]``: the network trained."""

    hidden: list[Annotated[int, Field(ge=1)]] = Field([64, 64], description="sizes of the hidden populations")
    theta: float = Field(1.0, gt=0, description="firing threshold")
    beta: float = Field(0.9, ge=0, le=1, description="membrane leak factor per frame")
    reset: Literal["zero", "subtract"] = Field("zero", description="reset after a spike")
    refractory: bool = Field(False, description="a neuron fires at most once per frame")
    recurrent: bool = Field(False, description="a recurrent projection on each hidden population")
    gain: float = Field(2.0, description="initial weights ~ N(gain / fan_in, (gain / sqrt(fan_in))^2)")
    core_neurons: int = Field(0, ge=0, description="neurons per core, consecutive blocks (0: all on one core)")
    surrogate: Literal[SURROGATES] = Field("fast_sigmoid", description="surrogate gradient of a spike")
    slope: float = Field(10.0, gt=0, description="steepness of the surrogate")
    network: Optional[str] = Field(None, description="start from this network file, .npz or NIR .nir (sizes then ignored)")
    alpha: float = Field(0.9, ge=0, lt=1, description="spsn: synaptic current decay (beta: membrane decay)")
    firing: Literal["sb", "gs"] = Field("sb", description="spsn: straight-through Bernoulli or Gumbel-softmax")
    eval_firing: Literal["deterministic", "sb", "gs", "hash"] = Field("deterministic",
                                                                      description="spsn: firing when evaluated")
    tau_gs: float = Field(1.0, gt=0, description="spsn: Gumbel-softmax temperature")
    init_from: Optional[str] = Field(None, description="an SPSN run folder (start from its network as LIF) or a NIR .nir file (frames of data.dt)")


# The run options (asyncsnn.RunOptions) a training config sets; the rest keep their defaults,
# and the seed and sample offset are the trainer's (they change with the epoch and the batch).
RUN_OPTIONS = ("scheduler", "F", "input_mode", "max_steps", "runaway_steps")


class OptimConfig(Section):
    """``[train]``: the method, the schedule it trains for, and the optimiser."""

    method: Literal[METHODS] = Field("unlayered", description="unlayered (backprop through the schedule), "
                                                              "layered (BPTT, layer-synchronous) or spsn")
    scheduler: Literal[SCHEDULERS] = Field("momentum", description="run option: the cores' release order")
    F: Optional[int] = Field(8, description="run option: releases per core and step (\"inf\": no limit)")
    input_mode: Literal[INPUT_MODES] = Field("all_at_once", description="run option: how input events enter")
    max_steps: Optional[int] = Field(None, description="run option: cap on the forward steps of a frame")
    runaway_steps: int = Field(RUNAWAY_STEPS, description="run option: steps after which a frame is a runaway")
    gradient: Literal[GRADIENTS] = Field("full", description="full, or truncated to the triggering current")
    engine: Literal[ENGINES] = Field(
        "auto", description="auto, native (the run and its backward in Rust, CPU), manual (hand-written backward in "
        "PyTorch) or autograd")
    cuda_graphs: bool = Field(False, strict=True, description="replay chunks of steps as CUDA graphs (CUDA)")
    compile: bool = Field(False, strict=True, description="torch.compile the single forward and backward steps")
    readout: Literal[READOUTS] = Field("count", description="count, first_spike or membrane")
    tau: float = Field(10.0, gt=0, description="first_spike readout: steps per logit unit")
    epochs: int = Field(8, ge=0, description="passes over the training set")
    batch_size: int = Field(32, ge=1, description="samples per batch")
    lr: float = Field(0.005, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")
    input_dropout: float = Field(0.0, ge=0, lt=1, description="chance of dropping each input event")
    spike_penalty: float = Field(0.0, ge=0, description="weight of the spike density in the loss")
    rate_penalty: float = Field(0.0, ge=0, description="spsn: weight of the rate regulariser")
    rate_target: float = Field(0.1, ge=0, le=1, description="spsn: firing rate above which it penalises")
    seed: int = Field(0, ge=0, description="seed of everything (weights, batches, dropout, schedule)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")

    @field_validator(*RUN_OPTIONS, mode="before")
    @classmethod
    def _run_option(cls, value: Any, info) -> Any:
        # checked (and F = "inf" parsed) once, where the run options are defined
        return settings.run_option(info.field_name, value)

    def run_options(self, **changes: Any) -> RunOptions:
        """The run options of this config (its :data:`RUN_OPTIONS`), with ``changes``."""
        return RunOptions(**{k: getattr(self, k) for k in RUN_OPTIONS}).replace(**changes)


class Config(Section):
    """A training configuration: ``[data]``, ``[model]``, ``[train]`` and ``out``."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: OptimConfig = Field(default_factory=OptimConfig)
    out: str = Field("runs", description="folder of the run folders")

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: Any) -> "Config":
        if not isinstance(d, dict):
            raise ConfigError("invalid config: expected a table of sections")
        return settings.validate(cls, d).check_rules()

    def check_rules(self) -> "Config":
        """The rules between keys (each key is checked on its own when set)."""
        def check(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"invalid config: {name}: {msg}")

        m, t = self.model, self.train
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

    @classmethod
    def listing(cls) -> str:
        """Every key with its default and meaning, as a TOML file sets it (``null``: unset)."""
        lines = [f"out = {json.dumps(cls.model_fields['out'].default)}".ljust(34) + "  # folder of the run folders"]
        for name, model in (("data", DataConfig), ("model", ModelConfig), ("train", OptimConfig)):
            lines += ["", *settings.listing(model, name)]
        return "\n".join(lines)


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
    return cfg.with_overrides(overrides or {}) if overrides else cfg.check_rules()


__all__ = ["Config", "DataConfig", "ModelConfig", "OptimConfig", "load_config", "read_config_file", "METHODS",
           "RUN_OPTIONS"]
