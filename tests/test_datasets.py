"""Datasets: the real tonic loaders on tiny files in each dataset's exact on-disk format, the
generated datasets, binning, caching, batching, and the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from asyncsnn import data
from asyncsnn.cli import main
from asyncsnn.errors import InputError
from helpers import markdown_rows


# ----------------------------------------------------------------------------- recorded datasets
def write_nmnist_bin(path, events):
    """N-MNIST's 40-bit records: x, y, then polarity (bit 23) and a 23-bit time in us."""
    raw = bytearray()
    for x, y, p, t in events:
        raw += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(raw))


NMNIST_EVENTS = {
    ("Train", 0): [(3, 4, 1, 10), (33, 0, 0, 250), (0, 33, 1, 170000)],
    ("Train", 7): [(5, 5, 0, 5), (6, 5, 1, 6)],
    ("Test", 1): [(1, 2, 1, 1000)],
}


@pytest.fixture
def nmnist_root(tmp_path):
    for (folder, digit), evs in NMNIST_EVENTS.items():
        write_nmnist_bin(tmp_path / "NMNIST" / folder / str(digit) / "00001.bin", evs)
    return tmp_path


def test_nmnist_through_tonic(nmnist_root):
    splits = data.load("nmnist", data_dir=nmnist_root)
    assert splits.info.n_channels == 2312 and splits.info.sensor_size == (34, 34, 2)
    assert len(splits.train) == 2 and len(splits.test) == 1
    labels = sorted(splits.train[i][1] for i in range(2))
    assert labels == [0, 7]
    for i in range(2):
        ev, y = splits.train[i]
        want = sorted(((p * 34 + yy) * 34 + x, t) for x, yy, p, t in NMNIST_EVENTS[("Train", y)])
        assert sorted(zip(ev["c"].tolist(), ev["t"].tolist())) == want
        assert np.all(np.diff(ev["t"]) >= 0)
    first = data.load("nmnist", data_dir=nmnist_root, first_saccade_only=True)
    ev0 = [first.train[i] for i in range(2) if first.train[i][1] == 0][0][0]
    assert ev0["t"].max() < 100_000 and len(ev0) == 2


def test_nmnist_frames_and_cache(nmnist_root):
    splits = data.load("nmnist", data_dir=nmnist_root, dt=1000)
    x, y = splits.test[0]
    assert x.shape == (2, 2312) and x[1, (1 * 34 + 2) * 34 + 1] == 1 and x.sum() == 1
    cached = list((nmnist_root / "cache").glob("nmnist-test*.frames"))
    assert len(cached) == 1
    again = data.load("nmnist", data_dir=nmnist_root, dt=1000)
    assert np.array_equal(again.test[0][0], x)


def write_shd_h5(path, times, units, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ft = h5py.vlen_dtype(np.dtype("float32"))
        ut = h5py.vlen_dtype(np.dtype("uint16"))
        st = f.create_dataset("spikes/times", (len(times),), dtype=ft)
        su = f.create_dataset("spikes/units", (len(units),), dtype=ut)
        for i, (t, u) in enumerate(zip(times, units)):
            st[i] = np.asarray(t, np.float32)
            su[i] = np.asarray(u, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"digit-{k}".encode() for k in range(20)]))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), np.uint16))


def test_shd_through_tonic(tmp_path):
    times = [[0.0, 0.5, 0.25], [0.125]]
    units = [[3, 699, 0], [42]]
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", times, units, [4, 19])
    write_shd_h5(tmp_path / "SHD" / "shd_test.h5", [[0.0625]], [[1]], [2])
    splits = data.load("shd", data_dir=tmp_path)
    assert splits.info.n_channels == 700 and splits.info.n_classes == 20
    assert splits.info.classes[19] == "digit-19"
    ev, y = splits.train[0]
    assert y == 4
    assert list(zip(ev["t"].tolist(), ev["c"].tolist())) == [(0, 3), (250_000, 0), (500_000, 699)]
    assert splits.test[0][1] == 2
    frames = data.load("shd", data_dir=tmp_path, dt=100_000, cache=False)
    x, _ = frames.train[0]
    assert x.shape == (6, 700) and x[0, 3] == 1 and x[2, 0] == 1 and x[5, 699] == 1


