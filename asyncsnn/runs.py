"""Run folders: one new folder per run, never overwritten, with the resolved config and results."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


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


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    rows = list(rows)
    path = Path(path)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
    return path


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
