"""Network descriptions shared by the emulator and the training layer.

A network is a list of populations of LIF neurons and a list of projections (weight matrices
``[target, source]``) from the inputs or a population to a population; any directed graph is
allowed (skip connections, recurrence). Neurons are numbered in population order; sources are
numbered input channels first, then neurons.
"""

from __future__ import annotations

import json
import numbers
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _native
from .errors import InputError, NetworkError
from .options import RunOptions

SourceRef = Union[str, int]

_F32_MAX = float(np.finfo(np.float32).max)


NEURON_KINDS = ("lif", "stochastic", "integrator")
RESETS = ("zero", "subtract")
NATIVE_CACHE_ENTRIES = 1 << 22
"""Networks of at most this many weight entries keep their native conversion between uses
(:meth:`Network.to_native`); larger ones are converted on each use, so that they are not held
twice."""


@dataclass(frozen=True)
class Population:
    """A group of neurons with shared parameters.

    ``kind="lif"`` (default): per frame ``v <- beta * v`` (leak), then input currents are
    integrated step by step; a neuron fires when ``v > theta`` (strict) and resets to ``0``
    (``reset="zero"``) or ``v - theta`` (``reset="subtract"``). A refractory neuron fires at
    most once per frame.

    ``kind="stochastic"`` (the deployed SPSN neuron) and ``kind="integrator"`` (a non-firing
    readout): input adds to a synaptic trace ``i`` that decays by ``alpha`` per frame. Once per
    frame, when the frame has settled, the population *draws*: ``v <- beta * v + i``; a
    stochastic neuron then fires with probability ``sigmoid(v - theta)`` decided by the
    counter-based hash (``asyncsnn.spsn.deploy``), without reset. Populations draw one at a time
    in population order, each after the previous draw's spikes have been delivered. ``reset``
    and ``refractory`` do not apply. The emulator runs any mix of kinds; the PyTorch
    ``AsyncSimulator`` runs LIF networks, ``asyncsnn.spsn.deploy.simulate`` stochastic ones.
    """

    size: int
    theta: float = 1.0
    beta: float = 1.0
    reset: str = "zero"
    refractory: bool = False
    name: str = ""
    kind: str = "lif"
    alpha: float = 0.0


