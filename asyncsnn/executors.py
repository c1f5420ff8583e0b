"""Where the independent pieces of a study run: one after another, in a local process pool, or as
Ray tasks on a cluster.

A :class:`Task` is a named call of a module-level function with picklable arguments and the
resources it needs. :meth:`Executor.run` runs a list of them and yields ``(task, outcome)`` as
they finish, in any order; an outcome is the function's result, or a :class:`TaskError` naming
the task when it raised (the other tasks go on). Every task is deterministic (its seeds are in
its arguments), so the executor changes when a result arrives, never what it is.

* :class:`Sequential`: in this process, in order (the reference).
* :class:`LocalPool`: a pool of processes on this machine (``forkserver`` on Linux, ``spawn``
  elsewhere), each with ``cpus`` / ``workers`` PyTorch threads. The default for the study.
* :class:`RayExecutor`: Ray tasks with their CPUs and GPUs declared, on a running cluster
  (``address``) or a local instance; ``pip install "asyncsnn[ray]"``.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

from .errors import ConfigError

EXECUTORS = ("sequential", "pool", "ray")


@dataclass
class Task:
    """``fn(*args)`` under the name ``name``, needing ``cpus`` cores and ``gpus`` GPUs."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    cpus: float = 1
    gpus: float = 0
    key: Any = field(default=None, compare=False)  # the caller's own handle on the task


class TaskError(RuntimeError):
    """A task that raised: its name, the exception's one-line summary and its traceback, and the
    exception itself (``original``) where it could be sent back from the worker."""

    def __init__(self, name: str, summary: str, trace: str = "", original: Optional[BaseException] = None) -> None:
        super().__init__(f"task {name!r} failed: {summary}")
        self.name, self.summary, self.trace, self.original = name, summary, trace, original


def _call(fn: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
    """Run one task where the executor put it; an exception comes back as data: its summary,
    traceback, and itself when it pickles."""
    import pickle

    try:
        return True, fn(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - reported by name, the sweep goes on
        try:
            original = pickle.loads(pickle.dumps(e))
        except Exception:  # noqa: BLE001 - not every exception travels
            original = None
        return False, (f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", traceback.format_exc(),
                       original)


def _outcome(task: Task, ok: bool, value: Any) -> Any:
    return value if ok else TaskError(task.name, *value)


class Executor:
    """Runs tasks; see the module docstring."""

    name = "executor"

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (a pool's processes, the Ray connection)."""

    def describe(self) -> str:
        return self.name

    def parallelism(self) -> int:
        """How many tasks it runs at once (a sharded run's default number of shards)."""
        return 1


class Sequential(Executor):
    """Every task in this process, in the order given."""

    name = "sequential"

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        for t in tasks:
            yield t, _outcome(t, *_call(t.fn, t.args))


def _init_worker(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


class LocalPool(Executor):
    """A pool of ``workers`` processes (default: one per core), each with cores / workers PyTorch
    threads (one process trains with the same weights on 1 or 2 threads, bit for bit, measured).
    A worker that dies (killed, out of memory) breaks the pool: it is started again and the tasks
    it took down are retried one at a time, so only the task that kills its worker fails."""

    name = "pool"

    def __init__(self, workers: Optional[int] = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"invalid config: workers: {workers!r} must be an integer >= 1")
        self.workers = workers or (os.cpu_count() or 1)
        self._pool = None

    def describe(self) -> str:
        return f"a pool of {self.workers} processes"

    def parallelism(self) -> int:
        return self.workers

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        import concurrent.futures as cf

        if not tasks:
            return
        if self.workers == 1 or len(tasks) == 1:
            yield from Sequential().run(tasks)
            return
        futures: dict = {}
        broken: list[Task] = []
        pool = self._started()
        for t in tasks:
            try:
                futures[pool.submit(_call, t.fn, t.args)] = t
            except cf.process.BrokenProcessPool:  # a task already killed its worker
                broken.append(t)
        try:
            for f in cf.as_completed(futures):
                t = futures[f]
                try:
                    yield t, _outcome(t, *f.result())
                except cf.process.BrokenProcessPool:  # a worker died: which task killed it is unknown
                    broken.append(t)
            for t in broken:  # retried one at a time in a fresh pool: only the killer fails again
                self.close()
                try:
                    yield t, _outcome(t, *self._started().submit(_call, t.fn, t.args).result())
                except cf.process.BrokenProcessPool as e:
                    yield t, TaskError(t.name, f"its worker process died, twice ({e})")
        except BaseException:
            for f in futures:
                f.cancel()
            self.close()
            raise

    def _started(self):
        import concurrent.futures as cf
        import multiprocessing as mp

        if self._pool is None:
            ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                                initargs=(threads,))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            try:
                self._pool.shutdown(wait=True, cancel_futures=True)
            except Exception:  # noqa: BLE001 - a broken pool's shutdown may complain; it is gone either way
                pass
            self._pool = None


class RayExecutor(Executor):
    """Ray tasks on the cluster at ``address`` (``None``: start or join a local instance)."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, *, max_retries: int = 1) -> None:
        from .extras import require

        self.ray = require("ray", "ray", "the Ray executor")
        self.address = address
        self.max_retries = max_retries
        self._started = not self.ray.is_initialized()  # (then close() shuts it down)
        if address and not self.ray.is_initialized():
            _check_reachable(address)
        if not self.ray.is_initialized():
            try:
                kw: dict[str, Any] = {"address": address} if address else {"num_cpus": os.cpu_count() or 1}
                self.ray.init(**kw, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ConfigError(f"invalid config: ray address {address!r}: cannot connect ({e})") from None

    def parallelism(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
            self._started = False

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        return f"Ray ({self.address or 'local'}: {res.get('CPU', 0):.0f} CPUs, {res.get('GPU', 0):.0f} GPUs)"

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        ray = self.ray
        remote = ray.remote(_call)
        refs = {remote.options(num_cpus=t.cpus, num_gpus=t.gpus, max_retries=self.max_retries,
                               name=t.name).remote(t.fn, t.args): t for t in tasks}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                t = refs[done[0]]
                try:
                    yield t, _outcome(t, *ray.get(done[0]))
                except ray.exceptions.RayError as e:  # the task's worker or node died
                    yield t, TaskError(t.name, f"Ray could not run it ({type(e).__name__}: {str(e).splitlines()[0]})")
        except BaseException:
            for r in pending:
                ray.cancel(r, force=True)
            raise


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) that accepts no connection within ``timeout`` is a
    ``ConfigError`` at once (Ray itself retries an unreachable head for minutes)."""
    import socket

    if address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"invalid config: ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(f"invalid config: ray address {address!r}: cannot connect ({e})") from None


def make_executor(kind: str = "pool", *, workers: Optional[int] = None, address: Optional[str] = None) -> Executor:
    """The executor named ``kind`` (one of :data:`EXECUTORS`)."""
    if kind == "sequential":
        return Sequential()
    if kind == "pool":
        return LocalPool(workers)
    if kind == "ray":
        return RayExecutor(address)
    raise ConfigError(f"invalid config: executor: {kind!r}; allowed: {', '.join(EXECUTORS)}")