def test_dvsgesture_through_tonic(tmp_path):
    base = tmp_path / "DVSGesture"
    rec = {  # (folder, user dir, label): rows x, y, p, t (ms)
        ("ibmGestureTrain", "user01_fluorescent", 3): [[0, 0, 1, 0], [127, 127, 0, 5], [64, 8, 1, 9]],
        ("ibmGestureTrain", "user02_led", 10): [[12, 100, 0, 1]],
        ("ibmGestureTest", "user24_natural", 0): [[5, 6, 1, 2]],
    }
    for (folder, user, label), rows in rec.items():
        p = base / folder / user / f"{label}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, np.asarray(rows, np.int64))
    splits = data.load("dvsgesture", data_dir=tmp_path)  # default 4x spatial downsampling
    assert splits.info.sensor_size == (32, 32, 2) and splits.info.n_channels == 2048
    assert sorted(splits.train[i][1] for i in range(len(splits.train))) == [3, 10]
    ev = [splits.train[i][0] for i in range(2) if splits.train[i][1] == 3][0]
    want = sorted([(0, (1 * 32 + 0) * 32 + 0), (5000, (0 * 32 + 31) * 32 + 31), (9000, (1 * 32 + 2) * 32 + 16)])
    assert sorted(zip(ev["t"].tolist(), ev["c"].tolist())) == want
    full = data.load("dvsgesture", data_dir=tmp_path, downsample=1.0)
    assert full.info.n_channels == 128 * 128 * 2


@pytest.mark.parametrize("name, split, where", [
    ("nmnist", "train", "NMNIST/Train"),
    ("shd", "train", "shd_train.h5"),
    ("dvsgesture", "train", "ibmGestureTrain"),
])
def test_missing_files_name_the_url_and_folder(tmp_path, name, split, where):
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load(name, data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and where in msg and "http" in msg and f"{split} split" in msg
    assert isinstance(e.value, FileNotFoundError)


# ----------------------------------------------------------------------------- generated datasets
SMALL_MANIFOLD = dict(n_classes=4, train_per_class=30, test_per_class=15, n_channels=40, duration_us=50_000)


def test_manifold_deterministic_balanced_and_shaped():
    a = data.load("manifold", **SMALL_MANIFOLD, seed=3)
    b = data.load("manifold", **SMALL_MANIFOLD, seed=3)
    c = data.load("manifold", **SMALL_MANIFOLD, seed=4)
    for i in (0, 17, 119):
        assert np.array_equal(a.train[i][0], b.train[i][0])
    assert not np.array_equal(a.train[0][0], c.train[0][0])
    assert np.bincount(a.train.labels()).tolist() == [30] * 4
    assert np.bincount(a.test.labels()).tolist() == [15] * 4
    ev, _ = a.train[5]
    assert len(ev) == 40 and sorted(ev["c"].tolist()) == list(range(40))
    assert ev["t"].min() >= 0 and ev["t"].max() < 50_000
    # train and test points differ, on the same manifolds
    assert not np.array_equal(a.train[0][0], a.test[0][0])


def test_digits_deterministic_balanced_and_dvs_like():
    a = data.load("digits", seed=1)
    b = data.load("digits", seed=1)
    assert len(a.train) + len(a.test) == 1797
    assert np.array_equal(a.train[10][0], b.train[10][0])
    counts = np.bincount(a.train.labels(), minlength=10)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()
    ev, _ = a.train[0]
    assert a.info.sensor_size == (20, 20, 2) and a.info.n_channels == 800
    on = (ev["c"] >= 400).sum()
    assert 0 < on < len(ev)  # both polarities
    assert ev["t"].max() < 300_000
    noisy = data.load("digits", seed=1, noise_hz=50.0)
    assert len(noisy.train[0][0]) > len(ev)


def _fit_and_score(train, test, epochs=150):
    """A small network (one hidden layer) on binned frames; returns test accuracy."""
    xtr, ytr, _ = data.to_arrays(train)
    xte, yte, _ = data.to_arrays(test)
    t = max(xtr.shape[1], xte.shape[1])
    pad = lambda x: np.pad(x, ((0, 0), (0, t - x.shape[1]), (0, 0)))  # noqa: E731
    xtr, xte = torch.tensor(pad(xtr)).flatten(1), torch.tensor(pad(xte)).flatten(1)
    torch.manual_seed(0)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    net = torch.nn.Sequential(torch.nn.Linear(xtr.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, n_classes))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    y = torch.tensor(ytr)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xtr), y).backward()
        opt.step()
    return float((net(xte).argmax(1).numpy() == yte).mean())