@dataclass(frozen=True)
class Conv2d:
    """Geometry of a 2-D convolution from a source laid out as ``(channels, height, width)``
    (channel-major, like the sensor mapping ``(p*H + y)*W + x``) to a target laid out as
    ``(out_channels, out_height, out_width)``. No bias: neurons have thresholds."""

    in_shape: tuple[int, int, int]
    stride: int = 1
    padding: int = 0

    def out_shape(self, kernel_shape: tuple[int, ...]) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        oc, _, kh, kw = kernel_shape
        return (int(oc), (h + 2 * self.padding - kh) // self.stride + 1, (w + 2 * self.padding - kw) // self.stride + 1)

    def connections(self, kernel_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, kernel_index)``: every (target, source) pair the kernel connects, with
        the flat index of its kernel weight. Padding positions connect nothing."""
        c, h, w = self.in_shape
        oc, ic, kh, kw = kernel_shape
        _, oh, ow = self.out_shape(kernel_shape)
        o, y, x, i, dy, dx = np.meshgrid(np.arange(oc), np.arange(oh), np.arange(ow), np.arange(ic), np.arange(kh),
                                         np.arange(kw), indexing="ij")
        sy = y * self.stride - self.padding + dy
        sx = x * self.stride - self.padding + dx
        ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        rows = ((o * oh + y) * ow + x)[ok]
        cols = ((i * h + sy) * w + sx)[ok]
        kidx = (((o * ic + i) * kh + dy) * kw + dx)[ok]
        return rows.astype(np.int64), cols.astype(np.int64), kidx.astype(np.int64)


@dataclass(frozen=True)
class Projection:
    """Weights from ``source`` (``"input"`` or a population index or name) to ``target``.

    ``weights`` is a dense ``(target size, source size)`` array, or a sparse triple
    ``(rows, cols, values)`` with ``shape`` given, or (with ``conv``) a convolution kernel
    ``(out_channels, in_channels, kh, kw)`` shared across positions (see :class:`Conv2d`).
    """

    source: SourceRef
    target: SourceRef
    weights: np.ndarray | None = None
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    values: np.ndarray | None = None
    shape: tuple[int, int] | None = None
    conv: Conv2d | None = None

    @classmethod
    def conv2d(cls, source: SourceRef, target: SourceRef, kernel, in_shape: Sequence[int], *, stride: int = 1,
               padding: int = 0) -> "Projection":
        """A convolution projection; the target population must have
        ``out_channels * out_height * out_width`` neurons."""
        return cls(source, target, weights=np.asarray(kernel),
                   conv=Conv2d(tuple(int(v) for v in in_shape), int(stride), int(padding)))  # type: ignore[arg-type]

    @property
    def kind(self) -> str:
        return "conv" if self.conv is not None else ("dense" if self.weights is not None else "sparse")

    def __repr__(self) -> str:
        if self.conv is not None:
            what = f"conv {tuple(np.shape(self.weights))} over {self.conv.in_shape}"
        elif self.weights is not None:
            what = "dense " + "x".join(str(d) for d in np.shape(self.weights))
        else:
            what = f"sparse {self.shape}, {len(np.atleast_1d(self.values if self.values is not None else []))} weights"
        return f"{self.source!r} -> {self.target!r}: {what}"

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, cols, values)`` of the non-dense kinds (a convolution expanded)."""
        if self.conv is not None:
            k = np.asarray(self.weights, np.float32)
            rows, cols, kidx = self.conv.connections(k.shape)
            return rows, cols, k.ravel()[kidx]
        return np.asarray(self.rows), np.asarray(self.cols), np.asarray(self.values)


def append_bias_channel(frames: np.ndarray) -> np.ndarray:
    """Frames ``(B, T, M)`` with the bias channel appended as input ``M``: one event in every
    frame. Networks whose biases are input weights (layer modules, SPSN deployment, NIR
    biases) take their input this way."""
    return np.concatenate([frames, np.ones(frames.shape[:2] + (1,), frames.dtype)], axis=2)


def _is_input(ref) -> bool:
    """``ref`` names the input channels (a string compare that an array cannot turn elementwise)."""
    return isinstance(ref, str) and ref == "input"


def _strict(value, kind: str, field_name: str):
    """``value`` as the ``kind`` (``int``, ``float``, ``bool``, ``str``) it must already be: no
    silent coercion (``"false"`` is not a boolean, ``2.9`` is not an integer, ``True`` is not a
    number)."""
    ok = {
        "int": isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and 0 <= value < 2**32,
        "float": isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)),
        "bool": isinstance(value, (bool, np.bool_)),
        "str": isinstance(value, str),
    }[kind]
    if not ok:
        what = {"int": "an integer in 0..2^32", "float": "a number", "bool": "True or False", "str": "a string"}[kind]
        raise NetworkError(f"invalid network: {field_name}: {value!r} ({type(value).__name__}) must be {what}")
    return {"int": int, "float": float, "bool": bool, "str": str}[kind](value)


def _as_weight_array(w, field_name: str) -> np.ndarray:
    try:
        a = np.asarray(w)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise NetworkError(f"invalid network: {field_name}: not an array of weights ({e})") from None
    if a.dtype.kind not in "fiub":
        raise NetworkError(f"invalid network: {field_name}: dtype {a.dtype} is not numeric")
    if a.size:
        # Two reductions, no copy: NaN propagates through min and max, and every float32
        # (the usual dtype) fits. Only a bad array pays for finding where.
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi) and max(-lo, hi) <= _F32_MAX):
            a64 = a.astype(np.float64, copy=False)
            bad = ~np.isfinite(a64)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise NetworkError(f"invalid network: {field_name}: non-finite weight {a64[idx]} at {list(idx)}")
            raise NetworkError(f"invalid network: {field_name}: weights must fit float32 (|w| <= {_F32_MAX:.3e})")
    return np.ascontiguousarray(a, dtype=np.float32)


