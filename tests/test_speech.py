"""spoken-digits: the cochlea model against lauscher's own code, and the generator (espeak-ng)
end to end: SHD's file layout read by tonic's SHD loader, class balance, the speaker split,
determinism over worker counts, interrupted and corrupted folders, and the missing-tool message.

The generator tests need espeak-ng (a Debian package, installed by CI). Without it they are
skipped on a developer's machine and fail in CI (``CI`` set), so CI always runs them.
"""

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from asyncsnn import data
from asyncsnn.cli import main
from asyncsnn.data import speech
from asyncsnn.data.cochlea import Cochlea, _kernels

lauscher = pytest.importorskip("lauscher") if not os.environ.get("CI") else __import__("lauscher")


def _need_espeak():
    try:
        speech.espeak()
    except speech.ToolNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("espeak-ng is not installed (CI installs it)")


def _signal(n=4000, rate=22_050, seed=0):
    """A vowel-like test signal: a few harmonics under an envelope, plus noise."""
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    env = np.sin(np.pi * t / t[-1]) ** 2
    x = sum(np.sin(2 * np.pi * f * t + rng.random()) / k for k, f in enumerate((220, 440, 660, 1800, 3500), 1))
    return env * x + 0.01 * rng.normal(size=n)


# ----------------------------------------------------------------------------- the cochlea model
def test_the_cochlea_gives_lauschers_own_spikes_bit_for_bit():
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.helpers import CommandLineArguments
    from lauscher.transformations import BasilarMembrane, BushyCell, HairCell, HanningWindow, RmsNormalizer

    jobs = CommandLineArguments().num_concurrent_jobs
    CommandLineArguments().num_concurrent_jobs = 1
    try:
        _lauscher_chain_equals_ours(BasilarMembrane, BushyCell, HairCell, HanningWindow, MonoAudioWave, RmsNormalizer)
    finally:
        CommandLineArguments().num_concurrent_jobs = jobs


def _lauscher_chain_equals_ours(BasilarMembrane, BushyCell, HairCell, HanningWindow, MonoAudioWave, RmsNormalizer):
    x, rate, channels = _signal(), 22_050, 16
    wave = MonoAudioWave(x.copy(), rate).transform(RmsNormalizer(0.3)).transform(HanningWindow())
    bm = wave.transform(BasilarMembrane(channels=channels))
    hc = bm.transform(HairCell())
    np.random.seed(11)
    spikes = hc.transform(BushyCell())

    c = Cochlea(channels, rate, len(x), exact=True)
    front = c.front_end(x)
    assert np.array_equal(front, wave.samples)
    velocity = c.basilar_membrane(front)
    assert np.array_equal(velocity, bm.channels)
    prob = c.hair_cells(velocity)
    assert np.array_equal(prob, np.asarray(hc.channels))
    times, units = c(x, 11)
    assert len(times) > 20
    assert np.array_equal(times, spikes.spike_times) and np.array_equal(units, spikes.spike_labels)
    # another seed gives other fibre draws, so other spikes
    other_times, _ = c(x, 12)
    assert not np.array_equal(other_times, times)


def test_the_pairwise_sum_is_numpys():
    ps = _kernels()["pairwise_sum"]
    rng = np.random.default_rng(0)
    for n in range(0, 129):
        for _ in range(20):
            a = rng.random(n) * 10.0 ** rng.uniform(-6, 3, n)
            assert ps(a) == np.sum(a), n


def test_the_hazard_fibres_are_lauschers_fibres_in_distribution():
    """The fibres alone, against lauscher's own BushyCell._sample (Bernoulli draws per sample,
    then its refractory correction): one fibre at a fixed probability over 300 seeds has the
    same interval histogram (none shorter than ceil(refractory) = 12 samples; the share of each
    interval 12..40 within sampling error), and 40 fibres on a rising probability fire as
    often in every tenth of the signal."""
    from lauscher.transformations import BushyCell

    bc, fs = BushyCell(), 11_025
    fibres = _kernels()["fibres_hazard"]
    refrac = bc.tau_refrac * fs
    assert int(np.ceil(refrac)) == 12

    def intervals(spike_trains):
        return np.concatenate([np.diff(np.flatnonzero(t)) for t in spike_trains])

    p = np.full(3000, 0.04)
    exact, ours = [], []
    for seed in range(300):
        np.random.seed(seed)
        exact.append(bc._sample(p, fs)[:, 0])
        ours.append(fibres(p, seed, 1, refrac))
    ie, io = intervals(exact), intervals(ours)
    assert ie.min() == io.min() == 12
    he = np.bincount(ie, minlength=41)[12:41] / len(ie)
    ho = np.bincount(io, minlength=41)[12:41] / len(io)
    se = np.sqrt(he * (1 - he) / len(ie) + ho * (1 - ho) / len(io))
    assert np.abs((he - ho) / se).max() < 4.5
    assert abs(io.mean() - ie.mean()) < 4 * np.sqrt(ie.var() / len(ie) + io.var() / len(io))

    p = np.linspace(0.0, 0.3, 2000)
    exact = np.array([(np.random.seed(s), bc._sample(p, fs).sum(1))[1] for s in range(60)])
    ours = np.array([fibres(p, s, bc.n_convergence, refrac) for s in range(60)])
    be, bo = exact.reshape(60, 10, -1).sum(2), ours.reshape(60, 10, -1).sum(2)
    z = (be.mean(0) - bo.mean(0)) / np.sqrt(be.var(0) / 60 + bo.var(0) / 60 + 1e-12)
    assert np.abs(z).max() < 4.5 and be.sum() > 10_000


