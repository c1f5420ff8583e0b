"""``spoken-digits``: the digits 0-9 in English and German, spoken by ``espeak-ng`` in many
synthetic voices and turned into spikes by the cochlea model SHD was made with (``lauscher``,
see :mod:`asyncsnn.data.cochlea`), written in SHD's own HDF5 layout.

A *speaker* is a fixed choice of an espeak-ng voice variant (37 human-sounding ones, male and
female), an English accent, a pitch, a speaking rate and an amplitude; a speaker says the ten
English digits with its accent and the ten German ones with the German voice, ``repeats``
times each, every utterance with a little jitter of rate, pitch and position, and white
noise at a fixed level (so that a quiet speaker has a lower signal-to-noise ratio). Labels
0-9 are English ``zero`` ... ``nine``, 10-19 German ``null`` ... ``neun``. Train and test are
split by speaker, as in SHD. Everything follows from the seed: the same config gives the same
files, whatever the number of worker processes.

Output folder (``<data root>/spoken-digits`` by default)::

    SHD/shd_train.h5, SHD/shd_test.h5   spikes/times (s), spikes/units, labels, extra/speaker,
                                        extra/keys, extra/meta_info/{gender, voice, variant,
                                        pitch, speed, amplitude}
    spoken-digits.json                  the config, the tool versions, sizes, times and the
                                        sha256 of both files (written last)

so that tonic's SHD loader (and :func:`asyncsnn.data.shd` with ``data_dir`` set to the folder)
reads it unchanged. While it is made, finished speakers are kept in ``.partial/``; an
interrupted run continues from there. A folder without its manifest, or whose files no longer
match it, is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import wave
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..progress import logger, progress
from ..runs import atomic_write, write_json
from .base import DatasetInfo, DatasetNotFoundError

NAME = "spoken-digits"
MANIFEST = "spoken-digits.json"
FORMAT = 1

WORDS = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
}
KEYS = WORDS["en"] + WORDS["de"]

# espeak-ng's voice variants that sound like a person (not robots, whispers or effects), with
# their gender as the variant files give it.
VARIANTS = (
    ("m1", "male"), ("m2", "male"), ("m3", "male"), ("m4", "male"), ("m5", "male"), ("m6", "male"),
    ("m7", "male"), ("m8", "male"), ("Andy", "male"), ("Denis", "male"), ("Diogo", "male"),
    ("Henrique", "male"), ("Hugo", "male"), ("Lee", "male"), ("Marco", "male"), ("antonio", "male"),
    ("michel", "male"), ("miguel", "male"), ("sandro", "male"), ("travis", "male"), ("victor", "male"),
    ("f1", "female"), ("f2", "female"), ("f3", "female"), ("f4", "female"), ("f5", "female"),
    ("Alicia", "female"), ("Andrea", "female"), ("Annie", "female"), ("anika", "female"),
    ("aunty", "female"), ("belinda", "female"), ("linda", "female"), ("steph", "female"),
    ("steph2", "female"), ("steph3", "female"), ("grandma", "female"),
)
ENGLISH = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
ESPEAK_RATE = 22_050  # espeak-ng's output sample rate
INSTALL = ("espeak-ng is not installed (it speaks the digits). Install it: `apt install espeak-ng` "
           "(Debian, Ubuntu), `dnf install espeak-ng` (Fedora), `brew install espeak-ng` (macOS); "
           "or set $ESPEAK_NG to its path")


class GenerationError(RuntimeError):
    """Making an utterance failed (espeak-ng failed or hung, a worker process died); the message
    names the speaker and word, and finished speakers are kept for the next run."""


class ToolNotFoundError(DatasetNotFoundError):
    """A program the generator runs is missing (so the dataset cannot be made); the message says
    how to install it."""


@dataclass(frozen=True)
class SpokenDigitsConfig:
    """How ``spoken-digits`` is made (``asyncsnn datasets generate spoken-digits``).

    ``speakers`` synthetic speakers, the last ``test_speakers`` of them (default: a quarter,
    at least one) in the test split; each says each of the 20 words ``repeats`` times.
    ``channels`` cochlea channels; audio at ``sample_rate`` Hz (espeak-ng speaks at 22 050,
    other rates are resampled), cut or padded to about ``duration_ms``; white noise at
    ``noise_db`` dB below full scale. ``exact`` draws the cochlea's fibres from lauscher's own
    random stream (bit for bit lauscher's spikes, about 10x slower) instead of the equivalent
    hazard sampler.
    """

    speakers: int = 40
    repeats: int = 1
    test_speakers: Optional[int] = None
    channels: int = 700
    sample_rate: int = ESPEAK_RATE
    duration_ms: int = 1000
    noise_db: float = -50.0
    seed: int = 0
    exact: bool = False

    def __post_init__(self) -> None:
        if self.test_speakers is not None:
            v = self.test_speakers
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{NAME}: test_speakers: {v!r} is not an integer (1..speakers - 1) or null")
        checks = [("speakers", self.speakers, 2, 100_000), ("repeats", self.repeats, 1, 1000),
                  ("channels", self.channels, 1, 65_535), ("sample_rate", self.sample_rate, 4_000, 192_000),
                  ("duration_ms", self.duration_ms, 100, 60_000), ("seed", self.seed, 0, 2**32 - 1)]
        for name, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ValueError(f"{NAME}: {name}: {value!r} is outside {lo}..{hi}")
        n_test = self.n_test
        if not 1 <= n_test < self.speakers:
            raise ValueError(f"{NAME}: test_speakers: {n_test} is outside 1..{self.speakers - 1}")
        if isinstance(self.noise_db, bool) or not (isinstance(self.noise_db, (int, float, np.integer, np.floating))
                                                   and -200.0 <= float(self.noise_db) <= 0.0):
            raise ValueError(f"{NAME}: noise_db: {self.noise_db!r} is outside -200..0")
        if not isinstance(self.exact, bool):
            raise ValueError(f"{NAME}: exact: {self.exact!r} is not true or false")
        # plain Python values, so that equal configs have equal digests (numpy ints, -50 vs -50.0)
        for name in ("speakers", "repeats", "channels", "sample_rate", "duration_ms", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.test_speakers is not None:
            object.__setattr__(self, "test_speakers", int(self.test_speakers))
        object.__setattr__(self, "noise_db", float(self.noise_db))

    @property
    def n_test(self) -> int:
        return self.test_speakers if self.test_speakers is not None else max(1, round(self.speakers / 4))

    @property
    def n_samples(self) -> int:
        """Samples per signal: at most ``duration_ms``, the most with ``n // 2 + 1`` a 7-smooth
        number (the cochlea's inverse FFTs have that length; a large prime factor slows them 4x)."""
        m = self.sample_rate * self.duration_ms // 2000 + 1
        while True:
            k = m
            for p in (2, 3, 5, 7):
                while k % p == 0:
                    k //= p
            if k == 1:
                return 2 * (m - 1)
            m -= 1

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def config(options: dict[str, Any]) -> SpokenDigitsConfig:
    allowed = {f.name for f in fields(SpokenDigitsConfig)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"{NAME}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    return SpokenDigitsConfig(**options)


def espeak() -> str:
    """The espeak-ng program, or :class:`ToolNotFoundError` saying how to install it."""
    path = os.environ.get("ESPEAK_NG") or shutil.which("espeak-ng")
    if not path or not os.access(path, os.X_OK):
        raise ToolNotFoundError(INSTALL)
    return path


def espeak_version() -> str:
    out = subprocess.run([espeak(), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


# ---------------------------------------------------------------------------------------------
# Speakers and utterances


def speaker(cfg: SpokenDigitsConfig, index: int) -> dict[str, Any]:
    """The synthesis parameters of speaker ``index``."""
    rng = np.random.default_rng([cfg.seed, 1, index])
    variant, gender = VARIANTS[int(rng.integers(len(VARIANTS)))]
    return {"variant": variant, "gender": gender, "voice": ENGLISH[int(rng.integers(len(ENGLISH)))],
            "pitch": int(rng.integers(20, 81)), "speed": int(rng.integers(120, 191)),
            "amplitude": int(rng.integers(40, 161))}


def utterances(cfg: SpokenDigitsConfig) -> list[tuple[int, int, int]]:
    """``(speaker, label, repeat)`` of every utterance, speaker by speaker."""
    return [(s, y, r) for s in range(cfg.speakers) for y in range(len(KEYS)) for r in range(cfg.repeats)]


def synthesize(cfg: SpokenDigitsConfig, spk: dict[str, Any], label: int, rng: np.random.Generator) -> np.ndarray:
    """One utterance of ``KEYS[label]`` by ``spk``, as float64 samples at ``cfg.sample_rate``
    (silence trimmed, not yet placed or padded)."""
    voice = spk["voice"] if label < 10 else "de"
    speed = int(round(spk["speed"] * rng.uniform(0.92, 1.08)))
    pitch = int(np.clip(spk["pitch"] + rng.integers(-4, 5), 0, 99))
    with tempfile.TemporaryDirectory(prefix="asyncsnn-espeak-") as tmp:
        wav = os.path.join(tmp, "u.wav")
        cmd = [espeak(), "-v", f"{voice}+{spk['variant']}", "-p", str(pitch), "-s", str(speed),
               "-a", str(spk["amplitude"]), "-w", wav, "--", KEYS[label]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"espeak-ng failed ({' '.join(cmd)}): {proc.stderr.strip()}")
        with wave.open(wav, "rb") as w:
            rate, width, n = w.getframerate(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    if width != 2:
        raise RuntimeError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit")
    x = np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
    loud = np.flatnonzero(np.abs(x) > 0.01 * max(np.abs(x).max(), 1e-12))
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng gave silence for {KEYS[label]!r} ({' '.join(cmd)})")
    pad = rate // 100
    x = x[max(0, loud[0] - pad): loud[-1] + pad]
    if rate != cfg.sample_rate:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(rate, cfg.sample_rate)
        x = resample_poly(x, cfg.sample_rate // g, rate // g)
    return x


def place(cfg: SpokenDigitsConfig, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """The utterance in a signal of ``cfg.n_samples``, centred up to 50 ms either way (lauscher
    windows the whole signal with a Hanning ramp over each half, so a word near an edge would be
    faded out), plus white noise at ``cfg.noise_db`` dB full scale; and whether the word had to be
    cut to fit."""
    n = cfg.n_samples
    shift = int(rng.integers(-(cfg.sample_rate // 20), cfg.sample_rate // 20 + 1))
    onset = int(np.clip((n - len(x)) // 2 + shift, 0, max(0, n - len(x))))
    cut = onset + len(x) > n
    sig = np.zeros(n)
    take = min(len(x), n - onset)
    sig[onset:onset + take] = x[:take]
    sig += rng.normal(0.0, 10.0 ** (cfg.noise_db / 20.0), n)
    return sig, cut


# ---------------------------------------------------------------------------------------------
# Workers

_WORKER: dict[str, Any] = {}


def _init_worker(cfg_dict: dict[str, Any], transfer_path: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER.clear()
    _WORKER.update(cfg=SpokenDigitsConfig(**cfg_dict), transfer_path=transfer_path)


def _utterance(task: tuple[int, int, int, int]) -> tuple[int, np.ndarray, np.ndarray, bool]:
    """Worker: utterance ``index`` = (speaker, label, repeat) as spike times and units."""
    from .cochlea import Cochlea

    index, spk_i, label, rep = task
    cfg: SpokenDigitsConfig = _WORKER["cfg"]
    if "cochlea" not in _WORKER:
        transfer = np.load(_WORKER["transfer_path"], mmap_mode="r")
        _WORKER["cochlea"] = Cochlea(cfg.channels, cfg.sample_rate, cfg.n_samples, transfer=transfer,
                                     exact=cfg.exact)
    rng = np.random.default_rng([cfg.seed, 2, spk_i, label, rep])
    x = synthesize(cfg, speaker(cfg, spk_i), label, rng)
    sig, cut = place(cfg, x, rng)
    times, units = _WORKER["cochlea"](sig, int(rng.integers(2**32)))
    return index, times.astype(np.float32), units.astype(np.uint16), cut


# ---------------------------------------------------------------------------------------------
# Generation


def default_folder(root: Path) -> Path:
    return Path(root) / NAME


def generate(cfg: SpokenDigitsConfig, folder: Path, *, jobs: Optional[int] = None, show_progress: bool = True,
             force: bool = False) -> dict[str, Any]:
    """Make the dataset in ``folder`` (see the module docstring) and return its manifest. An
    existing complete folder made with the same config is kept as it is; one made with another
    config is replaced only with ``force``. ``jobs`` worker processes (default: the CPUs)."""
    from . import cochlea

    folder = Path(folder).expanduser()
    espeak()
    cochlea._lauscher()
    cochlea._numba()
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        return _generate(cfg, folder, jobs, show_progress, force)


@contextmanager
def _locked(folder: Path):
    """One generation per folder at a time (a second one fails at once instead of racing)."""
    import fcntl

    with open(folder / ".lock", "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise GenerationError(f"{NAME}: another generation is writing to {folder}; wait for it") from e
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"espeak-ng": espeak_version(), "lauscher": version("lauscher"), "numba": version("numba"),
            "format": str(FORMAT)}


def _generate(cfg: SpokenDigitsConfig, folder: Path, jobs: Optional[int], show_progress: bool,
              force: bool) -> dict[str, Any]:
    try:
        existing = _read_manifest(folder)
    except DatasetNotFoundError:
        if not force:
            raise
        existing = {}
    if existing is not None and not force:
        if existing.get("config") == asdict(cfg):
            check(folder)
            logger.info("%s in %s is complete (same config); kept", NAME, folder)
            return existing
        raise ValueError(f"{NAME}: {folder} holds a dataset made with another config "
                         f"({existing.get('config')}); pass --force (force=True) to replace it, or choose "
                         "another folder")
    t0 = time.perf_counter()
    tools = _tool_versions()
    # finished speakers are reused only by the same config made with the same tools
    key = hashlib.sha256(json.dumps([cfg.digest(), tools], sort_keys=True).encode()).hexdigest()[:16]
    partial = folder / ".partial" / key
    partial.mkdir(parents=True, exist_ok=True)
    if existing is not None:  # forced: the old manifest goes before anything is made
        (folder / MANIFEST).unlink(missing_ok=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = max(1, int(jobs or cpus or 1))
    tasks = utterances(cfg)
    per_speaker = len(KEYS) * cfg.repeats
    done = {s for s in range(cfg.speakers) if _chunk_ok(partial / f"speaker-{s:05d}.npz", per_speaker)}
    todo = [(i, s, y, r) for i, (s, y, r) in enumerate(tasks) if s not in done]
    logger.info("%s: %d speakers x %d words x %d repeats = %d utterances (%d already made), %d channels, "
                "%d worker(s), into %s", NAME, cfg.speakers, len(KEYS), cfg.repeats, len(tasks),
                len(tasks) - len(todo), cfg.channels, jobs, folder)
    if todo:
        import multiprocessing as mp
        import sys

        # fork where it is safe and the default (Linux: works from scripts without a main guard
        # and from notebooks); spawn elsewhere. Workers use numpy, numba and espeak-ng, not torch.
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        transfer_path = _transfer_cache(cfg, folder / ".partial")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(asdict(cfg), str(transfer_path))) as pool:
            if not transfer_path.exists():
                _make_transfer(cfg, transfer_path, pool, jobs)
            buffers: dict[int, dict[int, tuple]] = {}
            bar = progress(total=len(todo), desc=NAME, enabled=show_progress)
            futures = {pool.submit(_utterance, t): t for t in todo}
            try:
                for fut in as_completed(futures):
                    try:
                        index, times, units, cut = fut.result()
                    except (RuntimeError, OSError, subprocess.SubprocessError, BrokenProcessPool) as e:
                        _, spk_i, label, _ = futures[fut]
                        raise GenerationError(
                            f"{NAME}: speaker {spk_i}, word {KEYS[label]!r}: {type(e).__name__}: {e}. Finished "
                            f"speakers are kept in {partial}: run the same command again to continue") from e
                    s = tasks[index][0]
                    buffers.setdefault(s, {})[index] = (times, units, cut)
                    if len(buffers[s]) == per_speaker:
                        _write_chunk(partial / f"speaker-{s:05d}.npz", buffers.pop(s))
                    bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            finally:
                bar.close()
    manifest = _assemble(cfg, folder, partial, tasks, time.perf_counter() - t0, jobs, tools)
    shutil.rmtree(folder / ".partial", ignore_errors=True)  # finished speakers and the transfer functions
    return manifest


def _transfer_cache(cfg: SpokenDigitsConfig, cache: Path) -> Path:
    from importlib.metadata import version

    key = f"{cfg.channels}-{cfg.sample_rate}-{cfg.n_samples}-lauscher{version('lauscher')}"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"cochlea-transfer-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def _make_transfer(cfg: SpokenDigitsConfig, path: Path, pool: ProcessPoolExecutor, jobs: int) -> None:
    """The basilar membrane's transfer functions, computed once, in parallel over channels."""
    bounds = np.linspace(0, cfg.channels, min(cfg.channels, 4 * jobs) + 1).astype(int)
    from .cochlea import transfer_functions

    parts = [pool.submit(transfer_functions, cfg.channels, cfg.sample_rate, cfg.n_samples, int(lo), int(hi))
             for lo, hi in zip(bounds[:-1], bounds[1:])]
    transfer = np.concatenate([p.result() for p in parts])
    atomic_write(path, lambda fh: np.save(fh, transfer), binary=True)


def _write_chunk(path: Path, items: dict[int, tuple]) -> None:
    order = sorted(items)
    times = [items[i][0] for i in order]
    units = [items[i][1] for i in order]
    arrays = {"index": np.asarray(order, np.int64), "count": np.asarray([len(t) for t in times], np.int64),
              "times": np.concatenate(times) if times else np.zeros(0, np.float32),
              "units": np.concatenate(units) if units else np.zeros(0, np.uint16),
              "cut": np.asarray([items[i][2] for i in order], bool)}
    atomic_write(path, lambda fh: np.savez(fh, **arrays), binary=True)


def _chunk_ok(path: Path, expected: int) -> bool:
    try:
        with np.load(path) as z:
            return len(z["index"]) == expected and int(z["count"].sum()) == len(z["times"]) == len(z["units"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # half-written or damaged
        return False


def _assemble(cfg: SpokenDigitsConfig, folder: Path, partial: Path, tasks: list, seconds: float,
              jobs: int, tools: dict[str, str]) -> dict[str, Any]:
    import h5py

    speakers = [speaker(cfg, s) for s in range(cfg.speakers)]
    test_from = cfg.speakers - cfg.n_test
    per_split: dict[str, list] = {"train": [], "test": []}
    n_cut = 0
    for s in range(cfg.speakers):
        with np.load(partial / f"speaker-{s:05d}.npz") as z:
            ends = np.cumsum(z["count"])
            starts = ends - z["count"]
            for j, index in enumerate(z["index"]):
                _, label, _ = tasks[int(index)]
                per_split["train" if s < test_from else "test"].append(
                    (int(index), s, label, z["times"][starts[j]:ends[j]], z["units"][starts[j]:ends[j]]))
            n_cut += int(z["cut"].sum())
    shd_dir = folder / "SHD"
    shd_dir.mkdir(exist_ok=True)
    files = {}
    for split, rows in per_split.items():
        rows.sort()
        path = shd_dir / f"shd_{split}.h5"

        def write(f, rows=rows):
            if True:
                spikes = f.create_group("spikes")
                t = spikes.create_dataset("times", (len(rows),), dtype=h5py.vlen_dtype(np.float32))
                u = spikes.create_dataset("units", (len(rows),), dtype=h5py.vlen_dtype(np.uint16))
                for i, row in enumerate(rows):
                    t[i] = row[3]
                    u[i] = row[4]
                f.create_dataset("labels", data=np.asarray([r[2] for r in rows], np.uint8))
                extra = f.create_group("extra")
                extra.create_dataset("speaker", data=np.asarray([r[1] for r in rows], np.uint32))
                extra.create_dataset("keys", data=np.asarray([k.encode() for k in KEYS], dtype=h5py.string_dtype()))
                meta = extra.create_group("meta_info")
                for key in ("gender", "voice", "variant"):
                    meta.create_dataset(key, data=np.asarray([sp[key].encode() for sp in speakers],
                                                             dtype=h5py.string_dtype()))
                for key in ("pitch", "speed", "amplitude"):
                    meta.create_dataset(key, data=np.asarray([sp[key] for sp in speakers], np.int32))
                f.attrs["generator"] = f"asyncsnn {NAME} (espeak-ng + lauscher)"
                f.attrs["channels"] = cfg.channels

        _atomic_h5(path, write)
        files[f"SHD/shd_{split}.h5"] = {"sha256": _sha256(path), "bytes": path.stat().st_size,
                                        "samples": len(rows),
                                        "speakers": sorted({r[1] for r in rows}),
                                        "spikes": int(sum(len(r[3]) for r in rows))}
    manifest = {"format": FORMAT, "name": NAME, "config": asdict(cfg), "complete": True, "files": files,
                "channels": cfg.channels, "classes": list(KEYS),
                "duration_us": cfg.n_samples * 1_000_000 // cfg.sample_rate,
                "cut_utterances": n_cut, "seconds": round(seconds, 1), "jobs": jobs,
                "tools": tools}
    write_json(folder / MANIFEST, manifest)
    os.chmod(folder / MANIFEST, 0o644)  # readable by whoever may read the files
    logger.info("%s: %d train + %d test samples in %.0f s (%d worker(s)); %s", NAME,
                files["SHD/shd_train.h5"]["samples"],
                files["SHD/shd_test.h5"]["samples"], seconds, jobs, folder)
    return manifest


def _atomic_h5(path: Path, fill) -> None:
    """``fill(h5py.File)`` a new file next to ``path`` (random name, created exclusively), flush
    it to disk and rename it over ``path``."""
    import h5py

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # a dataset others may read (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(folder: Path) -> Optional[dict[str, Any]]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetNotFoundError(f"{NAME} in {folder}: its manifest {MANIFEST} is unreadable ({e}); "
                                   f"{_regenerate(folder)}") from e
    if not isinstance(manifest, dict):
        raise DatasetNotFoundError(f"{NAME} in {folder}: its manifest {MANIFEST} is not an object; "
                                   f"{_regenerate(folder)}")
    return manifest


def _regenerate(folder: Path, options: dict[str, Any] | None = None) -> str:
    opts = "".join(f" --option {k}={v}" for k, v in (options or {}).items())
    return f"make it again with `asyncsnn datasets generate {NAME} --out {folder}{opts} --force`"


def check(folder: Path, split: Optional[str] = None) -> dict[str, Any]:
    """The manifest of a complete, unchanged dataset in ``folder``; otherwise a
    :class:`DatasetNotFoundError` saying what is wrong and how to make it. With ``split``, only
    that split's file is hashed (each split's loader checks its own)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        if (folder / ".partial").exists():
            raise DatasetNotFoundError(
                f"{NAME} in {folder} is incomplete (its generation was interrupted): run `asyncsnn datasets generate "
                f"{NAME} --out {folder}` (with the same options) to finish it")
        raise DatasetNotFoundError(
            f"{NAME} is not in {folder}: make it with `asyncsnn datasets generate {NAME}` (about 4 minutes on "
            f"2 cores; needs espeak-ng and `pip install 'asyncsnn[speech]'`), or pass folder= / --out")
    files = manifest.get("files")
    if manifest.get("format") != FORMAT or not manifest.get("complete") or not isinstance(files, dict) \
            or set(files) != {"SHD/shd_train.h5", "SHD/shd_test.h5"}:
        raise DatasetNotFoundError(f"{NAME} in {folder}: the manifest is not that of a complete dataset of format "
                                   f"{FORMAT}; {_regenerate(folder)}")
    for rel, meta in files.items():
        if split is not None and rel != f"SHD/shd_{split}.h5":
            continue
        path = folder / rel
        if not path.is_file():
            raise DatasetNotFoundError(f"{NAME} in {folder}: {rel} is missing; {_regenerate(folder)}")
        if path.stat().st_size != meta.get("bytes") or _sha256(path) != meta.get("sha256"):
            raise DatasetNotFoundError(f"{NAME} in {folder}: {rel} is not the file that was generated (size or "
                                       f"sha256 differ: corrupted or changed); {_regenerate(folder)}")
    return manifest


def spoken_digits(root: Path, split: str, *, folder: Optional[str | Path] = None, **made_with: Any):
    """One split of ``spoken-digits`` (``folder``: default ``<data root>/spoken-digits``), read by
    tonic's SHD loader after :func:`check`. Other options are fields of
    :class:`SpokenDigitsConfig`: the dataset must have been made with those values."""
    from .tonic_sets import hsd_split

    wanted = asdict(config(made_with)) if made_with else {}
    where = Path(folder).expanduser() if folder is not None else default_folder(root)
    manifest = check(where, split)
    differ = {k: (manifest["config"].get(k), made_with[k]) for k in made_with
              if manifest["config"].get(k) != wanted[k]}
    if differ:
        raise DatasetNotFoundError(
            f"{NAME} in {where} was made with " + ", ".join(f"{k}={v[0]!r}" for k, v in differ.items())
            + ", not " + ", ".join(f"{k}={v[1]!r}" for k, v in differ.items())
            + f"; {_regenerate(where, made_with)}")
    info = DatasetInfo(NAME, int(manifest["channels"]), len(KEYS), tuple(KEYS), (int(manifest["channels"]),),
                       int(manifest["duration_us"]), "generated: espeak-ng + lauscher (asyncsnn.data.speech)",
                       "generated (see datasets/README.md)")
    return hsd_split(where, split, info, f"{NAME}-{split}-{manifest['files'][f'SHD/shd_{split}.h5']['sha256'][:16]}")


__all__ = ["GenerationError", "KEYS", "NAME", "SpokenDigitsConfig", "ToolNotFoundError", "check", "config", "espeak", "generate",
           "speaker", "spoken_digits", "synthesize", "utterances"]
