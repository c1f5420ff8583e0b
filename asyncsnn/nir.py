"""NIR interchange: networks in from snnTorch, Norse, Sinabs, Rockpool; out to Lava, SpiNNaker2, Xylo.

NIR (the Neuromorphic Intermediate Representation, the ``nir`` package) describes a network as a
graph of nodes in continuous time. :func:`from_nir` turns a graph into an asyncsnn
:class:`~asyncsnn.Network` for a frame length ``dt``; :func:`to_nir` does the reverse, and
:func:`read` / :func:`write` go through NIR's HDF5 files.

**The conversion for a frame of length** ``dt`` (NIR's time unit, seconds). NIR's neurons are
written as differential equations; the tools that export and import NIR (snnTorch, Norse)
discretise them with one forward-Euler step per time step, and so does this module. One time step
is one frame of the chip, and in a frame the chip first leaks, then integrates its input, then
fires (``v > theta``) and resets:

* ``LIF`` ``tau dv/dt = (v_leak - v) + r I``, reset to ``v_reset`` on ``v > v_threshold``:
  ``v <- (1 - dt/tau) v + (dt r / tau) I + (dt / tau) v_leak``, so the population's leak is
  ``beta = 1 - dt/tau`` (one ``tau`` per population, ``dt <= tau``), the input gain
  ``dt r / tau`` multiplies the weights into each neuron, the constant ``(dt/tau) v_leak`` is a
  bias current (the bias channel, below), ``theta = v_threshold`` (one per population, > 0), and
  the reset is ``"zero"`` (``v_reset = 0``; the chip has no other reset potential);
* ``IF`` ``dv/dt = r I``: ``beta = 1``, input gain ``dt r``;
* ``LI`` ``tau dv/dt = (v_leak - v) + r I`` (no firing): an ``integrator`` population (the
  chip's non-firing readout) with ``alpha = 0``, ``beta = 1 - dt/tau``, gain ``dt r / tau``;
* ``Affine``/``Linear`` (``W x + b``), ``Scale``, ``Flatten``, ``SumPool2d`` and ``Conv2d``
  between neuron nodes compose into the projections' weights (a lone convolution stays a
  convolution projection); biases (and ``v_leak`` currents) become the weights of one more input
  channel, the *bias channel* (the last), which must receive one event in every frame
  (:func:`with_bias_channel`);
* a neuron node that feeds (through weights) back into itself or an earlier node is a recurrent
  projection; an edge among the weight nodes that closes a loop without a neuron is refused.

Parameters are arrays of one value per neuron; a neuron node whose parameters are all scalars
(0-d, as Norse writes them) has as many neurons as the weight node that feeds it has outputs.
Norse 1.1.0 writes ``tau = dt * tau_mem`` (it divides its ``dt`` by ``1 / tau_mem``): read its
files with the frame ``dt**2``, which gives its own step exactly (docs/nir.md).

No NIR parameter is ever approximated silently. Values with no exact counterpart raise a
:class:`~asyncsnn.NetworkError` naming the node and the parameter: ``CubaLIF`` and ``CubaLI``
(the chip's LIF has no synaptic current), ``v_reset != 0``, ``dt > tau``, a time constant or
threshold that differs across the neurons of one node, ``Delay``, ``Threshold``, ``AvgPool2d``,
dilated or grouped convolutions, nested graphs. ``approximate=True`` allows one documented
approximation: thresholds that differ across a node's neurons are normalised to 1 by dividing each
neuron's input weights (and bias) by its threshold (exact in real arithmetic; in float32 each
weight is rounded once).

:func:`to_nir` writes LIF populations as ``LIF`` (``beta < 1``: ``tau = dt / (1 - beta)``,
``r = tau / dt`` so that the gain is 1) or ``IF`` (``beta = 1``, ``r = 1 / dt``), integrator
readouts as ``LI``, dense and sparse projections as ``Linear`` and convolutions as ``Conv2d``
(with ``Flatten`` where a shaped population feeds a dense one). What NIR cannot say goes in each
node's ``metadata`` (``asyncsnn_refractory``, ``asyncsnn_name``), which other tools ignore and
:func:`from_nir` reads back, so that ``from_nir(to_nir(net, dt), dt)`` is ``net``. ``reset =
"subtract"`` has no NIR counterpart and is refused.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import NetworkError
from .network import Conv2d, Network, Population, Projection, append_bias_channel

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Scale", "Flatten", "Conv2d", "SumPool2d", "LIF", "IF", "LI")
_NEURONS = ("LIF", "IF", "LI")
_WIRES = ("Affine", "Linear", "Scale", "Flatten", "Conv2d", "SumPool2d", "Identity")
_WHY_NOT = {
    "CubaLIF": "the chip's LIF neuron has no synaptic current (tau_syn)",
    "CubaLI": "the chip's readout has no synaptic current (tau_syn)",
    "I": "a pure integrator without leak parameters; use LI or IF",
    "Delay": "the execution model has no synaptic delays",
    "Threshold": "a spike generator without a membrane; use IF",
    "AvgPool2d": "average pooling is not a sum of spikes; use SumPool2d",
    "Conv1d": "only 2-D convolutions map to the chip's convolution projections",
    "NIRGraph": "nested graphs (recurrent layer blocks) are not supported yet: flatten the graph",
}


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - the extra is part of [all]
        raise ImportError(f"asyncsnn.nir needs the nir package: pip install \"asyncsnn[nir]\" ({e})") from None
    return nir


def _err(node: str, what: str) -> NetworkError:
    return NetworkError(f"invalid NIR graph: node {node!r}: {what}")


def read(path: Union[str, os.PathLike]):
    """The NIR graph in the HDF5 file ``path`` (a clear error for a missing, corrupted or
    non-NIR file)."""
    nir = _nir()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NIR file {p}: not found")
    try:
        graph = nir.read(str(p))
    except Exception as e:  # h5py and nir raise many kinds for a bad file
        raise NetworkError(f"invalid NIR file {p}: {type(e).__name__}: {e}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NetworkError(f"invalid NIR file {p}: holds a {type(graph).__name__}, not a graph")
    return graph


def write(graph_or_network, path: Union[str, os.PathLike], dt: Optional[float] = None, *,
          bias_channel: bool = False) -> Path:
    """Write a NIR graph (or an asyncsnn network, converted by :func:`to_nir` with ``dt`` and
    ``bias_channel``) to ``path``."""
    nir = _nir()
    graph = graph_or_network
    if isinstance(graph_or_network, Network):
        if dt is None:
            raise ValueError("dt: needed to write a network as NIR (the frame length in seconds)")
        graph = to_nir(graph_or_network, dt, bias_channel=bias_channel)
    p = Path(path)
    nir.write(str(p), graph)
    return p


def _check_dt(dt: float) -> float:
    d = float(dt)
    if not (math.isfinite(d) and d > 0):
        raise ValueError(f"dt: {dt!r} must be a finite frame length > 0 (seconds, NIR's time unit)")
    return d


def _array(node: str, name: str, value: Any) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise _err(node, f"{name} contains NaN or infinite values")
    return a.reshape(-1)


def _uniform(node: str, name: str, a: np.ndarray) -> float:
    if a.size == 0:
        raise _err(node, f"{name} is empty")
    if not np.all(a == a[0]):
        raise _err(node, f"{name} differs across the node's neurons ({a.min():g} .. {a.max():g}); a population "
                         "has one value")
    return float(a[0])


def _shape(node_obj, key: str) -> Optional[tuple]:
    t = getattr(node_obj, key, None) or {}
    s = t.get("input" if key == "input_type" else "output")
    if s is None:
        return None
    s = tuple(int(v) for v in np.asarray(s).reshape(-1))
    return s or None


def _meta(node_obj, key: str, default=None):
    v = (getattr(node_obj, "metadata", None) or {}).get(key, default)
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return v.item()
    return v


class _Neuron:
    """A neuron node as a population: its parameters and the gain on its input."""

    def __init__(self, name: str, node, dt: float, approximate: bool, size: Optional[int] = None) -> None:
        kind = type(node).__name__
        self.name = name

        def param(key: str) -> np.ndarray:  # a scalar (0-d) parameter applies to all ``size`` neurons
            a = _array(name, key, getattr(node, key))
            return np.broadcast_to(a, (size,)) if size is not None and np.ndim(getattr(node, key)) == 0 else a

        r = param("r")
        self.size = r.size
        self.shape = (size,) if size is not None else tuple(int(v) for v in np.shape(node.r)) or (1,)
        self.leak_current = np.zeros(self.size)
        self.refractory = bool(_meta(node, "asyncsnn_refractory", False))
        self.label = str(_meta(node, "asyncsnn_name", "") or "")
        if kind == "IF":
            self.beta, gain = 1.0, dt * r
        else:
            tau = param("tau")
            if np.any(tau <= 0):
                raise _err(name, "tau must be > 0")
            t = _uniform(name, "tau", tau)
            if dt > t:
                raise _err(name, f"tau = {t:g} is shorter than the frame dt = {dt:g}: 1 - dt/tau = {1 - dt / t:g} "
                                 "is not a leak factor in [0, 1]; use a shorter dt")
            self.beta = 1.0 - dt / t
            if abs(self.beta) < 1e-12:  # dt == tau up to float64 rounding: no memory at all
                self.beta = 0.0
            gain = dt * r / t
            v_leak = param("v_leak")
            self.leak_current = (dt / t) * v_leak
        self.gain = gain
        if kind == "LI":
            self.kind, self.theta, self.norm = "integrator", 1.0, np.ones(self.size)
            return
        self.kind = "lif"
        v_reset = param("v_reset")
        if np.any(v_reset != 0):
            raise _err(name, "v_reset != 0; the chip resets to 0 (or subtracts the threshold, which NIR cannot say)")
        thr = param("v_threshold")
        if np.any(thr <= 0):
            raise _err(name, "v_threshold must be > 0")
        if np.all(thr == thr[0]):
            self.theta, self.norm = float(thr[0]), np.ones(self.size)
        elif approximate:  # normalised: v / theta_i against threshold 1
            self.theta, self.norm = 1.0, 1.0 / thr
        else:
            _uniform(name, "v_threshold", thr)

    def population(self) -> Population:
        return Population(self.size, theta=self.theta, beta=float(np.float32(self.beta)), reset="zero",
                          refractory=self.refractory, name=self.label or self.name, kind=self.kind)


_PARAMS = ("r", "tau", "v_leak", "v_reset", "v_threshold")


def _scalar_neuron_sizes(nodes: dict, preds: dict, in_name: str, m: int) -> dict[str, int]:
    """The size of each neuron node whose parameters are all scalars (0-d, as Norse writes
    them): the number of values its input carries, read from the weight nodes that feed it."""
    def scalar(node) -> bool:
        return all(np.ndim(getattr(node, k)) == 0 for k in _PARAMS if getattr(node, k, None) is not None)

    def out_size(name: str, seen: frozenset) -> Optional[int]:
        if name == in_name:
            return m
        if name in seen:
            return None
        node, kind = nodes[name], type(nodes[name]).__name__
        if kind in ("Affine", "Linear"):
            return int(np.shape(node.weight)[0]) if np.ndim(node.weight) == 2 else None
        if kind in _NEURONS and not scalar(node):
            return int(np.size(node.r))
        if kind == "Scale" and np.size(node.scale) > 1:
            return int(np.size(node.scale))
        if kind in ("Scale", "Flatten", "Identity") or kind in _NEURONS:
            found = {out_size(p, seen | {name}) for p in preds[name]} - {None}
            return found.pop() if len(found) == 1 else None
        return None  # Conv2d, SumPool2d: the shape comes from the node's own input_type

    sizes = {}
    for name, node in nodes.items():
        if type(node).__name__ in _NEURONS and scalar(node):
            size = out_size(name, frozenset())
            if size is None:
                raise _err(name, "its parameters are scalars and its size cannot be read from the nodes that "
                                 "feed it; give them one value per neuron")
            sizes[name] = size
    return sizes


def _pool_matrix(name: str, node, in_shape: Optional[tuple]) -> tuple[np.ndarray, tuple]:
    if in_shape is None or len(in_shape) != 3:
        raise _err(name, "SumPool2d needs a (channels, height, width) input shape")
    c, h, w = in_shape
    kh, kw = (int(v) for v in np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), 2))
    sh, sw = (int(v) for v in np.broadcast_to(np.asarray(node.stride).reshape(-1), 2))
    ph, pw = (int(v) for v in np.broadcast_to(np.asarray(node.padding).reshape(-1), 2))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise _err(name, f"kernel {kh}x{kw} does not fit the input {h}x{w}")
    m = np.zeros((c * oh * ow, c * h * w))
    for ch in range(c):
        for y in range(oh):
            for x in range(ow):
                for dy in range(kh):
                    for dx in range(kw):
                        sy, sx = y * sh - ph + dy, x * sw - pw + dx
                        if 0 <= sy < h and 0 <= sx < w:
                            m[(ch * oh + y) * ow + x, (ch * h + sy) * w + sx] = 1.0
    return m, (c, oh, ow)


def _conv_geometry(name: str, node, in_shape: Optional[tuple]) -> tuple[Conv2d, np.ndarray]:
    k = np.asarray(node.weight, dtype=np.float64)
    if k.ndim != 4:
        raise _err(name, f"Conv2d weight: expected (out, in, kh, kw), got shape {k.shape}")
    dil = tuple(int(v) for v in np.broadcast_to(np.asarray(node.dilation).reshape(-1), 2))
    if dil != (1, 1) or int(node.groups) != 1:
        raise _err(name, f"dilation {dil} / groups {node.groups}: only dilation 1 and groups 1 map to the chip")
    stride = tuple(int(v) for v in np.broadcast_to(np.asarray(node.stride).reshape(-1), 2))
    if isinstance(node.padding, str):
        raise _err(name, f"padding {node.padding!r}: give the padding as numbers")
    pad = tuple(int(v) for v in np.broadcast_to(np.asarray(node.padding).reshape(-1), 2))
    if stride[0] != stride[1] or pad[0] != pad[1]:
        raise _err(name, f"stride {stride} / padding {pad}: the chip's convolutions take equal values in both axes")
    shape = in_shape
    if node.input_shape is not None:
        hw = tuple(int(v) for v in np.asarray(node.input_shape).reshape(-1))
        shape = (k.shape[1],) + hw
    if shape is None or len(shape) != 3 or shape[0] != k.shape[1]:
        raise _err(name, f"Conv2d input shape {shape}: expected ({k.shape[1]}, height, width)")
    return Conv2d(tuple(int(v) for v in shape), stride[0], pad[0]), k  # type: ignore[arg-type]


def _conv_dense(geom: Conv2d, kern: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
    """A convolution's kernel spread into its (n_out, n_in) dense matrix."""
    rows, cols, kidx = geom.connections(kern.shape)
    d = np.zeros((n_out, n_in))
    np.add.at(d, (rows, cols), kern.reshape(-1)[kidx])
    return d