def test_the_hazard_sampler_has_the_exact_samplers_distribution():
    """The default fibre sampler against lauscher's draw-every-sample one, on the same hair-cell
    probabilities, over 60 seeds each: spike counts per channel and per time bin agree to
    sampling error (|z| < 4.5 everywhere, and the mean z near 0)."""
    x = _signal(n=8000)
    c_exact = Cochlea(24, 22_050, len(x), exact=True)
    c_fast = Cochlea(24, 22_050, len(x), transfer=c_exact._transfer, exact=False)
    prob = c_exact.hair_cells(c_exact.basilar_membrane(c_exact.front_end(x)))
    prob = prob * 4.0  # a busier input than one vowel, so that refractoriness matters
    seeds = range(60)

    def stats(c):
        counts, bins = [], []
        for s in seeds:
            sp = c.bushy_cells(prob, s)
            counts.append(sp.sum(1))
            bins.append(sp.reshape(sp.shape[0], 10, -1).sum(axis=(0, 2)) if sp.shape[1] % 10 == 0
                        else np.histogram(np.nonzero(sp)[1], bins=10, range=(0, sp.shape[1]))[0])
        return np.array(counts, float), np.array(bins, float)

    (ce, be), (cf, bf) = stats(c_exact), stats(c_fast)
    for e, f in ((ce, cf), (be, bf)):
        se = np.sqrt(e.var(0) / len(seeds) + f.var(0) / len(seeds)) + 1e-12
        z = (e.mean(0) - f.mean(0)) / se
        live = e.mean(0) + f.mean(0) > 1
        assert live.sum() >= 5
        assert np.abs(z[live]).max() < 4.5, z
        assert abs(z[live].mean()) < 1.5, z
    assert ce.sum() > 500


# ----------------------------------------------------------------------------- the generator
SMALL = {"speakers": 4, "channels": 32, "test_speakers": 1, "seed": 3}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    _need_espeak()
    folder = tmp_path_factory.mktemp("sd") / "spoken-digits"
    manifest = speech.generate(speech.config(SMALL), folder, jobs=2, show_progress=False)
    return folder, manifest


def _read(path):
    with h5py.File(path, "r") as f:
        return {"times": [np.asarray(t) for t in f["spikes/times"]], "units": [np.asarray(u) for u in f["spikes/units"]],
                "labels": f["labels"][()], "speaker": f["extra/speaker"][()], "keys": f["extra/keys"][()],
                "gender": f["extra/meta_info/gender"][()], "t_dtype": f["spikes/times"].dtype,
                "u_dtype": f["spikes/units"].dtype}


