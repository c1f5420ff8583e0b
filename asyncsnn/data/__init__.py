"""Datasets: real recordings through tonic and embedded generated ones.

>>> from asyncsnn import data
>>> splits = data.load("manifold", dt=2000, n_classes=4, train_per_class=10, test_per_class=5)
>>> x, y = splits.train[0]
>>> x.shape          # (frames, channels)
(50, 100)

``load(name, ...)`` returns :class:`Splits` with ``train`` and ``test``: dense frames
(:class:`FrameDataset`, ``(frames, channels)`` float32 counts) when ``dt`` is given, else event
streams (:class:`EventDataset`, structured arrays with ``t`` in microseconds and ``c`` the
channel). Batch frames of different lengths with :func:`collate`.
"""

from __future__ import annotations

from ..extras import require

require("torch", "data", "asyncsnn.data (datasets)")

import dataclasses  # noqa: E402
import inspect  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional  # noqa: E402

from .base import (  # noqa: E402
    EVENT_DTYPE,
    DatasetInfo,
    DatasetNotFoundError,
    EventDataset,
    FrameDataset,
    SparseFrames,
    Splits,
    bin_events,
    channel_of,
    collate,
    data_root,
    make_events,
    to_arrays,
)
from .generated import DigitsConfig, DigitsDataset, ManifoldConfig, ManifoldDataset  # noqa: E402
from .speech import SpokenDigitsConfig, ToolNotFoundError, spoken_digits  # noqa: E402
from .tonic_sets import SOURCES, dvsgesture, nmnist, shd  # noqa: E402

GENERATED = ("manifold", "digits")
# Made once by `asyncsnn datasets generate NAME` into files under the data root, then loaded
# from them (a tool chain too slow to run at every load).
SYNTHESIZED = ("spoken-digits",)
RECORDED = ("nmnist", "shd", "dvsgesture")
NAMES = GENERATED + SYNTHESIZED + RECORDED


def _events(name: str, split: str, root: Path, options: dict[str, Any]) -> EventDataset:
    if name == "manifold":
        return ManifoldDataset(_config(ManifoldConfig, name, options), split)
    if name == "digits":
        return DigitsDataset(_config(DigitsConfig, name, options), split)
    loader = {"nmnist": nmnist, "shd": shd, "dvsgesture": dvsgesture, "spoken-digits": spoken_digits}[name]
    allowed = [p for p in inspect.signature(loader).parameters if p not in ("root", "split", "made_with")]
    if name == "spoken-digits":
        allowed += [f.name for f in dataclasses.fields(SpokenDigitsConfig)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; allowed: {allowed}")
    return loader(root, split, **options)


def _config(cls, name: str, options: dict[str, Any]):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(options) - fields
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    return cls(**options)


def load(
    name: str,
    *,
    dt: Optional[int] = None,
    n_frames: Optional[int] = None,
    data_dir: Optional[str | Path] = None,
    cache: bool = True,
    progress: bool = True,
    **options: Any,
) -> Splits:
    """Train and test splits of dataset ``name`` (one of :data:`NAMES`).

    ``dt`` (microseconds) bins events into frames; ``n_frames`` fixes the number of frames;
    ``data_dir`` is the data root (default ``$ASYNCSNN_DATA_DIR`` or ``./datasets``), where
    recorded datasets live and binned frames are cached, sparse and memory-mapped (``cache=False``
    to bin each sample when it is read; ``progress=False`` hides the progress of building the
    cache). Other keyword
    options go to the dataset: generated datasets take the fields of :class:`ManifoldConfig` /
    :class:`DigitsConfig`; ``nmnist`` takes ``first_saccade_only``, ``denoise_us``,
    ``downsample``; ``dvsgesture`` takes ``downsample`` (default 0.25) and ``denoise_us``;
    all recorded ones take ``download=True`` to let tonic fetch missing files. ``spoken-digits``
    (made by ``asyncsnn datasets generate spoken-digits``, see :mod:`asyncsnn.data.speech`)
    takes ``folder`` (default ``<data root>/spoken-digits``) and the fields of
    :class:`SpokenDigitsConfig` it must have been made with.
    """
    if name not in NAMES:
        raise ValueError(f"dataset {name!r} is unknown; available: {', '.join(NAMES)}")
    root = data_root(data_dir)
    train = _events(name, "train", root, dict(options))
    test = _events(name, "test", root, dict(options))
    if dt is None:
        return Splits(train, test)
    cache_dir = root / "cache" if cache else None
    return Splits(FrameDataset(train, int(dt), n_frames, cache_dir, progress),
                  FrameDataset(test, int(dt), n_frames, cache_dir, progress))


__all__ = [
    "EVENT_DTYPE", "DatasetInfo", "DatasetNotFoundError", "DigitsConfig", "DigitsDataset", "EventDataset",
    "FrameDataset", "GENERATED", "ManifoldConfig", "ManifoldDataset", "NAMES", "RECORDED", "SOURCES", "SYNTHESIZED",
    "SparseFrames", "SpokenDigitsConfig", "Splits", "ToolNotFoundError",
    "bin_events", "channel_of", "collate", "data_root", "load", "make_events", "to_arrays",
]