def _plus(a: Optional[np.ndarray], b: Optional[np.ndarray], n: int) -> np.ndarray:
    """The sum of two maps, ``None`` being the identity of size ``n``."""
    return (np.eye(n) if a is None else a) + (np.eye(n) if b is None else b)


def from_nir(graph, dt: float, *, approximate: bool = False) -> Network:
    """The :class:`~asyncsnn.Network` of a NIR graph (or the path of a NIR file) for frames of
    ``dt`` (seconds): see the module docstring for what maps to what. Populations follow the
    graph's neuron nodes in order; the output is the neuron node that feeds the ``Output`` node.
    Feed the network :func:`with_bias_channel` frames when ``network.n_inputs`` is one more
    than the graph's input."""
    nir = _nir()
    dt = _check_dt(dt)
    if isinstance(graph, (str, os.PathLike)):
        graph = read(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise NetworkError(f"invalid NIR graph: expected a nir.NIRGraph or a file, got {type(graph).__name__}")
    nodes = dict(graph.nodes)
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind in _WHY_NOT:
            raise _err(name, f"{kind} is not supported: {_WHY_NOT[kind]}")
        if kind not in SUPPORTED and kind != "Identity":
            raise _err(name, f"{kind} is not supported; supported: {', '.join(SUPPORTED)}")
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise NetworkError(f"invalid NIR graph: edge ({a!r}, {b!r}) names no node {end!r}")
        preds[b].append(a)
        succs[a].append(b)
    inputs = [n for n, v in nodes.items() if type(v).__name__ == "Input"]
    outputs = [n for n, v in nodes.items() if type(v).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NetworkError(f"invalid NIR graph: needs one Input and one Output node, has {len(inputs)} and "
                           f"{len(outputs)}")
    in_name, out_name = inputs[0], outputs[0]
    for name in nodes:  # nothing is silently dropped
        if name != in_name and not preds[name]:
            raise _err(name, "receives no edge (every node must lie between the Input and the Output)")
        if name != out_name and not succs[name]:
            raise _err(name, "feeds no edge (every node must lie between the Input and the Output)")
    in_shape = _shape(nodes[in_name], "input_type")
    if in_shape is None:
        raise _err(in_name, "Input has no shape")
    m = int(np.prod(in_shape))
    sizes = _scalar_neuron_sizes(nodes, preds, in_name, m)
    neurons = {n: _Neuron(n, v, dt, approximate, sizes.get(n)) for n, v in nodes.items()
               if type(v).__name__ in _NEURONS}
    if not neurons:
        raise NetworkError("invalid NIR graph: no neuron node (LIF, IF, LI)")
    order = list(neurons)
    index = {n: k for k, n in enumerate(order)}
    sources = {in_name: (m, in_shape)} | {n: (neurons[n].size, neurons[n].shape) for n in order}

    # Each wire node's map from every source it is reached from, as dense (size, source size)
    # matrices, plus the bias current it adds; a lone convolution is kept as a convolution.
    memo: dict[str, tuple] = {}
    visiting: set[str] = set()

    def expand(name: str) -> tuple[dict, np.ndarray, tuple, Optional[tuple]]:
        """(maps source -> matrix, bias, output shape, conv) of the wire node ``name``."""
        if name in memo:
            return memo[name]
        if name in visiting:
            raise _err(name, "weight nodes form a loop without a neuron; the execution model cannot run it")
        visiting.add(name)
        node = nodes[name]
        kind = type(node).__name__
        if not preds[name]:
            raise _err(name, f"{kind} has no input")
        acc: dict[str, np.ndarray] = {}
        bias: Optional[np.ndarray] = None
        shape: Optional[tuple] = None
        lone: list = []
        for p in preds[name]:
            if p in sources:
                size, pshape = sources[p]
                part, b, s, conv = {p: None}, None, pshape, None  # None: the identity
            elif type(nodes[p]).__name__ in _WIRES:
                part, b, s, conv = expand(p)
            else:
                raise _err(p, f"{type(nodes[p]).__name__} cannot feed {name!r}")
            lone.append((part, b, conv))
            if shape is not None and s is not None and int(np.prod(s)) != int(np.prod(shape)):
                raise _err(name, f"inputs of sizes {int(np.prod(shape))} and {int(np.prod(s))} meet here")
            shape = s if shape is None else shape
            size_in = int(np.prod(s)) if s is not None else None
            for src, mat in part.items():
                rows = sources[src][0] if mat is None else mat.shape[0]
                if size_in is not None and rows != size_in:
                    raise _err(name, f"shape mismatch: {rows} values arrive where {size_in} were expected")
                acc[src] = mat if src not in acc else _plus(acc[src], mat, sources[src][0])
            if b is not None:
                bias = b if bias is None else bias + b
        n_in = int(np.prod(shape)) if shape is not None else None
        conv = None
        if kind in ("Flatten", "Identity"):
            out_shape = (n_in,) if kind == "Flatten" else shape
            op = None
            if len(lone) == 1 and lone[0][2] is not None and lone[0][1] is None:
                conv = lone[0][2]  # a convolution followed by a flatten stays a convolution
        elif kind == "Scale":
            s = _array(name, "scale", node.scale)
            if n_in is not None and s.size not in (1, n_in):
                raise _err(name, f"scale of {s.size} values on an input of {n_in}")
            op = np.diag(np.broadcast_to(s, (n_in,)) if n_in else s)
            out_shape = shape
        elif kind in ("Linear", "Affine"):
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 2 or not np.all(np.isfinite(w)):
                raise _err(name, f"weight: expected a finite 2-D matrix, got shape {w.shape}")
            if n_in is not None and w.shape[1] != n_in:
                raise _err(name, f"weight takes {w.shape[1]} inputs but receives {n_in}")
            op, out_shape = w, (w.shape[0],)
            if kind == "Affine":
                b = _array(name, "bias", node.bias)
                if b.size != w.shape[0]:
                    raise _err(name, f"bias of {b.size} values for {w.shape[0]} outputs")
        elif kind == "SumPool2d":
            op, out_shape = _pool_matrix(name, node, shape)
        else:  # Conv2d
            geom, k = _conv_geometry(name, node, shape)
            if n_in is not None and n_in != int(np.prod(geom.in_shape)):
                raise _err(name, f"input of {n_in} values for a convolution over {geom.in_shape}")
            rows, cols, kidx = geom.connections(k.shape)
            out_shape = geom.out_shape(k.shape)
            op = np.zeros((int(np.prod(out_shape)), int(np.prod(geom.in_shape))))
            np.add.at(op, (rows, cols), k.reshape(-1)[kidx])
            if len(acc) == 1 and all(v is None for v in lone[0][0].values()) and bias is None:
                conv = (geom, k)
        if op is not None:
            acc = {src: op if mat is None else op @ mat for src, mat in acc.items()}
            bias = None if bias is None else op @ bias
        if kind == "Affine":
            b = _array(name, "bias", node.bias)
            bias = b.copy() if bias is None else bias + b
        if kind == "Conv2d" and node.bias is not None:
            b = _array(name, "bias", node.bias)
            if np.any(b != 0):
                per = int(np.prod(out_shape[1:]))
                bb = np.repeat(b, per)
                bias = bb if bias is None else bias + bb  # (to the bias channel; the kernel stays a kernel)
        visiting.discard(name)
        memo[name] = (acc, bias, out_shape, conv)
        return memo[name]

    pops = [neurons[n].population() for n in order]
    dense: dict[tuple, np.ndarray] = {}
    convs: dict[tuple, tuple] = {}
    bias_of = [np.zeros(neurons[n].size) for n in order]
    for n in order:
        nk, k = neurons[n], index[n]
        scale = nk.gain * nk.norm  # per target neuron
        bias_of[k] += nk.leak_current * nk.norm
        for p in preds[n]:
            if p in sources:
                maps, bias, conv = {p: None}, None, None
            elif type(nodes[p]).__name__ in _WIRES:
                maps, bias, _, conv = expand(p)
            else:
                raise _err(n, f"receives from {type(nodes[p]).__name__} {p!r}")
            for src, mat in maps.items():
                rows = sources[src][0] if mat is None else mat.shape[0]
                if rows != nk.size:
                    raise _err(n, f"{rows} values arrive from {src!r} for {nk.size} neurons")
            if bias is not None:
                bias_of[k] += scale * bias
            if conv is not None and np.all(scale == scale[0]):
                (src,) = maps
                geom, kern = conv
                key = (src, n)
                if key not in convs and key not in dense:
                    convs[key] = (geom, kern * scale[0])
                    continue
            for src, mat in maps.items():
                key = (src, n)
                if key in convs:  # a second path between the same pair: everything dense
                    dense[key] = _conv_dense(*convs.pop(key), nk.size, sources[src][0])
                full = np.eye(nk.size) if mat is None else mat
                dense[key] = dense.get(key, 0) + scale[:, None] * full
    has_bias = any(np.any(b != 0) for b in bias_of)
    if has_bias:  # the bias channel widens the input past a convolution's input shape: dense
        for key in [k for k in convs if k[0] == in_name]:
            dense[key] = _conv_dense(*convs.pop(key), neurons[key[1]].size, m)
    n_inputs = m + int(has_bias)
    projs: list[Projection] = []
    for (src, n), mat in dense.items():
        if not np.all(np.isfinite(mat)):
            raise _err(n, f"weights from {src!r} are not finite after the conversion")
        w = mat.astype(np.float32)
        if src == in_name:
            if has_bias:
                w = np.concatenate([w, np.zeros((w.shape[0], 1), np.float32)], 1)
            projs.append(Projection("input", index[n], w))
        else:
            projs.append(Projection(index[src], index[n], w))
    for (src, n), (geom, kern) in convs.items():
        projs.append(Projection.conv2d("input" if src == in_name else index[src], index[n], kern.astype(np.float32),
                                       geom.in_shape, stride=geom.stride, padding=geom.padding))
    if has_bias:
        for n in order:
            b = bias_of[index[n]]
            if np.any(b != 0):  # sparse: only the bias channel's column exists (and trains)
                rows = np.flatnonzero(b)
                projs.append(Projection("input", index[n], rows=rows, cols=np.full(len(rows), m),
                                        values=b[rows].astype(np.float32), shape=(neurons[n].size, n_inputs)))
    feeders = [p for p in preds[out_name]]
    out_node = None
    while feeders:
        p = feeders.pop()
        if p in neurons:
            out_node = p
            break
        if type(nodes[p]).__name__ in ("Flatten", "Identity"):
            feeders.extend(preds[p])
    if out_node is None:
        raise _err(out_name, "Output must be fed by a neuron node (LIF, IF, LI)")
    us = dt * 1e6  # the network records whole microseconds
    net = Network(n_inputs, pops, projs, output=index[out_node],
                  dt=int(round(us)) if us >= 1 and abs(us - round(us)) < 1e-6 else None)
    net.to_native()  # validates
    return net


def with_bias_channel(frames: np.ndarray, network: Network, n_graph_inputs: int) -> np.ndarray:
    """Frames ``(B, T, M)`` of the graph's inputs with the bias channel appended (one event per
    frame) when ``network`` has one (``network.n_inputs == M + 1``)."""
    a = np.asarray(frames)
    if a.ndim != 3 or a.shape[2] != n_graph_inputs:
        raise ValueError(f"frames: expected (batch, frames, {n_graph_inputs}), got shape {a.shape}")
    if network.n_inputs == n_graph_inputs:
        return a
    if network.n_inputs != n_graph_inputs + 1:
        raise ValueError(f"network: {network.n_inputs} inputs for a graph of {n_graph_inputs}")
    return append_bias_channel(a)


def to_nir(network: Network, dt: float, *, bias_channel: bool = False):
    """The NIR graph of ``network`` for frames of ``dt`` seconds (see the module docstring).

    ``bias_channel=True``: the network's last input channel is the bias channel (one event per
    frame, as :func:`asyncsnn.layers.to_network`, SPSN deployment and :func:`from_nir` make it);
    its weights are written as the biases of ``Affine`` nodes, as other tools expect, and the
    graph's input has one channel less."""
    nir = _nir()
    dt = _check_dt(dt)
    network.to_native()  # validates
    m_graph = network.n_inputs - int(bias_channel)
    if bias_channel and m_graph < 1:
        raise NetworkError("bias_channel: the network has no input channel besides a bias channel")
    shapes: dict[Any, tuple] = {}
    for j, pr in enumerate(network.projections):
        if pr.conv is None:
            continue
        src = "input" if pr.source == "input" else network._pop_index(pr.source, "source")
        tgt = network._pop_index(pr.target, "target")
        for key, shape in ((src, tuple(pr.conv.in_shape)), (tgt, pr.conv.out_shape(np.shape(pr.weights)))):
            if shapes.setdefault(key, shape) != shape:
                raise NetworkError(f"projections[{j}]: population {key} is seen as {shapes[key]} and as {shape} by "
                                   "convolutions; NIR gives a node one shape")
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    in_shape = shapes.get("input", (m_graph,))
    if bias_channel and "input" in shapes:
        raise NetworkError("bias_channel: a convolution reads the input, which then has no room for a bias channel")
    nodes["input"] = nir.Input(input_type={"input": np.array(in_shape)})
    names = []
    for k, p in enumerate(network.populations):
        shape = shapes.get(k, (p.size,))
        # float64: tau = dt / (1 - beta) read back gives beta to within 1e-16, and so the same float32
        one = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
        meta = {"asyncsnn_refractory": int(p.refractory), "asyncsnn_name": p.name or f"pop{k}"}
        name = f"pop{k}"
        if p.kind == "stochastic":
            raise NetworkError(f"populations[{k}]: stochastic (SPSN) neurons have no NIR counterpart")
        if p.kind == "integrator":
            if p.alpha != 0:
                raise NetworkError(f"populations[{k}]: an integrator with a synaptic trace (alpha = {p.alpha}) would "
                                   "be CubaLI, which the chip's LIF path cannot read back; alpha must be 0")
            tau = dt / (1.0 - float(p.beta)) if p.beta < 1 else None
            if tau is None:
                raise NetworkError(f"populations[{k}]: an integrator without leak (beta = 1) has no NIR LI counterpart")
            nodes[name] = nir.LI(tau=one(tau), r=one(tau / dt), v_leak=one(0.0), metadata=meta)
        else:
            if p.reset != "zero":
                raise NetworkError(f"populations[{k}].reset: {p.reset!r} has no NIR counterpart (NIR neurons reset to "
                                   "v_reset); only 'zero' exports")
            if p.beta < 1:
                tau = dt / (1.0 - float(p.beta))
                nodes[name] = nir.LIF(tau=one(tau), r=one(tau / dt), v_leak=one(0.0), v_threshold=one(p.theta),
                                      v_reset=one(0.0), metadata=meta)
            else:
                nodes[name] = nir.IF(r=one(1.0 / dt), v_threshold=one(p.theta), v_reset=one(0.0), metadata=meta)
        names.append(name)

    def src_name(ref) -> tuple[str, tuple]:
        if ref == "input":
            return "input", in_shape
        k = network._pop_index(ref, "source")
        return names[k], shapes.get(k, (network.populations[k].size,))

    biases: dict[int, np.ndarray] = {}
    linear_into: dict[int, list[tuple[str, bool]]] = defaultdict(list)  # (node, carries only a bias)
    for j, pr in enumerate(network.projections):
        s, s_shape = src_name(pr.source)
        t = names[network._pop_index(pr.target, "target")]
        w = f"w{j}"
        if pr.conv is not None:
            k = np.asarray(pr.weights, np.float32)
            nodes[w] = nir.Conv2d(input_shape=tuple(pr.conv.in_shape[1:]), weight=k,
                                  stride=(pr.conv.stride, pr.conv.stride), padding=(pr.conv.padding, pr.conv.padding),
                                  dilation=(1, 1), groups=1, bias=np.zeros(k.shape[0], np.float32))
            t_shape = shapes.get(network._pop_index(pr.target, "target"))
            if t_shape is None:  # a convolution into an unshaped population: flatten its output
                nodes[w + "_flat"] = nir.Flatten(input_type={"input": np.array(pr.conv.out_shape(k.shape))},
                                                 start_dim=0)
                edges += [(s, w), (w, w + "_flat"), (w + "_flat", t)]
            else:
                edges += [(s, w), (w, t)]
            continue
        dense = np.zeros(pr.shape if pr.weights is None else np.shape(pr.weights), np.float32)
        if pr.weights is not None:
            dense = np.asarray(pr.weights, np.float32)
        else:
            rows, cols, vals = pr.triples()
            np.add.at(dense, (rows, cols), np.asarray(vals, np.float32))
        t_k = network._pop_index(pr.target, "target")
        bias_only = False
        if bias_channel and s == "input":
            b = dense[:, -1].astype(np.float64)
            biases[t_k] = biases.get(t_k, np.zeros(len(b))) + b
            dense = np.ascontiguousarray(dense[:, :-1])
            bias_only = not np.any(dense)
        nodes[w] = nir.Linear(weight=dense)
        linear_into[t_k].append((w, bias_only))
        if len(s_shape) > 1:  # a shaped population into a dense projection: flatten first
            nodes[w + "_in"] = nir.Flatten(input_type={"input": np.array(s_shape)}, start_dim=0)
            edges += [(s, w + "_in"), (w + "_in", w)]
        else:
            edges.append((s, w))
        if t_k in shapes:
            raise NetworkError(f"projections[{j}]: a dense projection into population {t_k}, which convolutions see "
                               f"as {shapes[t_k]}; NIR has no reshape")
        edges.append((w, t))
    for t_k, b in biases.items():  # each population's bias on one Affine node into it
        into = linear_into[t_k]
        carriers = [w for w, only in into if not only] or [into[0][0]]
        for w, only in into:
            if only and w != carriers[0]:  # a projection that carried nothing but the bias
                del nodes[w]
                edges = [e for e in edges if w not in e]
        if np.any(b != 0):
            nodes[carriers[0]] = nir.Affine(weight=nodes[carriers[0]].weight, bias=b.astype(np.float32))
    o = network.output_index
    nodes["output"] = nir.Output(output_type={"output": np.array(shapes.get(o, (network.populations[o].size,)))})
    edges.append((names[o], "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"asyncsnn_dt": float(dt)}, type_check=False)


__all__ = ["SUPPORTED", "from_nir", "read", "to_nir", "with_bias_channel", "write"]
