"""The chip model in `events` mode next to `steps` mode: packets lost or stalled, neuron
updates, energy and time, on the two workloads of emulator_throughput.py.

For each workload, one batch runs in `steps` mode and in `events` mode on the Loihi-like preset
with `overflow = "backpressure"` (the default: a full buffer stalls the sender) and with
`overflow = "drop"` (a packet in transit that finds its buffer full is lost). The figures to
compare: packets dropped (Loihi's mesh is lossless: none), neuron updates and energy per sample
(`events` mode updates a neuron once its core has processed its input, as `steps` mode does once
per step), the time in ticks and nanoseconds.

Run:  python benchmarks/chip_model.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import CHIP_B, machine, save, workload_a, workload_b  # noqa: E402

import asyncsnn  # noqa: E402

KEYS = ("spikes", "packets", "packets_delivered", "dropped_link", "dropped_buffer", "stalled_packets",
        "stall_ticks", "membrane_updates", "synaptic_operations", "energy_total_pj", "energy_neuron_pj",
        "energy_synaptic_pj", "energy_routing_pj", "energy_static_pj", "time_ns")


def row(workload: str, label: str, res) -> dict:
    m = {k: float(np.nanmean(res.metrics[k])) for k in KEYS if k in res.metrics}
    lost = m["dropped_link"] + m["dropped_buffer"]
    m["dropped_share"] = lost / m["packets"] if m["packets"] else 0.0
    return {"workload": workload, "run": label, **m}


def us(ns: float) -> str:
    return "-" if np.isnan(ns) else f"{ns / 1e3:.4g}"  # steps mode has no time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller batches (a smoke run)")
    args = ap.parse_args()
    out = {"machine": machine()}
    rows = []

    net_a, x_a = workload_a(4 if args.quick else 16)
    net_b, x_b = workload_b(2 if args.quick else 4)
    for name, net, x, extra in [("(a) 2312-64-64-64-10", net_a, x_a, {}),
                                ("(b) 20 000 neurons, 3.5M synapses", net_b, x_b, CHIP_B)]:
        for overflow in ("backpressure", "drop"):
            place = asyncsnn.Chip.preset("loihi", overflow=overflow, **extra).place(net)
            if overflow == "backpressure":
                rows.append(row(name, "steps", place.run(x, mode="steps", scheduler="random", F=16)))
            rows.append(row(name, f"events, {overflow}", place.run(x, mode="events", scheduler="random", F=16)))
    out["rows"] = rows
    get = {(r["workload"], r["run"]): r for r in rows}
    out["ratios"] = {}
    for name in dict.fromkeys(r["workload"] for r in rows):
        s, bp, dr = get[(name, "steps")], get[(name, "events, backpressure")], get[(name, "events, drop")]
        out["ratios"][f"{name}: neuron updates, events (backpressure) / steps"] = (bp["membrane_updates"]
                                                                                 / s["membrane_updates"])
        out["ratios"][f"{name}: neuron energy, events (backpressure) / steps"] = (bp["energy_neuron_pj"]
                                                                                / s["energy_neuron_pj"])
        out["ratios"][f"{name}: dynamic energy, events (backpressure) / steps"] = (
            (bp["energy_total_pj"] - bp["energy_static_pj"]) / (s["energy_total_pj"] - s["energy_static_pj"]))
        out["ratios"][f"{name}: share of packets dropped with overflow = drop"] = dr["dropped_share"]
    lines = [f"# Chip model: `events` next to `steps` ({out['machine']['date']})", "",
             f"Machine: {out['machine']['cpu']}, {out['machine']['cores']} cores; per sample, means over the batch",
             "", "| workload | run | spikes | packets | dropped | stalled packets | stall ticks | neuron updates "
             "| synaptic ops | energy total (nJ) | neuron (nJ) | synaptic (nJ) | routing (nJ) | static (nJ) | time (us) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['run']} | {r['spikes']:.0f} | {r['packets']:.0f} | {100 * r['dropped_share']:.1f}% "
            f"| {r['stalled_packets']:.0f} | {r['stall_ticks']:.3g} | {r['membrane_updates']:.4g} "
            f"| {r['synaptic_operations']:.4g} | {r['energy_total_pj'] / 1e3:.4g} | {r['energy_neuron_pj'] / 1e3:.4g} "
            f"| {r['energy_synaptic_pj'] / 1e3:.4g} | {r['energy_routing_pj'] / 1e3:.4g} "
            f"| {r['energy_static_pj'] / 1e3:.4g} | {us(r['time_ns'])} |")
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.3g} |" for k, v in out["ratios"].items()]
    md = "\n".join(lines)
    path = save("chip_model_quick" if args.quick else "chip_model", out, md)
    print(md)
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