def test_manifold_is_learnable():
    s = data.load("manifold", dt=5_000, cache=False, **SMALL_MANIFOLD)
    acc = _fit_and_score(s.train, s.test)
    assert acc > 0.6, acc  # chance is 0.25


def test_digits_are_learnable():
    s = data.load("digits", dt=50_000, cache=False)
    train = torch.utils.data.Subset(s.train, range(400))
    test = torch.utils.data.Subset(s.test, range(150))
    acc = _fit_and_score(train, test)
    assert acc > 0.5, acc  # chance is 0.1


# ----------------------------------------------------------------------------- binning and batching
def test_bin_events_and_collate():
    ev = data.make_events([5, 0, 2500, 999], [1, 0, 2, 1])
    x = data.bin_events(ev, 3, 1000)
    assert x.tolist() == [[1, 2, 0], [0, 0, 0], [0, 0, 1]]
    assert data.bin_events(ev, 3, 1000, n_frames=1).tolist() == [[1, 2, 0]]
    assert data.bin_events(ev, 3, 1000, n_frames=5).shape == (5, 3)
    with pytest.raises(ValueError, match="channels in 0..2"):
        data.bin_events(ev, 2, 1000)
    with pytest.raises(ValueError, match="dt"):
        data.bin_events(ev, 3, 0)
    xb, yb, nb = data.collate([(x, 1), (x[:1], 0)])
    assert xb.shape == (2, 3, 3) and yb.tolist() == [1, 0] and nb.tolist() == [3, 1]
    assert xb[1, 1:].abs().sum() == 0
    loader = torch.utils.data.DataLoader(data.load("manifold", dt=10_000, cache=False, **SMALL_MANIFOLD).train,
                                         batch_size=8, collate_fn=data.collate)
    xb, yb, nb = next(iter(loader))
    assert xb.shape[0] == 8 and xb.shape[2] == 40


def test_sensor_to_channel_mapping():
    ev = np.zeros(3, dtype=[("x", int), ("y", int), ("p", int), ("t", int)])
    ev["x"], ev["y"], ev["p"] = [0, 33, 2], [0, 1, 33], [0, 1, 1]
    assert data.channel_of(ev, (34, 34, 2)).tolist() == [0, (34 + 1) * 34 + 33, (34 + 33) * 34 + 2]
    audio = np.zeros(2, dtype=[("t", int), ("x", int), ("p", int)])
    audio["x"] = [5, 699]
    assert data.channel_of(audio, (700, 1, 1)).tolist() == [5, 699]


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="available"):
        data.load("cifar")
    with pytest.raises(ValueError, match="unknown option"):
        data.load("manifold", colour=3)