class Endpoints(NamedTuple):
    """Where a projection's weight matrix sits: its source population (``None`` for the
    inputs) and target population, and their first index and size (an input channel, or a
    neuron in neuron order)."""

    source: Optional[int]
    target: int
    source_start: int
    source_size: int
    target_start: int
    target_size: int


def _sparse_native(j: int, shape, rows, cols, values) -> tuple:
    """A sparse matrix as the native network takes it: ``(shape, rows, cols, values)``."""
    try:
        shape = (_strict(shape[0], "int", f"projections[{j}].shape[0]"), _strict(shape[1], "int",
                                                                                  f"projections[{j}].shape[1]"))
    except (TypeError, IndexError):
        raise NetworkError(f"invalid network: projections[{j}].shape: expected (rows, cols), got {shape!r}") from None
    if min(shape) < 0:
        raise NetworkError(f"invalid network: projections[{j}].shape: {shape} has a negative size")
    for name, idx in (("rows", rows), ("cols", cols)):
        a = np.asarray(idx)
        if a.size and a.dtype.kind not in "iu":  # 1.7 is no index (no silent truncation)
            raise NetworkError(f"invalid network: projections[{j}].{name}: expected integer indices, got {a.dtype}")
    def index(a) -> np.ndarray:
        # int32 indices (what scipy and most builders hold) go as they are: no int64 copy
        a = np.asarray(a)
        same = a.dtype == np.int32 and np.asarray(rows).dtype == np.asarray(cols).dtype
        return np.ascontiguousarray(a, dtype=np.int32 if same else np.int64).ravel()

    return shape, index(rows), index(cols), np.ascontiguousarray(values, dtype=np.float32).ravel()


class NeuronArrays(NamedTuple):
    """Per-neuron parameters of a network, in neuron order (numpy arrays of length N)."""

    population: np.ndarray  # int64 population index
    theta: np.ndarray       # float32
    beta: np.ndarray        # float32
    subtract: np.ndarray    # bool: reset by subtraction (else to zero)
    refractory: np.ndarray  # bool
    has_out: np.ndarray     # bool: the population projects somewhere, so its spikes queue


