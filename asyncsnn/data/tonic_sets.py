"""N-MNIST, SHD and DVS Gesture through tonic's own loaders.

The files are read by tonic's dataset classes (file discovery, binary/HDF5/npy parsing, labels);
this module only decides where they live, checks that they are there (with a message naming the
URL and the folder when they are not), maps sensor coordinates to channels, and applies tonic
transforms (denoising, spatial downsampling, first saccade only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from ..extras import require
from .base import DatasetInfo, DatasetNotFoundError, EventDataset, channel_of, make_events

# Where each dataset's files come from and how they must be laid out under the data root.
SOURCES = {
    "nmnist": {
        "title": "N-MNIST",
        "url": "https://www.garrickorchard.com/datasets/n-mnist",
        "files": {
            "train": ("NMNIST/train.zip", "extract it so that NMNIST/Train/<digit>/<id>.bin exist"),
            "test": ("NMNIST/test.zip", "extract it so that NMNIST/Test/<digit>/<id>.bin exist"),
        },
        "license": "CC BY-SA 4.0",
    },
    "shd": {
        "title": "Spiking Heidelberg Digits (SHD)",
        "url": "https://zenkelab.org/datasets/",
        "files": {
            "train": ("SHD/shd_train.h5.zip", "unzip it to SHD/shd_train.h5"),
            "test": ("SHD/shd_test.h5.zip", "unzip it to SHD/shd_test.h5"),
        },
        "license": "CC BY 4.0",
    },
    "dvsgesture": {
        "title": "IBM DVS Gesture (tonic's preprocessed version)",
        "url": "https://figshare.com/ndownloader/files/38022171 (train), .../38020584 (test)",
        "files": {
            "train": ("DVSGesture/ibmGestureTrain.tar.gz",
                      "extract it so that DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy exist"),
            "test": ("DVSGesture/ibmGestureTest.tar.gz",
                     "extract it so that DVSGesture/ibmGestureTest/user<NN>_<lighting>/<label>.npy exist"),
        },
        "license": "CC BY 4.0",
    },
}


def _missing(name: str, split: str, root: Path) -> DatasetNotFoundError:
    src = SOURCES[name]
    archive, how = src["files"][split]
    return DatasetNotFoundError(
        f"{src['title']} ({split} split) is not in {root}. Download {Path(archive).name} from {src['url']} "
        f"into {root / Path(archive).parent}/ and {how} (relative to {root}); or pass download=True "
        f"to let tonic fetch it."
    )


def _offline(base: type, name: str, split: str, root: Path, present) -> type:
    """A subclass of a tonic dataset with tonic's reading code, whose presence check is `present`
    (the extracted files, without the archive) and which raises a clear error instead of
    downloading. It keeps the class name, since tonic derives the folder from it."""

    def _check_exists(self) -> bool:
        return present(Path(self.location_on_system))

    def download(self) -> None:
        raise _missing(name, split, root)

    return type(base.__name__, (base,), {"_check_exists": _check_exists, "download": download})


class TonicDataset(EventDataset):
    """One split of a tonic dataset as event streams ``(t us, channel)``."""

    def __init__(self, tonic_ds, info: DatasetInfo, split: str, sensor_size, key: str) -> None:
        self.ds = tonic_ds
        self.info = info
        self.split = split
        self._sensor = sensor_size
        self._key = key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        ev, y = self.ds[index]
        self._check(index, ev, y)
        return make_events(ev["t"], channel_of(ev, self._sensor)), int(y)

    def _check(self, index: int, ev: np.ndarray, y) -> None:
        """A recorded file is untrusted: an event outside the sensor would land on another
        channel (or none), and a label outside the classes would fail far from its file."""
        where = f"{self.info.name} ({self.split} split) sample {index}"
        names = ev.dtype.names or ()
        w = int(self._sensor[0])
        h = int(self._sensor[1]) if len(self._sensor) > 1 else 1
        p = int(self._sensor[2]) if len(self._sensor) > 2 else 1
        for field, size in (("x", w), ("y", h), ("p", p)):
            if field in names and len(ev) and (field == "x" or size > 1):
                lo, hi = int(ev[field].min()), int(ev[field].max())
                if lo < 0 or hi >= size:
                    raise InputError(f"invalid input: {where}: event {field} = {lo if lo < 0 else hi} is outside "
                                     f"0..{size - 1} (sensor {' x '.join(map(str, self._sensor))}); the file is "
                                     "damaged or not of this dataset")
        if len(ev) and ev["t"].min() < 0:
            raise InputError(f"invalid input: {where}: event time {int(ev['t'].min())} is negative")
        if not 0 <= int(y) < self.info.n_classes:
            raise InputError(f"invalid input: {where}: label {int(y)} is outside 0..{self.info.n_classes - 1}")

    def labels(self) -> np.ndarray:
        targets = getattr(self.ds, "targets", None)
        if targets is not None and len(targets) == len(self):
            return np.asarray(targets, np.int64)
        return super().labels()

    def cache_key(self) -> str:
        """The options and a fingerprint of the files read (their number, sizes and modification
        times), so that changed or added files make a new frame cache instead of a stale one."""
        return f"{self._key}-src{source_fingerprint(Path(getattr(self.ds, 'location_on_system', '.')))}"


def source_fingerprint(folder: Path) -> str:
    """A digest of every file under ``folder``: relative path, size and modification time."""
    import hashlib

    h = hashlib.sha256()
    if folder.is_file():
        st = folder.stat()
        h.update(f"{folder.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _transforms(sensor_size, denoise_us: Optional[int], downsample: Optional[float]):
    T = require("tonic.transforms", "data", "the recorded datasets")

    steps = []
    if denoise_us:
        steps.append(T.Denoise(filter_time=int(denoise_us)))
    out_size = tuple(sensor_size)
    if downsample and downsample != 1:
        steps.append(T.Downsample(spatial_factor=float(downsample)))
        out_size = (int(sensor_size[0] * downsample), int(sensor_size[1] * downsample), sensor_size[2])
    return (T.Compose(steps) if steps else None), out_size


def nmnist(root: Path, split: str, *, download: bool = False, first_saccade_only: bool = False,
           denoise_us: Optional[int] = None, downsample: Optional[float] = None) -> TonicDataset:
    """N-MNIST: 34 x 34 x 2 sensor (2312 channels), 10 classes, about 300 ms per sample."""
    tonic = require("tonic", "data", "the recorded datasets")

    base = tonic.datasets.NMNIST
    folder = "Train" if split == "train" else "Test"
    cls = base if download else _offline(base, "nmnist", split, root,
                                         lambda loc: any((loc / folder).glob("*/*.bin")))
    transform, size = _transforms(base.sensor_size, denoise_us, downsample)
    try:
        ds = cls(str(root), train=split == "train", first_saccade_only=first_saccade_only, transform=transform)
    except ValueError as e:  # tonic reads the label from the last character of the folder name
        raise InputError(f"invalid input: nmnist ({split} split): a .bin file under {root / 'NMNIST' / folder} is "
                         f"not in a folder named 0..9 ({e}); the layout is NMNIST/{folder}/<digit>/<id>.bin") from e
    stray = [f for f in getattr(ds, "data", []) if Path(f).parent.name not in tuple("0123456789")]
    if stray:
        raise InputError(f"invalid input: nmnist ({split} split): {stray[0]} is not in a folder named 0..9 "
                         f"(tonic would label it {Path(stray[0]).parent.name[-1]!r}); the layout is "
                         f"NMNIST/{folder}/<digit>/<id>.bin")
    info = DatasetInfo("nmnist", int(np.prod(size)), 10, tuple(base.classes), tuple(size), 300_000,
                       SOURCES["nmnist"]["url"], SOURCES["nmnist"]["license"])
    key = f"nmnist-{split}-fs{int(first_saccade_only)}-dn{denoise_us}-ds{downsample}"
    return TonicDataset(ds, info, split, size, key)


def shd(root: Path, split: str, *, download: bool = False) -> TonicDataset:
    """SHD: 700 cochlea channels, 20 classes (digits 0-9 in English and German), about 1 s."""
    tonic = require("tonic", "data", "the recorded datasets")

    info = DatasetInfo("shd", 700, 20, (), tuple(tonic.datasets.SHD.sensor_size), 1_000_000,
                       SOURCES["shd"]["url"], SOURCES["shd"]["license"])
    return hsd_split(root, split, info, f"shd-{split}", download=download)


def hsd_split(root: Path, split: str, info: DatasetInfo, key: str, *, download: bool = False) -> TonicDataset:
    """One split of an SHD-format folder (``root/SHD/shd_<split>.h5``) through tonic's SHD
    class; ``info`` names the dataset (its classes are read from the file's ``extra/keys``)."""
    tonic = require("tonic", "data", "the recorded datasets")

    base = tonic.datasets.SHD
    fname = f"shd_{split}.h5"
    cls = base if download else _offline(base, "shd", split, root, lambda loc: (loc / fname).is_file())
    ds = cls(str(root), train=split == "train")
    classes = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in ds.classes)
    info = DatasetInfo(info.name, info.n_channels, info.n_classes, classes, info.sensor_size, info.duration_us,
                       info.source, info.license)
    return TonicDataset(ds, info, split, (info.n_channels, 1, 1), key)


def dvsgesture(root: Path, split: str, *, download: bool = False, downsample: float = 0.25,
               denoise_us: Optional[int] = None) -> TonicDataset:
    """DVS Gesture: 128 x 128 x 2 sensor, spatially downsampled (default 4x to 32 x 32 x 2,
    2048 channels), 11 classes, about 6 s per sample."""
    tonic = require("tonic", "data", "the recorded datasets")

    base = tonic.datasets.DVSGesture
    folder = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
    cls = base if download else _offline(base, "dvsgesture", split, root,
                                         lambda loc: any((loc / folder).glob("*/*.npy")))
    transform, size = _transforms(base.sensor_size, denoise_us, downsample)
    ds = cls(str(root), train=split == "train", transform=transform)
    info = DatasetInfo("dvsgesture", int(np.prod(size)), 11, tuple(base.classes), tuple(size), 6_000_000,
                       SOURCES["dvsgesture"]["url"], SOURCES["dvsgesture"]["license"])
    return TonicDataset(ds, info, split, size, f"dvsgesture-{split}-ds{downsample}-dn{denoise_us}")