def test_generated_files_are_shd_files(small_set):
    folder, manifest = small_set
    assert sorted(p.name for p in (folder / "SHD").iterdir()) == ["shd_test.h5", "shd_train.h5"]
    assert not (folder / ".partial").exists()
    train = _read(folder / "SHD" / "shd_train.h5")
    assert h5py.check_vlen_dtype(train["t_dtype"]) == np.float32
    assert h5py.check_vlen_dtype(train["u_dtype"]) == np.uint16
    assert [k.decode() for k in train["keys"]] == list(speech.KEYS)
    assert set(g.decode() for g in train["gender"]) <= {"male", "female"} and len(train["gender"]) == 4
    for t, u in zip(train["times"], train["units"]):
        assert len(t) == len(u) > 50
        assert np.all(np.diff(t) >= 0) and 0 <= t.min() and t.max() < 1.0
        assert u.max() < 32
    # tonic's SHD loader (asyncsnn's `shd`) reads the folder unchanged, as `spoken-digits` does
    as_shd = data.load("shd", data_dir=folder)
    sd = data.load("spoken-digits", data_dir=folder.parent, folder=folder)
    assert sd.train.info.n_channels == 32 and sd.train.info.classes == speech.KEYS
    for i in (0, 7, len(sd.train) - 1):
        ev_a, y_a = as_shd.train[i]
        ev_b, y_b = sd.train[i]
        assert np.array_equal(ev_a, ev_b) and y_a == y_b == train["labels"][i]
        assert len(ev_b) == len(train["times"][i])
    frames = data.load("spoken-digits", data_dir=folder.parent, folder=folder, dt=10_000, n_frames=100)
    x, y = frames.test[3]
    assert x.shape == (100, 32) and x.sum() > 0
    assert manifest["tools"]["lauscher"] == "1.0.1" and manifest["files"]["SHD/shd_train.h5"]["samples"] == 60


def test_classes_are_balanced_and_speakers_split(small_set):
    folder, _ = small_set
    train, test = _read(folder / "SHD" / "shd_train.h5"), _read(folder / "SHD" / "shd_test.h5")
    assert np.array_equal(np.bincount(train["labels"], minlength=20), np.full(20, 3))
    assert np.array_equal(np.bincount(test["labels"], minlength=20), np.full(20, 1))
    assert set(train["speaker"]) == {0, 1, 2} and set(test["speaker"]) == {3}
    # speakers differ in voice, and each speaker's words differ from each other
    params = [speech.speaker(speech.config(SMALL), s) for s in range(4)]
    assert len({(p["variant"], p["voice"], p["pitch"], p["speed"]) for p in params}) == 4


def test_the_same_seed_gives_the_same_files_with_any_worker_count(small_set, tmp_path):
    folder, manifest = small_set
    again = speech.generate(speech.config(SMALL), tmp_path / "again", jobs=1, show_progress=False)
    for name in ("SHD/shd_train.h5", "SHD/shd_test.h5"):
        a, b = _read(folder / name), _read(tmp_path / "again" / name)
        assert all(np.array_equal(x, y) for x, y in zip(a["times"], b["times"]))
        assert all(np.array_equal(x, y) for x, y in zip(a["units"], b["units"]))
        assert np.array_equal(a["labels"], b["labels"])
        assert again["files"][name]["sha256"] == manifest["files"][name]["sha256"]  # byte for byte
    other = speech.generate(speech.config({**SMALL, "seed": 4}), tmp_path / "other", jobs=2, show_progress=False)
    assert other["files"]["SHD/shd_train.h5"]["sha256"] != manifest["files"]["SHD/shd_train.h5"]["sha256"]


def test_no_two_utterances_are_identical(small_set):
    folder, _ = small_set
    train = _read(folder / "SHD" / "shd_train.h5")
    seen = {(len(t), float(t.sum()), int(u.sum())) for t, u in zip(train["times"], train["units"])}
    assert len(seen) == len(train["times"])


def test_an_interrupted_generation_is_reported_then_finished(tmp_path, monkeypatch):
    _need_espeak()
    cfg = speech.config({**SMALL, "speakers": 3})
    folder = tmp_path / "sd"

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(speech, "_assemble", crash)
    with pytest.raises(KeyboardInterrupt):
        speech.generate(cfg, folder, jobs=2, show_progress=False)
    monkeypatch.undo()
    chunks = sorted((folder / ".partial").glob("*/speaker-*.npz"))
    assert len(chunks) == 3
    with pytest.raises(data.DatasetNotFoundError, match="incomplete.*interrupted"):
        data.load("spoken-digits", data_dir=tmp_path, folder=folder)
    # a half-written chunk is made again, the others are kept
    chunks[1].write_bytes(chunks[1].read_bytes()[:100])
    written = []
    real_write = speech._write_chunk
    monkeypatch.setattr(speech, "_write_chunk", lambda path, items: (written.append(path.name), real_write(path, items)))
    manifest = speech.generate(cfg, folder, jobs=2, show_progress=False)
    monkeypatch.undo()
    assert written == ["speaker-00001.npz"]
    assert manifest["files"]["SHD/shd_train.h5"]["samples"] == 40
    fresh = speech.generate(cfg, tmp_path / "fresh", jobs=2, show_progress=False)
    for name in ("SHD/shd_train.h5", "SHD/shd_test.h5"):
        assert fresh["files"][name]["sha256"] == manifest["files"][name]["sha256"]
    assert not (folder / ".partial").exists()
    assert len(data.load("spoken-digits", data_dir=tmp_path, folder=folder).train) == 40


