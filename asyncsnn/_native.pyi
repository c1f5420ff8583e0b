"""Type stub of the compiled extension (kept by hand; checked against the module by a test)."""

from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str
MODES: list[str]
SCHEDULERS: list[str]
INPUT_MODES: list[str]
RUNAWAY_STEPS: int

class ConfigError(ValueError): ...
class NetworkError(ValueError): ...
class InputError(ValueError): ...
class MappingError(ConfigError):
    violations: list[tuple[int, str, int, int]]

class RunawayError(RuntimeError): ...
class InternalError(RuntimeError): ...

def hash_key(seed: int, sample: int, frame: int, step: int, source: int) -> int: ...
def stochastic_thresholds() -> np.ndarray:
    """The stochastic neurons' firing table ``T[i + 4096]`` (``uint64``), ``i`` in ``-4096..=4096``."""

class SpikeQueue:
    """The emulator's arbitration queue, driven directly: sources are numbered inputs first;
    ``group_of[s]`` is each source's arbitration group, ``population[n]`` each neuron's
    population (for ``layered``); ``seed`` and ``sample`` enter the scheduler hash."""

    def __init__(self, n_inputs: int, group_of: Sequence[int], population: Sequence[int], seed: int = 0,
                 sample: int = 0) -> None: ...
    def push(self, source: int, count: int = 1, frame: int = 0, step: int = 0,
             overshoot: Optional[float] = None) -> None: ...
    def release(self, group: int, f: Optional[int], scheduler: str, frame: int = 0,
                step: int = 0) -> list[tuple[int, int]]: ...
    def counts(self) -> list[int]: ...
    def group_len(self, group: int) -> int: ...
    @property
    def n_groups(self) -> int: ...

class ChipConfig:
    @staticmethod
    def preset(name: str) -> ChipConfig: ...
    @staticmethod
    def from_toml(text: str) -> ChipConfig: ...
    @staticmethod
    def from_json(text: str) -> ChipConfig: ...
    @staticmethod
    def presets() -> list[str]: ...
    def to_toml(self) -> str: ...
    def to_json(self) -> str: ...
    @property
    def n_cores(self) -> int: ...

class RunOptions:
    """The run options as the emulator receives them (``asyncsnn.RunOptions.to_native``);
    every argument is required: the defaults live in ``asyncsnn.RunOptions``."""

    def __init__(self, *, mode: str, scheduler: str, f: Optional[int], seed: int, sample_offset: int,
                 input_mode: str, max_steps: Optional[int], runaway_steps: int, trace: bool,
                 threads: Optional[int]) -> None: ...
    @property
    def mode(self) -> str: ...
    @property
    def scheduler(self) -> str: ...
    @property
    def f(self) -> Optional[int]: ...
    @property
    def seed(self) -> int: ...
    @property
    def sample_offset(self) -> int: ...
    @property
    def input_mode(self) -> str: ...
    @property
    def max_steps(self) -> Optional[int]: ...
    @property
    def runaway_steps(self) -> int: ...
    @property
    def trace(self) -> bool: ...
    @property
    def threads(self) -> Optional[int]: ...

class Network:
    """``populations``: dicts with ``size``, ``theta``, ``beta``, ``reset``, ``refractory``,
    ``kind``, ``alpha``; ``projections``: dicts with ``source`` (``"input"`` or a population
    index), ``target`` and ``weights``: a 2-D float32 array, or ``(shape, rows, cols, values)``."""

    def __init__(self, n_inputs: int, populations: list[dict], projections: list[dict], output: int) -> None: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_neurons(self) -> int: ...
    @property
    def output_range(self) -> tuple[int, int]: ...

class Emulator:
    def __init__(self, network: Network, chip: ChipConfig, core_of: Optional[npt.NDArray[np.int64]] = None) -> None: ...
    @property
    def core_of(self) -> npt.NDArray[np.uint32]: ...
    @property
    def n_synapses(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def clipped_weights(self) -> int: ...
    @property
    def chip(self) -> ChipConfig: ...
    def usage(self) -> dict[str, npt.NDArray[np.uint64]]: ...
    def run(
        self,
        inputs: Union[npt.NDArray[np.uint32],
                      tuple[Sequence[npt.NDArray[np.int64]], Sequence[npt.NDArray[np.int64]], int, Optional[int]]],
        options: RunOptions,
        labels: Optional[npt.NDArray[np.int64]] = None,
    ) -> dict:
        """``inputs``: dense counts ``(batch, frames, channels)``, or event streams
        ``(times, channels, dt, n_frames)``."""

class TrainTape:
    """A native training run's tape (``asyncsnn.sim.native``), for its one backward."""

    @property
    def nbytes(self) -> int: ...
    def backward(
        self,
        g_out: npt.NDArray[np.floating],
        g_counts: npt.NDArray[np.floating],
        g_v: npt.NDArray[np.floating],
        g_first: Optional[npt.NDArray[np.floating]],
        truncated: bool,
        surrogate: str,
        slope: float,
        threads: int,
    ) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
        """The gradients of the input and the neuron-to-neuron support weights."""

def train_forward(
    theta: npt.NDArray[np.floating], beta: npt.NDArray[np.floating], subtract: npt.NDArray[np.bool_],
    refractory: npt.NDArray[np.bool_], has_out: npt.NDArray[np.bool_], layer: npt.NDArray[np.int64],
    slot_neuron: npt.NDArray[np.int64], n_inputs: int, out: tuple[int, int],
    src_start: npt.NDArray[np.int64], target: npt.NDArray[np.int64], weight: npt.NDArray[np.floating],
    fanout: npt.NDArray[np.floating], in_start: npt.NDArray[np.int64], in_target: npt.NDArray[np.int64],
    in_weight: npt.NDArray[np.floating], in_fanout: npt.NDArray[np.floating], frames: npt.NDArray[np.floating],
    scheduler: str, limit: Optional[int], seed: int, sample_offset: int, step_limit: int, limit_is_error: bool,
    stop_after_output: Optional[int], threads: int, tape: bool = True,
) -> tuple[dict[str, npt.NDArray], TrainTape]:
    """A batch through the training engine: its outputs (batch first) and its tape (``tape=False``:
    none is kept, for a run that needs no gradient; its ``backward`` then raises)."""