@dataclass
class Network:
    """A spiking network: ``n_inputs`` channels, populations, projections, output population."""

    n_inputs: int
    populations: list[Population]
    projections: list[Projection]
    output: SourceRef = -1
    core_of: Optional[np.ndarray] = field(default=None, compare=False)
    """Optional neuron-to-core mapping that travels with the network (used by ``Chip.place``
    when no mapping is given, and by the training simulator)."""
    run_options: Optional[RunOptions] = field(default=None, compare=False)
    """The run options the network was trained for (scheduler, ``F``, input mode, step caps,
    seed), recorded by training and read by ``asyncsnn evaluate``, ``emulate`` and the
    experiment; ``None`` for a network that was not trained for a schedule."""
    dt: Optional[int] = field(default=None, compare=False)
    """The frame length (microseconds) of the data it was trained on, or ``None``."""
    _native_cache: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)
    """``(fingerprint, native network)`` of the last conversion (see :meth:`to_native`); only
    for networks of at most :data:`NATIVE_CACHE_ENTRIES` weight entries."""

    def __post_init__(self) -> None:
        self.populations = list(self.populations)
        self.projections = list(self.projections)
        if self.core_of is not None:
            c = np.asarray(self.core_of)
            if c.ndim != 1 or c.dtype.kind not in "iu" or (c.size and c.min() < 0):
                raise NetworkError(f"invalid network: core_of: expected a 1-D array of non-negative core indices, "
                                   f"got {c.dtype} {c.shape}")
            self.core_of = c.astype(np.int64)
        if self.run_options is not None and not isinstance(self.run_options, RunOptions):
            raise NetworkError(f"invalid network: run_options: expected a RunOptions, got "
                               f"{type(self.run_options).__name__}")
        if self.dt is not None and (isinstance(self.dt, bool) or not isinstance(self.dt, numbers.Integral)
                                    or self.dt < 1):
            raise NetworkError(f"invalid network: dt: {self.dt!r} is outside 1.. (microseconds)")

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def feedforward(
        cls,
        weights: Sequence[np.ndarray],
        *,
        theta: float = 1.0,
        beta: float = 1.0,
        reset: str = "zero",
        refractory: bool = False,
    ) -> "Network":
        """A layered network from weight matrices ``W[i]`` of shape ``(n_{i+1}, n_i)``."""
        if len(weights) == 0:
            raise NetworkError("invalid network: weights: at least one weight matrix is required")
        mats = [np.asarray(w) for w in weights]
        for i, w in enumerate(mats):
            if w.ndim != 2:
                raise NetworkError(f"invalid network: weights[{i}]: expected a 2-D array, got shape {w.shape}")
        pops = [Population(w.shape[0], theta, beta, reset, refractory, name=f"layer{i}") for i, w in enumerate(mats)]
        projs = [Projection("input" if i == 0 else i - 1, i, w) for i, w in enumerate(mats)]
        return cls(int(mats[0].shape[1]), pops, projs, output=len(pops) - 1)

    # ----------------------------------------------------------------- queries
    def _pop_index(self, ref: SourceRef, field_name: str) -> int:
        if isinstance(ref, str):
            for i, p in enumerate(self.populations):
                if p.name and p.name == ref:
                    return i
            names = [p.name for p in self.populations if p.name]
            raise NetworkError(f"invalid network: {field_name}: no population named {ref!r} (names: {names})")
        n = len(self.populations)
        if isinstance(ref, (bool, np.bool_)) or not isinstance(ref, numbers.Integral) or not -n <= int(ref) < n:
            raise NetworkError(f"invalid network: {field_name}: {ref!r} is not a population: give an index in "
                               f"-{n}..{n - 1} or a population's name")
        i = int(ref)
        if i < 0:
            i += n
        return i

    @property
    def is_lif(self) -> bool:
        """Every population is LIF (what the PyTorch ``AsyncSimulator`` runs)."""
        return all(p.kind == "lif" for p in self.populations)

    @property
    def readout(self) -> str:
        """How outputs become a class: ``counts`` (most spikes), or ``potential`` for a
        non-firing ``integrator`` output population (highest mean potential)."""
        return "potential" if self.populations[self.output_index].kind == "integrator" else "counts"

    @property
    def output_index(self) -> int:
        return self._pop_index(self.output, "output")

    @property
    def n_neurons(self) -> int:
        return sum(int(p.size) for p in self.populations)

    @property
    def n_outputs(self) -> int:
        return int(self.populations[self.output_index].size)

    @property
    def population_starts(self) -> list[int]:
        starts, s = [], 0
        for p in self.populations:
            starts.append(s)
            s += int(p.size)
        return starts

    def endpoints(self) -> list[Endpoints]:
        """The :class:`Endpoints` of every projection, in order."""
        starts, pops = self.population_starts, self.populations
        out = []
        for j, pr in enumerate(self.projections):
            t = self._pop_index(pr.target, f"projections[{j}].target")
            if _is_input(pr.source):
                out.append(Endpoints(None, t, 0, int(self.n_inputs), starts[t], int(pops[t].size)))
            else:
                s = self._pop_index(pr.source, f"projections[{j}].source")
                out.append(Endpoints(s, t, starts[s], int(pops[s].size), starts[t], int(pops[t].size)))
        return out

    def dense_weights(self) -> np.ndarray:
        """``W[target neuron, source]`` ``(N, M + N)`` float32, sources numbered inputs first
        (the execution model's numbering); projections onto the same pairs add up. Validates
        the network first."""
        self.to_native()
        m, n = self.n_inputs, self.n_neurons
        w = np.zeros((n, m + n), dtype=np.float32)
        for pr, e in zip(self.projections, self.endpoints()):
            t0 = e.target_start
            s0 = 0 if e.source is None else m + e.source_start
            if pr.kind == "dense":
                a = np.asarray(pr.weights, dtype=np.float32)
                w[t0:t0 + a.shape[0], s0:s0 + a.shape[1]] += a
            else:
                rows, cols, vals = pr.triples()
                np.add.at(w, (t0 + np.asarray(rows), s0 + np.asarray(cols)), np.asarray(vals, np.float32))
        return w

    def neuron_arrays(self) -> NeuronArrays:
        """Per-neuron parameters expanded from the populations."""
        pops = self.populations
        expand = lambda f, dtype: np.concatenate([np.full(p.size, f(p), dtype) for p in pops])  # noqa: E731
        has_out = np.zeros(self.n_neurons, bool)
        starts = self.population_starts
        for j, pr in enumerate(self.projections):
            if pr.source != "input":
                i = self._pop_index(pr.source, f"projections[{j}].source")
                has_out[starts[i]:starts[i] + pops[i].size] = True
        return NeuronArrays(
            population=np.concatenate([np.full(p.size, i, np.int64) for i, p in enumerate(pops)]),
            theta=expand(lambda p: p.theta, np.float32),
            beta=expand(lambda p: p.beta, np.float32),
            subtract=expand(lambda p: p.reset == "subtract", bool),
            refractory=expand(lambda p: p.refractory, bool),
            has_out=has_out,
        )

    # ----------------------------------------------------------------- native conversion
    def _fingerprint(self) -> int:
        """A digest of everything the native network is made of, the contents of every weight
        array included (CRC-32): an edit in place, of a list or of an array, changes it."""
        # repr, not hash, of the populations: a field holding garbage (a dict) must reach the
        # validation below and its clear error, not fail here
        parts: list = [repr(self.n_inputs), repr(self.output), repr(self.populations)]
        for pr in self.projections:
            parts.append((repr(pr.source), repr(pr.target), pr.kind, repr(pr.shape), repr(pr.conv)))
            for a in (pr.weights, pr.rows, pr.cols, pr.values):
                if a is not None:
                    try:
                        arr = np.ascontiguousarray(a)
                        crc = zlib.crc32(arr.view(np.uint8) if arr.size else b"")
                    except (TypeError, ValueError):  # not numbers: validation says so
                        parts.append(repr(a))
                        continue
                    parts.append((arr.dtype.str, arr.shape, crc))
        return hash(tuple(parts))

    def to_native(self) -> "_native.Network":
        """The validated native network. It is made again whenever the network changed since
        the last call (populations, projections or the contents of any weight array), so an
        edit in place always takes effect."""
        key = self._fingerprint()
        if self._native_cache is not None and self._native_cache[0] == key:
            return self._native_cache[1]
        if not self.populations:
            raise NetworkError("invalid network: populations: at least one population is required")
        pops = []
        for i, p in enumerate(self.populations):
            f = f"populations[{i}]"
            pops.append(
                {
                    "size": _strict(p.size, "int", f"{f}.size"),
                    "theta": _strict(p.theta, "float", f"{f}.theta"),
                    "beta": _strict(p.beta, "float", f"{f}.beta"),
                    "reset": _strict(p.reset, "str", f"{f}.reset"),
                    "refractory": _strict(p.refractory, "bool", f"{f}.refractory"),
                    "kind": _strict(p.kind, "str", f"{f}.kind"),
                    "alpha": _strict(p.alpha, "float", f"{f}.alpha"),
                }
            )
        projs = []
        for j, pr in enumerate(self.projections):
            src = "input" if _is_input(pr.source) else self._pop_index(pr.source, f"projections[{j}].source")
            tgt = self._pop_index(pr.target, f"projections[{j}].target")
            weights: object
            if pr.conv is not None:
                weights = self._conv_native(j, pr, src, tgt)
            elif pr.weights is not None:
                dense = _as_weight_array(pr.weights, f"projections[{j}].weights")
                if dense.ndim != 2:
                    raise NetworkError(f"invalid network: projections[{j}].weights: expected a 2-D (target, source) "
                                       f"array, got shape {dense.shape}")
                weights = dense
            else:
                if pr.rows is None or pr.cols is None or pr.values is None or pr.shape is None:
                    raise NetworkError(
                        f"invalid network: projections[{j}]: give dense weights or rows, cols, values and shape"
                    )
                weights = _sparse_native(j, pr.shape, pr.rows, pr.cols,
                                         _as_weight_array(pr.values, f"projections[{j}].values").ravel())
            projs.append({"source": src, "target": tgt, "weights": weights})
        native = _native.Network(_strict(self.n_inputs, "int", "n_inputs"), pops, projs, self.output_index)
        entries = sum(int(np.size(w[-1] if isinstance(w, tuple) else w)) for w in (p["weights"] for p in projs))
        # A large network is converted again on each use rather than held twice: a placement
        # keeps only its compiled form, so what stays in memory is the user's arrays and that.
        self._native_cache = (key, native) if entries <= NATIVE_CACHE_ENTRIES else None
        return native

    def _conv_native(self, j: int, pr: Projection, src, tgt: int) -> tuple:
        field_name = f"projections[{j}]"
        k = _as_weight_array(pr.weights, f"{field_name}.weights")
        conv = pr.conv
        assert conv is not None
        if k.ndim != 4 or min(k.shape) < 1:
            raise NetworkError(f"invalid network: {field_name}.weights: a convolution kernel must be "
                               f"(out_channels, in_channels, kh, kw), got shape {k.shape}")
        if len(conv.in_shape) != 3 or min(conv.in_shape) < 1 or conv.stride < 1 or conv.padding < 0:
            raise NetworkError(f"invalid network: {field_name}.conv: in_shape must be 3 positive sizes, stride >= 1 "
                               f"and padding >= 0, got {conv}")
        if k.shape[1] != conv.in_shape[0]:
            raise NetworkError(f"invalid network: {field_name}.weights: kernel has {k.shape[1]} input channels but "
                               f"in_shape has {conv.in_shape[0]}")
        src_size = self.n_inputs if src == "input" else self.populations[src].size
        if int(np.prod(conv.in_shape)) != src_size:
            raise NetworkError(f"invalid network: {field_name}.conv.in_shape: {conv.in_shape} holds "
                               f"{int(np.prod(conv.in_shape))} neurons but the source has {src_size}")
        out = conv.out_shape(k.shape)
        if min(out) < 1:
            raise NetworkError(f"invalid network: {field_name}: the kernel {k.shape[2:]} does not fit in_shape "
                               f"{conv.in_shape} with padding {conv.padding}")
        if int(np.prod(out)) != self.populations[tgt].size:
            raise NetworkError(f"invalid network: {field_name}: the convolution yields {out} = {int(np.prod(out))} "
                               f"neurons but the target has {self.populations[tgt].size}")
        rows, cols, vals = pr.triples()
        return _sparse_native(j, (self.populations[tgt].size, src_size), rows, cols, vals)

    def validate(self) -> "Network":
        """Raise :class:`NetworkError` naming the field if anything is wrong."""
        self.to_native()
        if self.core_of is not None and len(self.core_of) != self.n_neurons:
            raise NetworkError(f"invalid network: core_of: {len(self.core_of)} entries for {self.n_neurons} neurons")
        return self

    # ----------------------------------------------------------------- values
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_native_cache"] = None  # (the native network is rebuilt on use)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{p.name or i}: {p.size}" + ("" if p.kind == "lif" else f" {p.kind}")
                          for i, p in enumerate(self.populations))
        extra = "" if self.run_options is None else f", trained for {self.run_options.scheduler} " \
                                                     f"F={self.run_options.f_label}"
        return (f"Network(n_inputs={self.n_inputs}, populations=[{sizes}], "
                f"projections=[{'; '.join(repr(p) for p in self.projections)}], output={self.output!r}{extra})")

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Save to a ``.npz`` file (metadata as JSON, with the run options and frame length it
        was trained for, plus one array per weight)."""
        path = Path(path)
        meta = {
            "format": "asyncsnn.network/1",
            "n_inputs": int(self.n_inputs),
            "output": self.output_index,
            "populations": [asdict(p) for p in self.populations],
            "projections": [],
        }
        arrays: dict[str, np.ndarray] = {}
        for j, pr in enumerate(self.projections):
            entry = {"source": pr.source, "target": pr.target}
            if pr.conv is not None:
                arrays[f"w{j}"] = np.asarray(pr.weights, dtype=np.float32)
                entry["kind"] = "conv"
                entry["conv"] = asdict(pr.conv)
            elif pr.weights is not None:
                arrays[f"w{j}"] = np.asarray(pr.weights, dtype=np.float32)
                entry["kind"] = "dense"
            else:
                arrays[f"r{j}"] = np.asarray(pr.rows, dtype=np.int64)
                arrays[f"c{j}"] = np.asarray(pr.cols, dtype=np.int64)
                arrays[f"v{j}"] = np.asarray(pr.values, dtype=np.float32)
                entry["kind"] = "sparse"
                entry["shape"] = [int(pr.shape[0]), int(pr.shape[1])]  # type: ignore[index]
            meta["projections"].append(entry)
        if self.core_of is not None:
            arrays["core_of"] = np.asarray(self.core_of, np.int64)
        if self.run_options is not None:
            meta["run"] = self.run_options.to_dict()
        if self.dt is not None:
            meta["dt"] = int(self.dt)
        from .runs import atomic_write

        meta_bytes = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        return atomic_write(path, lambda fh: np.savez_compressed(fh, meta=meta_bytes, **arrays), binary=True)

    @classmethod
    def load(cls, path: str | Path) -> "Network":
        """Load a file written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"network file {path} does not exist")
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise NetworkError(f"invalid network: {path}: not an asyncsnn network file (no metadata)")
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != "asyncsnn.network/1":
                raise NetworkError(f"invalid network: {path}: unknown format {meta.get('format')!r}")
            pops = [Population(**p) for p in meta["populations"]]
            projs = []
            for j, e in enumerate(meta["projections"]):
                if e["kind"] == "dense":
                    projs.append(Projection(e["source"], e["target"], z[f"w{j}"]))
                elif e["kind"] == "conv":
                    c = e["conv"]
                    projs.append(Projection.conv2d(e["source"], e["target"], z[f"w{j}"], c["in_shape"],
                                                   stride=c["stride"], padding=c["padding"]))
                else:
                    projs.append(
                        Projection(
                            e["source"], e["target"], rows=z[f"r{j}"], cols=z[f"c{j}"], values=z[f"v{j}"],
                            shape=tuple(e["shape"]),
                        )
                    )
            core_of = z["core_of"] if "core_of" in z.files else None
        run = None
        if meta.get("run") is not None:
            try:
                run = RunOptions.from_dict(meta["run"])
            except InputError as e:
                raise NetworkError(f"invalid network: {path}: run.{e.field}: {e.detail}") from None  # type: ignore
        return cls(meta["n_inputs"], pops, projs, output=meta["output"], core_of=core_of, run_options=run,
                   dt=meta.get("dt")).validate()