def test_corrupted_or_changed_folders_are_never_loaded(small_set, tmp_path):
    src, _ = small_set
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    assert len(data.load("spoken-digits", data_dir=tmp_path, folder=folder).test) == 20
    path = folder / "SHD" / "shd_test.h5"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(data.DatasetNotFoundError, match="corrupted or changed.*--force"):
        data.load("spoken-digits", data_dir=tmp_path, folder=folder)
    path.unlink()
    with pytest.raises(data.DatasetNotFoundError, match="shd_test.h5 is missing"):
        data.load("spoken-digits", data_dir=tmp_path, folder=folder)
    (folder / speech.MANIFEST).write_text("{not json")
    with pytest.raises(data.DatasetNotFoundError, match="unreadable"):
        data.load("spoken-digits", data_dir=tmp_path, folder=folder)
    (folder / speech.MANIFEST).unlink()
    with pytest.raises(data.DatasetNotFoundError, match="datasets generate spoken-digits"):
        data.load("spoken-digits", data_dir=tmp_path, folder=folder)
    with pytest.raises(data.DatasetNotFoundError, match="datasets generate spoken-digits"):
        data.load("spoken-digits", data_dir=tmp_path / "empty")


def test_another_config_is_not_overwritten_without_force(small_set, tmp_path):
    src, _ = small_set
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    kept = speech.generate(speech.config(SMALL), folder, jobs=1, show_progress=False)
    assert kept == json.loads((folder / speech.MANIFEST).read_text())
    with pytest.raises(ValueError, match="another config.*--force"):
        speech.generate(speech.config({**SMALL, "seed": 9}), folder, jobs=1, show_progress=False)
    # a broken manifest is reported, and --force makes the folder again
    (folder / speech.MANIFEST).write_text("[]")
    with pytest.raises(data.DatasetNotFoundError, match="not an object"):
        speech.generate(speech.config(SMALL), folder, jobs=1, show_progress=False)
    again = speech.generate(speech.config(SMALL), folder, jobs=2, show_progress=False, force=True)
    assert again["files"] == kept["files"]
    assert oct((folder / speech.MANIFEST).stat().st_mode & 0o777) == "0o644"


def test_a_failing_espeak_names_the_utterance_and_the_rerun_finishes(tmp_path, monkeypatch, capsys):
    _need_espeak()
    fake = tmp_path / "espeak-ng"
    fake.write_text(f"#!/bin/sh\ncase \"$*\" in *drei*) echo broken voice >&2; exit 3;; esac\nexec {speech.espeak()} \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ESPEAK_NG", str(fake))
    cfg = speech.config({**SMALL, "speakers": 2})
    with pytest.raises(speech.GenerationError, match=r"speaker \d, word 'drei'.*broken voice.*run the same command"):
        speech.generate(cfg, tmp_path / "sd", jobs=1, show_progress=False)
    assert main(["datasets", "generate", "spoken-digits", "--speakers", "2", "--option", "channels=32",
                 "--option", "seed=3", "--option", "test_speakers=1", "--out", str(tmp_path / "sd"), "--jobs", "1",
                 "--no-progress"]) == 2
    assert "word 'drei'" in capsys.readouterr().err
    monkeypatch.delenv("ESPEAK_NG")
    done = speech.generate(cfg, tmp_path / "sd", jobs=2, show_progress=False)
    assert done["files"]["SHD/shd_train.h5"]["samples"] == 20


def test_config_ranges_and_missing_espeak(tmp_path, monkeypatch, capsys):
    for bad in ({"speakers": 1}, {"channels": 0}, {"test_speakers": 4, "speakers": 4}, {"noise_db": 3.0},
                {"sample_rate": 100}, {"repeats": 1.5}, {"exact": "yes"}, {"speaker": 3}, {"test_speakers": True},
                {"test_speakers": 1.5}, {"noise_db": True}):
        with pytest.raises(ValueError, match="spoken-digits: "):
            speech.config(bad)
    # equal configs are equal however their values were typed (the resume key depends on it)
    a = speech.config({"speakers": np.int64(5), "noise_db": -50, "seed": np.uint8(2)})
    assert a == speech.config({"speakers": 5, "noise_db": -50.0, "seed": 2}) and a.digest() == speech.config(
        {"speakers": 5, "noise_db": -50.0, "seed": 2}).digest()
    monkeypatch.setenv("ESPEAK_NG", str(tmp_path / "no-such-program"))
    with pytest.raises(speech.ToolNotFoundError, match="apt install espeak-ng"):
        speech.generate(speech.config(SMALL), tmp_path / "x")
    assert main(["datasets", "generate", "spoken-digits", "--out", str(tmp_path / "x")]) == 2
    assert "apt install espeak-ng" in capsys.readouterr().err
    assert main(["datasets", "generate", "manifold", "--speakers", "3"]) == 2