# ----------------------------------------------------------------------------- CLI
def test_datasets_cli(tmp_path, capsys):
    assert main(["datasets", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nmnist" in out and f"not made yet; would go to {tmp_path / 'spoken-digits'}" in out
    opts = ["--option", "n_classes=3", "--option", "train_per_class=5", "--option", "test_per_class=2"]
    assert main(["datasets", "stats", "manifold", "--json", "--no-progress", *opts]) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert lines[0]["samples"] == 15 and lines[1]["class_counts"] == [2, 2, 2]
    assert main(["datasets", "stats", "manifold", "--no-progress", *opts]) == 0  # a table by default
    rows = markdown_rows(capsys.readouterr().out)
    assert [(r["split"], r["samples"], r["samples per class"]) for r in rows] == [("train", "15", "5-5"),
                                                                                 ("test", "6", "2-2")]
    assert main(["datasets", "generate", "manifold", "--data-dir", str(tmp_path), "--dt", "2000", *opts]) == 0
    assert list((tmp_path / "cache").glob("manifold-train*.frames"))
    out = tmp_path / "m.png"
    assert main(["datasets", "plot", "manifold", "--out", str(out), *opts]) == 0 and out.stat().st_size > 0
    out = tmp_path / "d.png"
    assert main(["datasets", "plot", "digits", "--index", "2", "--out", str(out)]) == 0 and out.stat().st_size > 0
    assert main(["datasets", "stats", "shd", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "zenkelab" in err and str(tmp_path) in err


def test_tonic_transforms_really_act(nmnist_root):
    # Two neighbouring events 1 us apart survive denoising; isolated ones do not.
    write_nmnist_bin(nmnist_root / "NMNIST" / "Train" / "3" / "00002.bin",
                     [(10, 10, 1, 100), (11, 10, 1, 101), (30, 2, 0, 50_000)])
    plain = data.load("nmnist", data_dir=nmnist_root)
    clean = data.load("nmnist", data_dir=nmnist_root, denoise_us=1000)
    pick = lambda s: [s.train[i][0] for i in range(len(s.train)) if s.train[i][1] == 3][0]  # noqa: E731
    assert len(pick(plain)) == 3 and len(pick(clean)) < 3
    small = data.load("nmnist", data_dir=nmnist_root, downsample=0.5)
    assert small.info.sensor_size == (17, 17, 2) and pick(small)["c"].max() < 17 * 17 * 2


def test_the_frame_cache_is_sparse_memory_mapped_and_exact(tmp_path):
    """Cached frames equal the freshly binned ones, are held sparsely in memory-mapped files
    (a fraction of the dense bytes), survive pickling (a DataLoader worker) without a copy, and
    a cache that does not match its dataset is refused."""
    import pickle

    fresh = data.load("manifold", dt=1_000, cache=False, **SMALL_MANIFOLD)
    cached = data.load("manifold", dt=1_000, data_dir=tmp_path, progress=False, **SMALL_MANIFOLD)
    n = len(fresh.train)
    assert n == len(cached.train) == 120
    for i in (0, 7, n - 1):
        a, b = fresh.train[i], cached.train[i]
        assert np.array_equal(a[0], b[0]) and a[0].dtype == b[0].dtype == np.float32 and a[1] == b[1]
    assert np.array_equal(cached.train[-1][0], fresh.train[n - 1][0])
    store = cached.train._store
    assert isinstance(store.index, np.memmap)
    dense = sum(fresh.train[i][0].nbytes for i in range(n))
    assert store.nbytes < dense / 10 and store.index.dtype == np.int32 and store.counts.dtype == np.uint16
    again = pickle.loads(pickle.dumps(cached.train))
    assert isinstance(again._store.index, np.memmap) and np.array_equal(again[5][0], fresh.train[5][0])
    assert len(pickle.dumps(cached.train)) < len(pickle.dumps(fresh.train)) + 1000  # no copy of the frames
    assert np.array_equal(cached.train.labels(), fresh.train.events.labels())
    with pytest.raises(IndexError):
        cached.train[n]
    folder = next((tmp_path / "cache").glob("manifold-train*.frames"))
    np.save(folder / "lengths.npy", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="delete the folder"):
        data.load("manifold", dt=1_000, data_dir=tmp_path, progress=False, **SMALL_MANIFOLD)


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, caplog):
    import io
    import logging

    from asyncsnn.progress import progress

    caplog.set_level(logging.INFO, logger="asyncsnn")
    assert list(progress(range(4), desc="work", every=0.0)) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-1].startswith("work: 4/4 (100%)") and lines[-1].endswith("(done)")
    assert len(lines) == 5  # one line per item with every=0, then the final one
    caplog.clear()
    assert list(progress(range(3), desc="quiet")) == [0, 1, 2]  # short: no line at all
    assert list(progress(range(3), desc="off", enabled=False, every=0.0)) == [0, 1, 2]
    assert caplog.records == []

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    from tqdm import tqdm

    assert isinstance(progress(range(2), desc="bar"), tqdm)


def test_cli_logs_to_stderr_and_quiet_silences_it(tmp_path, capsys):
    opts = ["--option", "n_classes=2", "--option", "train_per_class=3", "--option", "test_per_class=2"]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": {"options": {"n_classes": 2, "train_per_class": 4, "test_per_class": 2},
                                        "n_frames": 5}, "model": {"hidden": [4]}, "train": {"epochs": 1}}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr()
    assert "epoch 1/1: loss" in out.err and "epoch 1/1: loss" not in out.out
    assert main(["-q", "train", "--config", str(cfg), "--out", str(tmp_path / "runs")]) == 0
    assert "epoch 1/1" not in capsys.readouterr().err
    assert main(["-q", "datasets", "stats", "manifold", *opts]) == 0


