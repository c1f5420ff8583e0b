"""The core needs numpy only: with PyTorch, pydantic, tonic, scikit-learn and matplotlib made
unimportable, the emulator, the numpy reference and `asyncsnn emulate` work, and every other
part says which extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = """
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "pydantic", "tonic", "sklearn", "matplotlib", "h5py"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Missing())
"""


def run(code: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "core_only.py"
    script.write_text(BLOCK + textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)


def test_the_core_runs_without_the_extras(tmp_path):
    out = run(f"""
        import numpy as np
        import asyncsnn
        from asyncsnn import reference
        from asyncsnn.generate import random_feedforward
        net = random_feedforward([6, 5, 3], seed=0, grid=True)
        x = (np.random.default_rng(0).random((2, 3, 6)) < 0.5).astype(np.uint32)
        res = asyncsnn.Chip.preset("loihi").run(net, x, asyncsnn.RunOptions(scheduler="random", F=1), labels=[0, 1])
        ref = reference.simulate(net, x[0], scheduler="random", F=1)
        assert res.out_counts[0].tolist() == ref["out_counts"].tolist()
        print(sorted(res.summary())[:2])
        from asyncsnn.cli import main
        assert main(["emulate", "--no-plots", "--no-progress", "--batch", "2", "--frames", "2",
                     "--sizes", "8,4,2", "--out", {str(tmp_path)!r}]) == 0
        assert "torch" not in sys.modules
        print("core ok")
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "core ok" in out.stdout


def test_each_part_names_its_extra(tmp_path):
    out = run("""
        import asyncsnn
        for part, extra in (("asyncsnn.sim", "train"), ("asyncsnn.train", "train"), ("asyncsnn.spsn", "train"),
                            ("asyncsnn.experiment", "train"), ("asyncsnn.data", "data")):
            try:
                __import__(part)
            except ImportError as e:
                assert f"pip install 'asyncsnn[{extra}]'" in str(e), (part, str(e))
                print(part, "->", extra)
            else:
                raise AssertionError(f"{part} imported without its extra")
        from asyncsnn.cli import main
        assert main(["train", "--epochs", "0"]) == 2
        assert main(["emulate", "--batch", "2", "--frames", "2", "--sizes", "8,4,2", "--no-progress"]) == 2
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("->") == 5
    assert "asyncsnn[train]" in out.stderr and "asyncsnn[plots]" in out.stderr  # train; emulate with plots
