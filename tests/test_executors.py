"""The study's pieces on an executor (issue 25): one after another, in a local process pool, or as
Ray tasks, the same config and seed give the same tables; a failed piece is reported by name,
its cells are listed as missing, and a resume runs it again."""

from __future__ import annotations

import csv
import json
import os

import pytest

from asyncsnn import ConfigError
from asyncsnn.executors import LocalPool, RayExecutor, Sequential, Task, TaskError, make_executor
from test_limits import _study_config


def _tables(run) -> dict:
    out = {}
    for name in ("cells", "relative", "decide_early", "training"):
        rows = list(csv.DictReader(open(run / f"{name}.csv")))
        for r in rows:
            r.pop("seconds", None)  # (wall time: the one column that is not a result)
        out[name] = rows
    return out


def _ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def test_the_same_tables_one_after_another_in_a_pool_and_on_ray(tmp_path):
    from asyncsnn.experiment import run_experiment

    executors = [Sequential(), LocalPool(2)]
    if _ray_available() or os.environ.get("CI"):  # CI installs the ray extra: there it must run
        executors.append(RayExecutor())
    tables = {}
    for ex in executors:
        r = run_experiment(_study_config(tmp_path / ex.name), progress=False, plots=False, log=lambda s: None,
                           executor=ex)
        tables[ex.name] = _tables(r.run_dir)
        assert json.loads((r.run_dir / "status.json").read_text())["executor"] == ex.name
    reference = tables.pop("sequential")
    assert len(reference["cells"]) == 18 and len(reference["training"]) == 2
    for name, t in tables.items():
        assert t == reference, name


def _square(x):
    return x * x


def _boom(x):
    raise ValueError(f"no square for {x}\nsecond line")


def _die(x):
    os._exit(3)  # a worker that dies (killed, out of memory)


@pytest.mark.parametrize("kind", ["sequential", "pool"])
def test_a_failed_task_is_reported_by_name_and_the_others_finish(kind):
    ex = make_executor(kind, workers=2)
    tasks = [Task(f"square {i}", _square, (i,)) for i in range(4)] + [Task("boom", _boom, (5,))]
    out = {t.name: o for t, o in ex.run(tasks)}
    ex.close()
    assert {k: v for k, v in out.items() if k != "boom"} == {f"square {i}": i * i for i in range(4)}
    assert isinstance(out["boom"], TaskError)
    assert str(out["boom"]) == "task 'boom' failed: ValueError: no square for 5"
    assert "_boom" in out["boom"].trace


def test_a_worker_that_dies_is_a_failed_task_not_a_hang():
    """The dying task breaks the pool: the pool starts again and retries the tasks it took down
    one at a time, so only the killer fails, and the next run on the executor works."""
    ex = LocalPool(2)
    tasks = [Task("dies", _die, (1,))] + [Task(f"square {i}", _square, (i,)) for i in range(3)]
    out = {t.name: o for t, o in ex.run(tasks)}
    assert isinstance(out["dies"], TaskError) and "worker process died, twice" in str(out["dies"])
    assert {k: v for k, v in out.items() if k != "dies"} == {f"square {i}": i * i for i in range(3)}
    assert [o for _, o in ex.run([Task("again", _square, (7,)), Task("more", _square, (8,))])] in ([49, 64], [64, 49])
    ex.close()


def test_a_shards_error_reaches_the_caller_as_itself():
    """A runaway shard raises RunawayError on every executor (the project's errors pickle)."""
    import pickle

    import numpy as np

    import asyncsnn
    from asyncsnn import Network, Population, Projection

    for e in (asyncsnn.InputError("invalid input: x"), asyncsnn.MappingError("m")):
        assert type(pickle.loads(pickle.dumps(e))) is type(e)
    net = Network(1, [Population(1, theta=1.0, beta=1.0, reset="subtract", refractory=False)],
                  [Projection("input", 0, weights=np.array([[2.0]], np.float32)),
                   Projection(0, 0, weights=np.array([[2.0]], np.float32))])
    placement = asyncsnn.Chip.preset("ideal").place(net)
    for ex in (Sequential(), LocalPool(2)):
        with pytest.raises(asyncsnn.RunawayError, match="runaway_steps = 50"):
            placement.run(np.ones((4, 1, 1), np.uint32), runaway_steps=50, executor=ex)
        ex.close()


def test_bad_executor_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="executor: 'mpi'; allowed: sequential, pool, ray"):
        make_executor("mpi")
    with pytest.raises(ConfigError, match="workers: 0 must be an integer >= 1"):
        make_executor("pool", workers=0)


@pytest.mark.skipif(not (_ray_available() or os.environ.get("CI")), reason="the ray extra is not installed")
def test_an_unreachable_ray_address_is_a_config_error():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(ConfigError, match="ray address '127.0.0.1:1': cannot connect"):
        RayExecutor("127.0.0.1:1")


