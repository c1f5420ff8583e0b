"""The worked cases of the execution model, through the Python API and the numpy reference."""

import numpy as np
import pytest

import asyncsnn
from asyncsnn import hashing, reference
from helpers import golden_chip, golden_kwargs, golden_network, trace_rows


def test_hash_vectors(golden):
    for v in golden["hash_vectors"]:
        args = (v["seed"], v["sample"], v["frame"], v["step"], v["source"])
        assert asyncsnn.hash_key(*args) == v["key"]
        assert hashing.key(*args) == v["key"]
        assert int(hashing.key(*(np.array([a], np.uint64) for a in args))[0]) == v["key"]


@pytest.mark.parametrize("mode", ["steps", "events"])
def test_golden_cases_on_the_emulator(golden, mode):
    for case in golden["cases"]:
        net, chip, exp = golden_network(case), golden_chip(case), case["expected"]
        frames = np.array(case["frames"], np.uint32)[None]
        res = chip.run(net, frames, mapping=case["core_of"], mode=mode, trace=True, **golden_kwargs(case))
        name = case["name"]
        assert trace_rows(res) == exp["trace"], name
        assert res.out_counts[0].tolist() == exp["out_counts"], name
        assert int(res.metrics["synaptic_operations"][0]) == exp["synops"], name
        assert int(res.metrics["steps"][0]) == exp["steps"], name
        assert int(res.metrics["unreleased"][0]) == exp["unreleased"], name
        first = None if np.isnan(res.metrics["first_out_frame"][0]) else [
            int(res.metrics["first_out_frame"][0]), int(res.metrics["first_out_step_in_frame"][0])]
        assert first == exp["first_out"], name
        assert res.v_final[0].tolist() == exp["v_final"], name


def test_golden_cases_on_the_numpy_reference(golden):
    for case in golden["cases"]:
        exp = case["expected"]
        r = reference.simulate(golden_network(case), np.array(case["frames"]), core_of=case["core_of"],
                               **golden_kwargs(case))
        assert [list(t) for t in r["trace"]] == exp["trace"], case["name"]
        assert r["out_counts"].tolist() == exp["out_counts"]
        assert (r["synaptic_operations"], r["steps"], r["unreleased"]) == (exp["synops"], exp["steps"], exp["unreleased"])
        assert r["v_final"].tolist() == exp["v_final"]
