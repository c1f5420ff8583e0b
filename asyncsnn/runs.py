"""Run folders: one new folder per run, never overwritten, with the resolved config and results."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence


def new_run_dir(root: str | Path, prefix: str) -> Path:
    """Create ``root/prefix-YYYYmmdd-HHMMSS`` (with ``-2``, ``-3``... if it exists)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 10_000):
        path = root / (f"{prefix}-{stamp}" if i == 1 else f"{prefix}-{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {root}")


def atomic_write(path: str | Path, write: Callable[[Any], None], *, binary: bool = False) -> Path:
    """The one way files are written: ``write(fh)`` fills a new temporary file in ``path``'s
    folder (created exclusively with a random name, so a planted file or symlink is never
    followed), which is flushed to disk and renamed over ``path``: a crash never leaves a
    half-written file, and ``path`` is replaced, never written through."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    return atomic_write(path, lambda fh: json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable))


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    rows = list(rows)
    path = Path(path)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    def write(fh) -> None:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    return atomic_write(path, write)


def markdown_table(rows: Iterable[Mapping[str, Any]], cols: Sequence[tuple[str, str, str]], *,
                   aligned: bool = False) -> str:
    """A Markdown table: ``cols`` are ``(key, header, format)``; missing or non-finite numbers
    show as ``-``. ``aligned`` pads every column to its widest cell (numbers to the right), for
    reading in a terminal."""
    def cell(v: Any, fmt: str) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    head = [c[1] for c in cols]
    body = [[cell(r.get(k), fmt) for k, _, fmt in cols] for r in rows]
    if not aligned:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(cols),
                          *("| " + " | ".join(b) + " |" for b in body)])
    widths = [max([len(h), *(len(b[i]) for b in body)]) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(b) for b in body)])


def _jsonable(x: Any) -> Any:
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")
