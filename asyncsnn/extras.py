"""The parts of asyncsnn and the optional dependencies they need.

The core (the emulator, ``Chip``, ``Network``, ``RunOptions``, the metrics, the numpy reference,
``asyncsnn emulate``) needs numpy only. The rest is installed with extras:

* ``asyncsnn[train]``: PyTorch and pydantic, for the simulator (:mod:`asyncsnn.sim`), training
  (:mod:`asyncsnn.train`), SPSN (:mod:`asyncsnn.spsn`) and the experiment;
* ``asyncsnn[data]``: tonic, h5py and scikit-learn (and PyTorch), for :mod:`asyncsnn.data`;
* ``asyncsnn[plots]``: matplotlib, for rasters and per-core plots;
* ``asyncsnn[speech]``: lauscher and numba, for the ``spoken-digits`` generator
  (:mod:`asyncsnn.data.speech`; it also runs the ``espeak-ng`` program, a system package);
* ``asyncsnn[all]``: all of them;
* ``asyncsnn[ray]``: Ray, for sweeps on a cluster (``asyncsnn experiment --executor ray``; not in
  ``all``).

Importing a part whose extra is missing raises an :class:`ImportError` that names the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

def require(module: str, extra: str, part: str) -> ModuleType:
    """``import module``, or an :class:`ImportError` saying which extra brings it for ``part``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{part} needs {module.split('.')[0]}, which is not installed: "
                          f"pip install 'asyncsnn[{extra}]' (or 'asyncsnn[all]')") from e


__all__ = ["require"]
