"""Progress and diagnostics: a bar on a terminal, a line now and then in a log, through `logging`.

Everything asyncsnn says about its work goes to the ``asyncsnn`` logger (the library adds no
handler; the command line sends ``INFO`` to stderr, ``-q`` only warnings). Results a command
prints (tables, paths) go to stdout.

:func:`progress` wraps an iterable (or counts ``update`` calls) and shows

* a ``tqdm`` bar when stderr is a terminal;
* otherwise (a redirected log, CI) one ``INFO`` line every ``every`` seconds and one at the end,
  so that a log shows where a long job is without filling with carriage returns;
* nothing when ``enabled`` is false.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Iterable, Iterator, Optional

logger = logging.getLogger("asyncsnn")

EVERY = 30.0  # seconds between two progress lines in a log


class _Lines:
    """The non-terminal progress: log lines at most every ``every`` seconds."""

    def __init__(self, iterable: Optional[Iterable], total: Optional[int], desc: str, every: float) -> None:
        self.iterable, self.desc, self.every = iterable, desc, float(every)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.n, self.postfix = total, 0, ""
        self.t0 = self.last = time.monotonic()
        self.closed = False

    def _line(self, final: bool = False) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        logger.info("%s: %d%s%s, %.0f s%s%s", self.desc, self.n, of, pct, time.monotonic() - self.t0, extra,
                    " (done)" if final else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line()

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if time.monotonic() - self.t0 >= self.every:  # a short job needs no line
                self._line(final=True)

    def __iter__(self) -> Iterator:
        assert self.iterable is not None
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "_Lines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Off(_Lines):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "",
             enabled: bool = True, every: float = EVERY, leave: bool = False):
    """A progress display over ``iterable`` (or ``total`` steps counted by ``update``): see the
    module docstring. Returns an object with ``update``, ``set_postfix`` and ``close`` that
    iterates like ``iterable``."""
    if not enabled:
        return _Off(iterable, total, desc, every)
    if is_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=leave, dynamic_ncols=True)
    return _Lines(iterable, total, desc, every)


def configure(level: int = logging.INFO) -> None:
    """Send the ``asyncsnn`` logger's records at ``level`` and above to stderr, as plain lines
    (what the command line does; a program using asyncsnn as a library configures logging
    itself)."""
    if not any(getattr(h, "_asyncsnn", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._asyncsnn = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    for h in logger.handlers:
        if getattr(h, "_asyncsnn", False):
            h.stream = sys.stderr  # (the current stderr: tests capture it)
    logger.setLevel(level)


__all__ = ["EVERY", "configure", "is_terminal", "logger", "progress"]