def test_recorded_files_that_break_the_layout_or_the_sensor_are_refused(tmp_path):
    """tonic labels an N-MNIST file by the last character of its folder's name, and reads x and
    y as bytes: a stray `Train/12/` folder would be labelled 2, and an event at x = 40 would land
    on another pixel's channel. Both are refused with the file's place and the allowed range."""
    root = tmp_path / "a"
    for (folder, digit), evs in NMNIST_EVENTS.items():
        write_nmnist_bin(root / "NMNIST" / folder / str(digit) / "00001.bin", evs)
    write_nmnist_bin(root / "NMNIST" / "Train" / "12" / "00002.bin", [(1, 1, 1, 5)])
    with pytest.raises(InputError, match=r"Train/12/00002.bin is not in a folder named 0..9"):
        data.load("nmnist", data_dir=root)
    (root / "NMNIST" / "Train" / "12" / "00002.bin").unlink()
    write_nmnist_bin(root / "NMNIST" / "Train" / "ab" / "00002.bin", [(1, 1, 1, 5)])
    with pytest.raises(InputError, match="not in a folder named 0..9"):
        data.load("nmnist", data_dir=root)
    (root / "NMNIST" / "Train" / "ab" / "00002.bin").unlink()
    write_nmnist_bin(root / "NMNIST" / "Test" / "3" / "00009.bin", [(40, 2, 0, 5)])
    splits = data.load("nmnist", data_dir=root)
    bad = [i for i in range(len(splits.test)) if splits.test.labels()[i] == 3][0]
    with pytest.raises(InputError, match=r"sample \d+: event x = 40 is outside 0..33 \(sensor 34 x 34 x 2\)"):
        splits.test[bad]
    # SHD: a unit past the 700 channels, a label past the 20 classes
    write_shd_h5(tmp_path / "b" / "SHD" / "shd_train.h5", [[0.1, 0.2]], [[3, 700]], [4])
    write_shd_h5(tmp_path / "b" / "SHD" / "shd_test.h5", [[0.1]], [[5]], [20])
    shd = data.load("shd", data_dir=tmp_path / "b")
    with pytest.raises(InputError, match="event x = 700 is outside 0..699"):
        shd.train[0]
    with pytest.raises(InputError, match="label 20 is outside 0..19"):
        shd.test[0]
    # an SHD-format folder of more channels (a generated spoken-digits, say) maps units as they are
    from asyncsnn.data.tonic_sets import hsd_split

    write_shd_h5(tmp_path / "c" / "SHD" / "shd_train.h5", [[0.1, 0.2]], [[3, 900]], [4])
    wide = hsd_split(tmp_path / "c", "train", data.DatasetInfo("wide", 1000, 20, (), (1000,), 1_000_000), "wide")
    assert wide[0][0]["c"].tolist() == [3, 900]
