"""Event datasets, binning into frames, caching, batching.

Every dataset gives samples as *event streams*: a structured array with fields ``t`` (integer
microseconds, sorted) and ``c`` (channel index in ``0..n_channels``), plus an integer label.
:class:`FrameDataset` bins them into dense frames ``(frames, channels)`` of ``dt``
microseconds, ready for the simulators and the emulator, and caches the result on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

EVENT_DTYPE = np.dtype([("t", np.int64), ("c", np.int64)])


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says where to get them and where to put them."""


def data_root(data_dir: Optional[str | os.PathLike] = None) -> Path:
    """The data root: ``data_dir``, else ``$ASYNCSNN_DATA_DIR``, else ``./datasets``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("ASYNCSNN_DATA_DIR")
    return Path(env).expanduser() if env else Path.cwd() / "datasets"


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: sizes, classes, the sensor, where it comes from."""

    name: str
    n_channels: int
    n_classes: int
    classes: tuple[str, ...]
    sensor_size: tuple[int, ...]
    duration_us: int
    source: str = ""
    license: str = ""


def channel_of(events: np.ndarray, sensor_size: Sequence[int]) -> np.ndarray:
    """Sensor-to-channel mapping. For an ``(W, H, P)`` sensor with fields ``x``, ``y``, ``p``
    the channel is ``(p * H + y) * W + x`` (C order of ``(P, H, W)``); a sensor without ``y``
    or ``p`` fields uses ``x`` alone (e.g. SHD's 700 cochlea channels)."""
    names = events.dtype.names or ()
    w = int(sensor_size[0])
    h = int(sensor_size[1]) if len(sensor_size) > 1 else 1
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64) if "y" in names and h > 1 else np.zeros_like(x)
    p = events["p"].astype(np.int64) if "p" in names and len(sensor_size) > 2 and sensor_size[2] > 1 \
        else np.zeros_like(x)
    return (p * h + y) * w + x


