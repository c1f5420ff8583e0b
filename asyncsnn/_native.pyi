"""Type stub of the compiled extension (kept by hand; checked against the module by a test)."""

from typing import Optional, Sequence

import numpy as np
import numpy.typing as npt

__version__: str
SCHEDULERS: list[str]

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

class Network:
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
    def clipped_weights(self) -> int: ...
    @property
    def chip(self) -> ChipConfig: ...
    def usage(self) -> dict[str, npt.NDArray[np.uint64]]: ...
    def run_dense(
        self,
        inputs: npt.NDArray[np.uint32],
        labels: Optional[npt.NDArray[np.int64]] = None,
        *,
        mode: str = "steps",
        scheduler: str = "fifo",
        f: Optional[int] = None,
        seed: int = 0,
        sample_offset: int = 0,
        input_mode: str = "all_at_once",
        max_steps: Optional[int] = None,
        trace: bool = False,
        threads: Optional[int] = None,
    ) -> dict: ...
    def run_events(
        self,
        times: Sequence[npt.NDArray[np.int64]],
        channels: Sequence[npt.NDArray[np.int64]],
        dt: int,
        n_frames: Optional[int] = None,
        labels: Optional[npt.NDArray[np.int64]] = None,
        *,
        mode: str = "steps",
        scheduler: str = "fifo",
        f: Optional[int] = None,
        seed: int = 0,
        sample_offset: int = 0,
        input_mode: str = "all_at_once",
        max_steps: Optional[int] = None,
        trace: bool = False,
        threads: Optional[int] = None,
    ) -> dict: ...