def test_generate_and_stats_from_the_command_line(tmp_path, capsys):
    _need_espeak()
    out = tmp_path / "cli-set"
    assert main(["datasets", "generate", "spoken-digits", "--speakers", "2", "--option", "channels=16",
                 "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "20 train samples (1 speakers), 20 test samples (1 other speakers), 16 channels" in printed
    assert main(["datasets", "stats", "spoken-digits", "--option", f"folder={out}", "--json", "--no-progress"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["samples"] for r in rows] == [20, 20] and rows[0]["channels"] == 16


def test_load_options_must_match_how_it_was_made(small_set):
    folder, _ = small_set
    assert len(data.load("spoken-digits", data_dir=folder.parent, folder=folder, channels=32, seed=3).train) == 60
    with pytest.raises(data.DatasetNotFoundError, match=r"made with channels=32, not channels=700.*--option channels=700"):
        data.load("spoken-digits", data_dir=folder.parent, folder=folder, channels=700)
    with pytest.raises(ValueError, match="unknown option"):
        data.load("spoken-digits", data_dir=folder.parent, folder=folder, speaker=3)


def test_the_experiment_generates_spoken_digits_when_missing(tmp_path, monkeypatch):
    """``experiment`` with a spoken-digits spec marked ``generate``: skipped with the install
    message when espeak-ng is missing (the spec is optional), made and studied when it is there."""
    from asyncsnn.experiment import experiment_config, run_experiment

    spec = {"name": "spoken-digits", "dt": 100_000, "n_frames": 10, "optional": True, "generate": True,
            "options": {"speakers": 2, "channels": 16, "folder": str(tmp_path / "sd")}}
    over = {"experiment.datasets": [spec], "experiment.schedulers": "fifo", "experiment.F": ["inf"],
            "experiment.modes": "steps", "train.epochs": 1, "model.hidden": [8], "out": str(tmp_path / "runs")}
    monkeypatch.setenv("ESPEAK_NG", str(tmp_path / "no-espeak"))
    res = run_experiment(experiment_config(overrides=over), progress=False, plots=False, log=lambda s: None)
    (skip,) = res.skipped
    assert skip["dataset"] == "spoken-digits" and "apt install espeak-ng" in skip["reason"]
    monkeypatch.delenv("ESPEAK_NG")
    _need_espeak()
    res = run_experiment(experiment_config(overrides=over), progress=False, plots=False, log=lambda s: None)
    assert not res.skipped and (tmp_path / "sd" / speech.MANIFEST).is_file()
    assert {c["dataset"] for c in res.cells} == {"spoken-digits"}


def test_the_words_are_not_told_apart_by_spike_counts_alone(tmp_path):
    """Not trivially separable: on speakers it never saw, a linear classifier on each sample's
    total spikes per channel is far from perfect, and the same classifier given the timing
    (counts in five 200 ms bins) does much better, so the task needs the spikes' timing. (At
    full size, 40 speakers and 700 channels, the counts reach 0.52 and a trained SNN more: see
    docs/experiment-results.md.)"""
    _need_espeak()
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path / "sd8"
    speech.generate(speech.config({"speakers": 8, "channels": 64, "test_speakers": 2, "seed": 5}), folder,
                    jobs=2, show_progress=False)
    s = data.load("spoken-digits", data_dir=tmp_path, folder=folder, dt=20_000, n_frames=50, cache=False)
    xtr, ytr, _ = data.to_arrays(s.train)
    xte, yte, _ = data.to_arrays(s.test)

    def score(f):
        return max(LogisticRegression(C=c, max_iter=5000).fit(f(xtr), ytr).score(f(xte), yte) for c in (0.01, 0.1, 1.0))

    counts = score(lambda x: np.log1p(x.sum(1)))
    timed = score(lambda x: np.log1p(x.reshape(len(x), 5, 10, -1).sum(2).reshape(len(x), -1)))
    assert 0.05 < counts < 0.5, counts   # above chance (1 in 20): the words differ; far from perfect
    assert timed > counts + 0.15, (counts, timed)