def make_events(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    """A sorted event stream from times (us) and channels."""
    ev = np.empty(len(t), EVENT_DTYPE)
    ev["t"] = np.asarray(t, np.int64)
    ev["c"] = np.asarray(c, np.int64)
    return ev[np.argsort(ev["t"], kind="stable")]


def bin_events(events: np.ndarray, n_channels: int, dt: int, n_frames: Optional[int] = None) -> np.ndarray:
    """Event counts ``(frames, channels)`` as float32: frame of an event is ``t // dt``.
    With ``n_frames`` events past the last frame are dropped (the sample is cut there)."""
    if dt <= 0:
        raise ValueError(f"dt: {dt} is outside 1.. (microseconds)")
    t = events["t"].astype(np.int64)
    c = events["c"].astype(np.int64)
    if len(t) and (t.min() < 0 or c.min() < 0 or c.max() >= n_channels):
        raise ValueError(f"events: times must be >= 0 and channels in 0..{n_channels}")
    f = t // dt
    total = int(f.max()) + 1 if len(f) else 0
    n = total if n_frames is None else int(n_frames)
    keep = f < n
    out = np.zeros((n, n_channels), np.float32)
    np.add.at(out, (f[keep], c[keep]), 1.0)
    return out


class EventDataset(torch.utils.data.Dataset):
    """A split of a dataset as event streams: ``ds[i] -> (events, label)``."""

    info: DatasetInfo
    split: str

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:  # pragma: no cover - interface
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        return np.array([self[i][1] for i in range(len(self))], np.int64)

    def cache_key(self) -> str:
        """What identifies this split's content (for the frame cache)."""
        return f"{self.info.name}-{self.split}"

    def stats(self, progress: bool = False) -> dict:
        """Samples, events per sample, duration, class counts (``progress``: a bar over the
        samples, which a generated dataset makes as it goes)."""
        from ..progress import progress as progress_bar

        n_ev, dur = [], []
        for i in progress_bar(range(len(self)), desc=f"{self.info.name} {self.split}", enabled=progress):
            ev, _ = self[i]
            n_ev.append(len(ev))
            dur.append(int(ev["t"].max()) + 1 if len(ev) else 0)
        counts = np.bincount(self.labels(), minlength=self.info.n_classes)
        return {
            "dataset": self.info.name,
            "split": self.split,
            "samples": len(self),
            "channels": self.info.n_channels,
            "classes": self.info.n_classes,
            "events_per_sample_mean": float(np.mean(n_ev)) if n_ev else 0.0,
            "events_per_sample_max": int(np.max(n_ev)) if n_ev else 0,
            "duration_us_mean": float(np.mean(dur)) if dur else 0.0,
            "class_counts": counts.tolist(),
        }


class SparseFrames:
    """Binned samples stored sparsely: for sample ``i``, the flat indices ``frame * C + channel``
    of its non-zero bins and their event counts, in files that are memory-mapped (``.npy``), so
    that a split of any size costs the memory of the samples in use, not a dense array.

    ``index`` (int32, int64 past 2^31 bins a sample) and ``counts`` (uint16, uint32 past 65 535
    events a bin) hold every sample's bins one after another;
    ``offsets`` ``(N + 1,)`` says where each sample's start; ``lengths`` ``(N,)`` its frames;
    ``labels`` ``(N,)``."""

    FILES = ("index", "counts", "offsets", "lengths", "labels")

    def __init__(self, n_channels: int, **arrays: np.ndarray) -> None:
        self.n_channels = int(n_channels)
        for name in self.FILES:
            setattr(self, name, arrays[name])

    def __len__(self) -> int:
        return len(self.lengths)

    def dense(self, i: int) -> np.ndarray:
        """Sample ``i`` as dense float32 frames ``(frames, channels)``."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        out = np.zeros(int(self.lengths[i]) * self.n_channels, np.float32)
        out[np.asarray(self.index[a:b])] = np.asarray(self.counts[a:b], np.float32)
        return out.reshape(int(self.lengths[i]), self.n_channels)

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, name).nbytes) for name in self.FILES)

    @classmethod
    def build(cls, samples, n_channels: int) -> "SparseFrames":
        """From ``(dense frames, label)`` pairs, one at a time (only the sparse form is kept)."""
        idx, cnt, lengths, labels = [], [], [], []
        for x, y in samples:
            flat = x.reshape(-1)
            nz = np.flatnonzero(flat)
            idx.append(nz.astype(np.int64))
            cnt.append(flat[nz].astype(np.uint32))
            lengths.append(x.shape[0])
            labels.append(int(y))
        offsets = np.concatenate([[0], np.cumsum([len(i) for i in idx], dtype=np.int64)]).astype(np.int64)
        # the narrowest types that hold them: 6 bytes per non-zero bin in practice
        wide_index = max((int(i[-1]) for i in idx if len(i)), default=0) >= 2**31
        wide_count = max((int(c.max()) for c in cnt if len(c)), default=0) >= 2**16
        cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
        return cls(n_channels, index=cat(idx, np.int64 if wide_index else np.int32),
                   counts=cat(cnt, np.uint32 if wide_count else np.uint16), offsets=offsets,
                   lengths=np.asarray(lengths, np.int64), labels=np.asarray(labels, np.int64))

    def save(self, folder: Path) -> None:
        """Into ``folder`` (written next to it, then renamed: readers never see half a cache)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        # a new folder of this process's own (a random name, created exclusively): two processes
        # building the same cache never collide, and a planted path is never followed
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        for name in self.FILES:
            np.save(tmp / f"{name}.npy", getattr(self, name), allow_pickle=False)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same cache first: keep theirs
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()

    @classmethod
    def load(cls, folder: Path, n_channels: int) -> "SparseFrames":
        return cls(n_channels, **{name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                                  for name in cls.FILES})


@dataclass
class FrameDataset(torch.utils.data.Dataset):
    """Dense frames of an event dataset: ``ds[i] -> (frames float32 (T, C), label)``.

    ``dt`` is the frame length in microseconds; ``n_frames`` fixes the length (cut or pad),
    else each sample has as many frames as its events need. Samples are binned when asked for;
    with ``cache_dir`` the binned split is stored once, sparsely (:class:`SparseFrames`), and
    read back memory-mapped: a sample is made dense only when it is used, so memory does not
    grow with the split. Building the cache shows progress (``progress=False`` to hide it).
    """

    events: EventDataset
    dt: int
    n_frames: Optional[int] = None
    cache_dir: Optional[Path] = None
    progress: bool = True
    _store: Optional[SparseFrames] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.dt <= 0:
            raise ValueError(f"dt: {self.dt} is outside 1.. (microseconds)")
        if self.cache_dir is not None:
            self._load_or_build_cache()

    @property
    def info(self) -> DatasetInfo:
        return self.events.info

    def __len__(self) -> int:
        return len(self.events)

    def _bin(self, i: int) -> tuple[np.ndarray, int]:
        ev, y = self.events[i]
        x = bin_events(ev, self.info.n_channels, self.dt, self.n_frames)
        return x, int(y)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if self._store is not None:
            if not -len(self) <= index < len(self):
                raise IndexError(f"index: {index} is outside 0..{len(self)}")
            index = index % len(self)
            return self._store.dense(index), int(self._store.labels[index])
        return self._bin(index)

    def labels(self) -> np.ndarray:
        if self._store is not None:
            return np.asarray(self._store.labels, np.int64)
        return self.events.labels()

    def _cache_path(self) -> Path:
        # the name holds no option value (only the dataset's own name and a digest), so an
        # option such as "../x" can never place the cache outside its folder
        key = json.dumps({"split": self.events.cache_key(), "dt": self.dt, "n_frames": self.n_frames,
                          "info": asdict(self.info)}, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        name = "".join(ch for ch in f"{self.info.name}-{self.events.split}" if ch.isalnum() or ch in "-_") or "data"
        folder = Path(self.cache_dir)
        path = folder / f"{name}-dt{int(self.dt)}-{digest}.frames"
        if path.resolve().parent != folder.resolve():  # (a name that still escapes is refused)
            raise ValueError(f"frame cache: {path} is not inside {folder}")
        return path

    def _load_or_build_cache(self) -> None:
        from ..progress import progress

        path = self._cache_path()
        if not path.is_dir():
            samples = progress((self._bin(i) for i in range(len(self.events))), total=len(self.events),
                               desc=f"binning {self.events.cache_key()} into frames of {self.dt} us",
                               enabled=self.progress)
            SparseFrames.build(samples, self.info.n_channels).save(path)
        self._store = SparseFrames.load(path, self.info.n_channels)
        if len(self._store) != len(self.events):
            raise ValueError(f"frame cache {path}: holds {len(self._store)} samples where the dataset has "
                             f"{len(self.events)}; delete the folder to rebuild it")

    def __getstate__(self) -> dict:
        # the memory-mapped cache is opened again where the dataset is unpickled (a DataLoader
        # worker), rather than copied into the pickle
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.cache_dir is not None and self._cache_path().is_dir():
            self._store = SparseFrames.load(self._cache_path(), self.info.n_channels)


def collate(batch: Sequence[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch samples of different lengths: frames zero-padded at the end to the longest,
    ``(x (B, T, C) float32, labels (B,) int64, lengths (B,) int64)``."""
    if len(batch) == 0:
        raise ValueError("collate: empty batch")
    lengths = [int(np.asarray(x).shape[0]) for x, _ in batch]
    t_max = max(lengths)
    c = int(np.asarray(batch[0][0]).shape[1])
    out = torch.zeros((len(batch), t_max, c), dtype=torch.float32)
    for i, (x, _) in enumerate(batch):
        out[i, : lengths[i]] = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    labels = torch.tensor([int(y) for _, y in batch], dtype=torch.int64)
    return out, labels, torch.tensor(lengths, dtype=torch.int64)


def to_arrays(dataset: torch.utils.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sample of a frame dataset (or a ``Subset`` of one) as one padded batch
    ``(x (N, T, C), labels (N,), lengths (N,))``."""
    x, y, n = collate([dataset[i] for i in range(len(dataset))])  # type: ignore[arg-type]
    return x.numpy(), y.numpy(), n.numpy()


@dataclass
class Splits:
    """Train and test splits of one dataset."""

    train: torch.utils.data.Dataset
    test: torch.utils.data.Dataset

    @property
    def info(self) -> DatasetInfo:
        return self.train.info  # type: ignore[attr-defined]


Transform = Callable[[np.ndarray], np.ndarray]