def test_a_failed_piece_lists_its_missing_cells_and_resume_runs_it(tmp_path, monkeypatch, capsys):
    """One evaluation raises: the others finish, the study fails naming the piece and the cells
    it would have made, ``status.json`` says failed, and ``--resume`` ends with the full tables."""
    from asyncsnn import experiment
    from asyncsnn.cli import main

    full = experiment.run_experiment(_study_config(tmp_path / "full"), progress=False, plots=False,
                                     log=lambda s: None)
    real = experiment._evaluate_task

    def flaky(ds, sched, F, *a):
        if F == 2:
            raise RuntimeError("the node went away")
        return real(ds, sched, F, *a)

    monkeypatch.setattr(experiment, "_evaluate_task", flaky)
    with pytest.raises(experiment.StudyError) as err:
        experiment.run_experiment(_study_config(tmp_path / "cut"), progress=False, plots=False, log=lambda s: None)
    monkeypatch.undo()
    msg = str(err.value)
    assert "1 piece(s) of the study failed" in msg and "missing: tiny/fifo/F=2" in msg
    assert "task 'evaluate tiny/fifo/F=2' failed: RuntimeError: the node went away" in msg
    (run,) = (tmp_path / "cut").glob("experiment-*")
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and status["failed"] == ["evaluate tiny/fifo/F=2"]
    assert status["missing"] == ["tiny/fifo/F=2"]
    results = json.loads((run / "results.json").read_text())
    assert results["complete"] is False and {c["F"] for c in results["cells"]} == {1, "inf"}
    assert main(["experiment", "--resume", str(run), "--executor", "sequential", "--no-progress",
                 "--no-plots"]) == 0
    assert _tables(run) == _tables(full.run_dir)


def test_the_cli_reports_a_failed_study_in_lines_and_exits_1(tmp_path, monkeypatch, capsys):
    from asyncsnn import experiment
    from asyncsnn.cli import main

    def broken(*a):
        raise RuntimeError("disk full")

    monkeypatch.setattr(experiment, "_train_task", broken)
    rc = main(["experiment", "--executor", "sequential", "--set", "experiment.schedulers=fifo", "--set",
               "train.epochs=1", "--set", "experiment.F=[1]", "--out", str(tmp_path), "--no-progress", "--no-plots"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "asyncsnn: error: 2 piece(s) of the study failed" in err
    assert "task 'train manifold/layered' failed: RuntimeError: disk full" in err
    assert "continue" not in err or "--resume" in err
    assert main(["experiment", "--executor", "sequential", "--address", "x"]) == 2


def _same_run(a, b) -> None:
    import numpy as np

    for name in ("out_counts", "first_spike", "v_final", "trace", "releases", "core_spikes", "core_synops",
                 "core_busy_ticks", "out_potential"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert set(a.metrics) == set(b.metrics)
    for k in a.metrics:
        assert np.array_equal(a.metrics[k], b.metrics[k], equal_nan=True), k
    assert a.summary() == pytest.approx(b.summary(), nan_ok=True)


@pytest.mark.parametrize("kind", ["sequential", "pool", "ray"])
def test_a_batch_sharded_over_workers_is_the_one_process_run(kind):
    """Dense and event inputs, both timing modes, a scheduler whose order depends on the sample
    index: the merged shards equal the one-process run array for array (trace included)."""
    import numpy as np

    import asyncsnn
    from asyncsnn.generate import poisson_frames, random_feedforward

    if kind == "ray" and not (_ray_available() or os.environ.get("CI")):
        pytest.skip("the ray extra is not installed")
    ex = make_executor(kind, workers=2)
    net = random_feedforward([40, 24, 6], seed=3)
    placement = asyncsnn.Chip.preset("loihi", core_neurons=8).place(net)
    x = poisson_frames(7, 6, 40, 0.2, seed=4)
    labels = np.arange(7) % 6
    rng = np.random.default_rng(5)
    events = [(np.sort(rng.integers(0, 5000, 30)), rng.integers(0, 40, 30)) for _ in range(5)]
    for mode in ("steps", "events"):
        opts = asyncsnn.RunOptions(mode=mode, scheduler="random", F=2, seed=9, trace=True, sample_offset=11)
        _same_run(placement.run(x, opts, labels=labels, executor=ex, shards=3), placement.run(x, opts, labels=labels))
        _same_run(placement.run(events=events, dt=1000, options=opts, executor=ex),
                  placement.run(events=events, dt=1000, options=opts))
    ex.close()
    with pytest.raises(asyncsnn.InputError, match="shards: 0 must be an integer >= 1"):
        placement.run(x, executor=Sequential(), shards=0)


def test_emulate_on_a_pool_prints_the_table_of_one_process(tmp_path):
    from asyncsnn.cli import main

    args = ["emulate", "--sizes", "30,20,5", "--batch", "6", "--frames", "5", "--F", "1,inf", "--no-progress",
            "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--executor", "pool", "--workers", "2"]) == 0
    (a,), (b,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    assert list(csv.DictReader(open(a / "summary.csv"))) == list(csv.DictReader(open(b / "summary.csv")))
    assert main([*args, "--address", "x"]) == 2
