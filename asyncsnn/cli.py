"""Command line: ``asyncsnn experiment | train | evaluate | export | emulate | datasets``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import __version__
from .chip import Chip
from .progress import configure, progress
from .errors import ConfigError, InputError, MappingError, NetworkError, RunawayError
from .generate import poisson_frames, random_feedforward
from .network import Network
from .options import SCHEDULERS, RunOptions, f_label, parse_f
from .runs import markdown_table, new_run_dir, write_csv, write_json

TABLE_COLUMNS = [
    ("mode", "mode", "{}"),
    ("scheduler", "sched", "{}"),
    ("F", "F", "{}"),
    ("spikes", "spikes/sample", "{:.1f}"),
    ("synaptic_operations", "synops/sample", "{:.0f}"),
    ("steps", "steps", "{:.1f}"),
    ("first_out_step", "1st-out step", "{:.1f}"),
    ("first_out_ns", "1st-out ns", "{:.0f}"),
    ("energy_total_nj", "energy nJ", "{:.2f}"),
    ("dropped", "drops", "{:.0f}"),
]


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(items: Optional[list[str]], flag: str, error: type) -> dict:
    """``KEY=VALUE`` options (values parsed as JSON where they can be) as a dict."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise error(f"invalid input: {flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = _parse_value(value.strip())
    return out


EVALUATE_COLUMNS = [
    ("engine", "engine", "{}"),
    ("accuracy", "acc", "{:.3f}"),
    ("spikes", "spikes/sample", "{:.1f}"),
    ("spike_density", "spikes/neuron/frame", "{:.3f}"),
    ("activation_sparsity", "act. sparsity", "{:.3f}"),
    ("synaptic_operations", "synops/sample", "{:.0f}"),
    ("steps", "steps", "{:.1f}"),
    ("first_out_step", "1st-out step", "{:.1f}"),
    ("first_correct_step", "1st-correct step", "{:.1f}"),
    ("first_correct_spikes_before", "1st-correct spikes", "{:.1f}"),
    ("first_correct_ns", "1st-correct ns", "{:.0f}"),
    ("energy_total_nj", "energy nJ", "{:.2f}"),
]

# Neurons per core of the network `emulate` generates (spreads its 202 neurons over 7 cores).
GENERATED_CORE_NEURONS = 32


def _chip_from_args(args: argparse.Namespace, net: Optional[Network] = None, *, generated: bool = False) -> Chip:
    """The chip of ``--chip``, ``--core-neurons`` and ``--set``, with the mesh grown to fit the
    network's own core mapping (see :meth:`Chip.fitting`). Without ``--core-neurons`` the chip
    keeps its own core capacity (a generated network is spread over cores of 32), so a network
    exported with its placement runs on the cores it was placed on."""
    overrides = _key_values(args.set, "--set", ConfigError)
    core = args.core_neurons if args.core_neurons is not None else (GENERATED_CORE_NEURONS if generated else 0)
    if core:
        overrides.setdefault("core_neurons", core)
    return Chip.fitting(args.chip, net, **overrides)


def _test_data(d, net: Network, limit: Optional[int]) -> tuple[np.ndarray, np.ndarray, str]:
    """The test set of the dataset ``d`` (a config's ``[data]``) as ``net`` takes it: binned
    with the frame length the network was trained on (its file says; else ``d.dt``) and, for a
    converted or deployed SPSN network, with the bias channel; the first ``limit`` samples."""
    from . import data

    dt = d.dt if net.dt is None else net.dt
    x, y, _ = data.to_arrays(d.load(dt=dt).test)
    if limit:
        x, y = x[:limit], y[:limit]
    if net.n_inputs == x.shape[2] + 1:  # a converted or deployed SPSN network's bias channel
        from .spsn.deploy import with_bias

        x = with_bias(x).astype(np.float32)
    return x, y, f"{len(y)} test samples of {d.name} (frames of {dt} us)"


def _options_from_args(base: RunOptions, **flags) -> RunOptions:
    """``base`` with the command line's run-option flags that were given (an error names the
    flag)."""
    try:
        return base.replace(**{k: v for k, v in flags.items() if v is not None})
    except InputError as e:
        raise InputError(f"invalid input: --{e.field}: {e.detail}") from None  # type: ignore[attr-defined]


_EMULATE_KEEP = ("resume", "no_progress", "no_plots", "debug", "quiet", "func", "executor", "workers", "address")  # not taken from the run resumed


def _emulate_resumed(args: argparse.Namespace) -> tuple[Path, list[dict]]:
    """The run folder of an interrupted ``emulate``, its arguments restored into ``args``, and the
    rows it finished."""
    run_dir = Path(args.resume)
    try:
        saved = json.loads((run_dir / "config.json").read_text())
        status = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"invalid input: --resume: {run_dir} is not an emulate run folder ({e})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("arguments"), dict) or status.get("command") != "emulate":
        raise InputError(f"invalid input: --resume: {run_dir} is not an emulate run folder")
    saved = saved["arguments"]
    if status.get("state") == "finished":
        raise InputError(f"invalid input: --resume: {run_dir} has finished already (its results are complete)")
    for k in vars(args):
        if k not in _EMULATE_KEEP and k in saved:
            setattr(args, k, saved[k])
    rows = []
    if (run_dir / "results.json").exists():
        rows = json.loads((run_dir / "results.json").read_text()).get("rows", [])
    return run_dir, rows


def cmd_emulate(args: argparse.Namespace) -> int:
    run, done = None, []
    resumed = None
    if args.resume:
        resumed, done = _emulate_resumed(args)
    generated = not args.network
    if args.network:
        run, net_path = _run_or_network(args.network)
        net = _load_network(net_path, args.nir_dt)
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
        net = random_feedforward(sizes, seed=args.seed, refractory=args.refractory, beta=args.beta)
    chip = _chip_from_args(args, net, generated=generated)  # (a resumed run: the same arguments, the same chip)
    labels = None
    if run is not None:  # a training run: its own test data, so the table has an accuracy
        from .train import load_config

        x, labels, inputs = _test_data(load_config(run / "config.json").data, net, args.batch)
    else:
        x = poisson_frames(args.batch, args.frames, net.n_inputs, args.rate, seed=args.seed + 1)
        inputs = f"{args.batch} samples x {args.frames} frames of Poisson input at rate {args.rate}"
    placement = chip.place(net)
    # a trained network runs as it was trained (scheduler, F, input mode, step caps) unless the
    # flags say otherwise; a generated one with every scheduler at F = 1 and inf
    trained = net.run_options
    base = RunOptions() if trained is None else trained
    sched_arg = args.scheduler or ("all" if trained is None else trained.scheduler)
    schedulers = SCHEDULERS if sched_arg == "all" else [sched_arg]
    modes = ["steps", "events"] if args.mode == "both" else [args.mode]
    f_arg = args.F if args.F is not None else ("1,inf" if trained is None else str(trained.f_label))
    f_values = [parse_f(f, "--F") for f in f_arg.split(",")]
    if resumed is None:
        run_dir = new_run_dir(args.out, "emulate")
        config = {k: v for k, v in vars(args).items() if k not in _EMULATE_KEEP}
        config.update(arguments=dict(config), chip=chip.config, n_inputs=net.n_inputs, n_neurons=net.n_neurons,
                      version=__version__)
        write_json(run_dir / "config.json", config)
        if generated:
            net.save(run_dir / "network.npz")
    else:
        run_dir = resumed
    cells = [(m, s, f) for m in modes for s in schedulers for f in f_values]
    key = lambda m, s, fl: (m, s, str(fl))  # noqa: E731  (a row's cell)
    finished = {key(r["mode"], r["scheduler"], r["F"]) for r in done}
    rows, first = list(done), None
    max_work = None if args.max_work == 0 else args.max_work

    def save(state: str) -> None:
        # rows in the order of the cells, whatever order they finished in
        order = {key(m, s, f_label(f)): i for i, (m, s, f) in enumerate(cells)}
        rows.sort(key=lambda r: order.get(key(r["mode"], r["scheduler"], r["F"]), len(order)))
        write_csv(run_dir / "summary.csv", rows)
        write_json(run_dir / "results.json", {"rows": rows, "complete": state == "finished",
                                               "elapsed_s": time.perf_counter() - t0, "usage": {
                                                   k: v.tolist() for k, v in placement.usage().items()}})
        write_json(run_dir / "status.json", {"command": "emulate", "state": state, "cells_done": len(rows),
                                              "cells": len(cells)})

    executor = None
    if args.address and args.executor != "ray":
        raise ConfigError("invalid input: --address: only with --executor ray")
    if args.executor != "threads":
        from .executors import make_executor

        executor = make_executor(args.executor, workers=args.workers, address=args.address)
    t0 = time.perf_counter()
    write_json(run_dir / "status.json", {"command": "emulate", "state": "running", "cells_done": len(rows),
                                          "cells": len(cells)})
    todo = [c for c in cells if key(c[0], c[1], f_label(c[2])) not in finished]
    try:
        for mode, sched, f in progress(todo, desc="emulate", enabled=not args.no_progress):
            opts = _options_from_args(base, mode=mode, scheduler=sched, F=f, seed=args.seed, threads=args.threads,
                                      trace=first is None)
            res = placement.run(x, opts, labels=labels, max_work=max_work, executor=executor)
            if first is None:
                first = (opts, res)
            s = res.summary()
            s["dropped"] = s.get("dropped_link", 0.0) + s.get("dropped_buffer", 0.0)
            s["energy_total_nj"] = s.get("energy_total_pj", float("nan")) / 1000.0
            rows.append({"mode": mode, "scheduler": sched, "F": opts.f_label, **s})
            save("running")  # (a killed run keeps what finished)
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        save("interrupted" if interrupted else "failed")
        print(f"asyncsnn: {len(rows)} of {len(cells)} runs done and kept in {run_dir}; "
              f"continue with: asyncsnn emulate --resume {run_dir}", file=sys.stderr)
        raise
    finally:
        if executor is not None:
            executor.close()
    elapsed = time.perf_counter() - t0
    save("finished")
    columns = TABLE_COLUMNS if labels is None else [*TABLE_COLUMNS[:3], ("accuracy", "acc", "{:.3f}"),
                                                     *TABLE_COLUMNS[3:]]
    table = markdown_table(rows, columns, aligned=True)
    (run_dir / "summary.md").write_text(table + "\n")
    if not args.no_plots and first is not None:
        from .plots import core_heatmap, spike_raster

        opts, res = first
        cfg = chip.config
        o0 = net.population_starts[net.output_index]
        spike_raster(res.trace, 0, run_dir / "raster.png", boundaries=net.population_starts[1:],
                     title=f"sample 0, {opts.mode} mode, {opts.scheduler}, F={opts.f_label}",
                     output=(o0, o0 + net.n_outputs), n_neurons=net.n_neurons,
                     tick_ns=cfg["tick_ns"] if opts.mode == "events" else None)
        core_heatmap(res.core_spikes.mean(axis=0), cfg["mesh_width"], cfg["mesh_height"], run_dir / "cores.png",
                     title="mean spikes per core and sample", used=placement.usage()["neurons"] > 0)
    print(f"chip {chip.name} ({chip.n_cores} cores), network {net.n_inputs}->"
          f"{'-'.join(str(p.size) for p in net.populations)}, {inputs}"
          + ("" if trained is None else f"; trained for {trained.scheduler}, F={trained.f_label}, "
                                        f"{trained.input_mode} input"))
    print(table)
    print(f"\n{len(todo)} runs in {elapsed:.2f} s" + (f" ({len(cells) - len(todo)} done before)" if done else "")
          + f"; results in {run_dir}")
    return 0


def _generate_spoken_digits(args: argparse.Namespace, options: dict) -> int:
    from .data import data_root, speech

    if args.speakers is not None:
        options["speakers"] = args.speakers
    cfg = speech.config(options)
    folder = Path(args.out) if args.out else speech.default_folder(data_root(args.data_dir))
    try:
        manifest = speech.generate(cfg, folder, jobs=args.jobs, show_progress=not args.no_progress, force=args.force)
    except speech.GenerationError as e:
        print(f"asyncsnn: error: {e}", file=sys.stderr)
        return 2
    files = manifest["files"]
    print(f"generated {speech.NAME}: {files['SHD/shd_train.h5']['samples']} train samples "
          f"({len(files['SHD/shd_train.h5']['speakers'])} speakers), {files['SHD/shd_test.h5']['samples']} test "
          f"samples ({len(files['SHD/shd_test.h5']['speakers'])} other speakers), {manifest['channels']} channels, "
          f"in {manifest['seconds']:.0f} s with {manifest['jobs']} worker(s); SHD layout in {folder}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from . import data

    if args.action == "list":
        print("generated (embedded, no download):")
        for name in data.GENERATED:
            print(f"  {name}")
        print("synthesized (made once into files by `asyncsnn datasets generate NAME`):")
        print("  spoken-digits  digits 0-9 in English and German: espeak-ng voices through lauscher's cochlea "
              "model, in SHD's layout (needs espeak-ng and asyncsnn[speech])")
        from .data import speech

        folder = speech.default_folder(data.data_root(args.data_dir))
        made = (folder / speech.MANIFEST).is_file()
        print(f"                 {'made in' if made else 'not made yet; would go to'} {folder}")
        print(f"recorded (through tonic; data root {data.data_root(args.data_dir)}):")
        for name in data.RECORDED:
            src = data.SOURCES[name]
            archive = src["files"]["train"][0]
            print(f"  {name:11s} {src['title']}: {src['url']} -> {Path(archive).parent}/  ({src['license']})")
        return 0
    if not args.name:
        raise InputError("invalid input: name: give a dataset name (see `asyncsnn datasets list`)")
    options = _key_values(args.option, "--option", InputError)
    if args.action == "stats":
        splits = data.load(args.name, data_dir=args.data_dir, **options)
        rows = [split.stats(progress=not args.no_progress) for split in (splits.train, splits.test)]
        if args.json:
            for st in rows:
                print(json.dumps(st))
            return 0
        for st in rows:
            counts = st["class_counts"]
            st["per_class"] = f"{min(counts)}-{max(counts)}" if counts else "-"
            st["duration_ms"] = st["duration_us_mean"] / 1000.0
        print(markdown_table(rows, [("split", "split", "{}"), ("samples", "samples", "{}"),
                                    ("channels", "channels", "{}"), ("classes", "classes", "{}"),
                                    ("per_class", "samples per class", "{}"),
                                    ("events_per_sample_mean", "events/sample", "{:.0f}"),
                                    ("events_per_sample_max", "max events", "{}"),
                                    ("duration_ms", "duration ms", "{:.1f}")], aligned=True))
        return 0
    if args.action == "generate" and args.name in data.SYNTHESIZED:
        return _generate_spoken_digits(args, options)
    if args.speakers is not None or args.jobs is not None or args.force:
        raise InputError("invalid input: --speakers, --jobs and --force apply to `datasets generate spoken-digits` only")
    if args.action == "generate":
        if args.name not in data.GENERATED:
            raise InputError(f"invalid input: name: {args.name!r} is not generated; "
                             f"choose {data.GENERATED + data.SYNTHESIZED}")
        splits = data.load(args.name, dt=args.dt, data_dir=args.data_dir, progress=not args.no_progress, **options)
        for split in (splits.train, splits.test):
            len(split)
        cache = data.data_root(args.data_dir) / "cache"
        print(f"generated {args.name}: {len(splits.train)} train, {len(splits.test)} test samples; "
              f"frames of {args.dt} us cached in {cache}")
        return 0
    if args.action == "plot":
        from .plots import event_image, event_raster

        splits = data.load(args.name, data_dir=args.data_dir, **options)
        ds = splits.train if args.split == "train" else splits.test
        if not 0 <= args.index < len(ds):
            raise InputError(f"invalid input: index: {args.index} is outside 0..{len(ds)}")
        ev, label = ds[args.index]
        out = Path(args.out or f"{args.name}-{args.split}-{args.index}.png")
        info = ds.info
        title = f"{args.name} {args.split}[{args.index}], class {info.classes[label]}"
        if len(info.sensor_size) == 3 and info.sensor_size[1] > 1:
            event_image(ev, info.sensor_size, out, title=title)
        else:
            event_raster(ev, out, title=title)
        print(f"wrote {out}")
        return 0
    raise InputError(f"invalid input: action: {args.action!r}")  # pragma: no cover


def _run_or_network(path: str) -> tuple[Optional[Path], Path]:
    """A run folder (with network.npz) or a network file."""
    p = Path(path)
    if p.is_dir():
        if not (p / "network.npz").exists():
            raise FileNotFoundError(f"{p} has no network.npz (train it to the end, or give a network file)")
        return p, p / "network.npz"
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist (give a run folder, a network .npz file or a NIR .nir file)")
    return None, p


def _experiment_config_from_args(args: argparse.Namespace):
    from .experiment import load_experiment_config

    overrides = _key_values(args.set, "--set", ConfigError)
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    if args.only is not None:
        overrides["experiment.only"] = args.only
    if args.out:
        overrides["out"] = args.out
    return load_experiment_config(args.config, overrides, full=args.full)


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment import EVENTS_COLUMNS, SUMMARY_COLUMNS, load_experiment_config, run_experiment, steps_engine

    if args.print_config:
        from .experiment import listing

        print(listing(full=args.full))
        return 0
    from .executors import make_executor
    from .experiment import StudyError

    if args.address and args.executor != "ray":
        raise ConfigError("invalid input: --address: only with --executor ray")
    if args.resume:
        given = [f for f, v in (("--config", args.config), ("--set", args.set), ("--epochs", args.epochs),
                                ("--only", args.only), ("--out", args.out), ("--full", args.full)) if v]
        if given:
            raise ConfigError(f"invalid input: --resume continues a study with its own config; drop {', '.join(given)}")
    else:
        cfg = _experiment_config_from_args(args)  # (checked before any worker starts)
    executor = make_executor(args.executor, workers=args.workers, address=args.address)
    try:
        if args.resume:
            from .experiment import resume_experiment

            res = resume_experiment(args.resume, progress=not args.no_progress, plots=not args.no_plots,
                                    executor=executor)
            cfg = load_experiment_config(Path(args.resume) / "config.json")
        else:
            res = run_experiment(cfg, progress=not args.no_progress, plots=not args.no_plots, executor=executor)
    except StudyError as e:
        print(f"asyncsnn: error: {e}", file=sys.stderr)
        return 1

    e = cfg.experiment
    steps = steps_engine(e.modes)
    print(f"Layered versus unlayered training, both run asynchronously ({', '.join(e.schedulers)}; "
          f"F in {[f_label(f) for f in e.F]}); chip {e.chip}, {steps}:")
    print(markdown_table(res.summary_rows(steps), SUMMARY_COLUMNS))
    if "events" in e.modes:
        print("\nOn the chip in events mode (network-on-chip latency and energy):")
        print(markdown_table(res.summary_rows("emulator-events"), EVENTS_COLUMNS))
    for s in res.skipped:
        print(f"skipped {s['dataset']}: {s['reason'].splitlines()[0]}")
    print(f"\n{res.seconds:.0f} s; results, tables and plots in {res.run_dir} (summary.md explains the columns)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import load_config, resume, train

    if args.print_config:
        from .train.config import Config

        print(Config.listing())
        return 0
    if args.resume:
        trainer = resume(args.resume, epochs=args.epochs, progress=not args.no_progress)
    else:
        overrides = _key_values(args.set, "--set", ConfigError)
        if args.epochs is not None:
            overrides["train.epochs"] = args.epochs
        if args.out:
            overrides["out"] = args.out
        trainer = train(load_config(args.config, overrides), progress=not args.no_progress)
    cols = [("epoch", "epoch", "{:.0f}"), ("train_loss", "loss", "{:.3f}"), ("train_accuracy", "train acc", "{:.3f}"),
            ("test_accuracy", "test acc", "{:.3f}"), ("test_spikes", "spikes/sample", "{:.1f}"),
            ("test_synaptic_operations", "synops/sample", "{:.0f}"), ("test_steps", "steps", "{:.1f}"),
            ("test_first_correct_step", "1st-correct step", "{:.1f}"), ("seconds", "s", "{:.1f}")]
    cfg = trainer.cfg
    model, after = trainer.method.describe(trainer)
    print(f"{cfg.data.name}: {len(trainer.train_set)} train / {len(trainer.test_set)} test samples; {model}")
    print(markdown_table(trainer.history, cols))
    print(f"run folder: {trainer.run_dir} ({after})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train import load_config
    from .train.export import evaluate_side_by_side, quantize_network

    run, net_path = _run_or_network(args.model)
    cfg_path = args.config or (run / "config.json" if run is not None else None)
    cfg = load_config(cfg_path)
    net = _load_network(net_path, args.nir_dt)
    chip = _chip_from_args(args, net)
    if args.quantize:
        net = quantize_network(net, chip.config["arithmetic"])
    # the network file says what it was trained for: its run options and frame length (the
    # config, of the run or --config, says which dataset)
    x, y, inputs = _test_data(cfg.data, net, args.limit)
    t = cfg.train
    trained_for = net.run_options if net.run_options is not None else t.run_options(seed=t.seed)
    opts = _options_from_args(trained_for, F=args.F, scheduler=args.scheduler)
    modes = [m for m in args.modes.split(",") if m]
    rows = evaluate_side_by_side(net, x, y, opts, chip=chip, modes=modes)
    out_dir = new_run_dir(args.out, "evaluate")
    write_json(out_dir / "config.json", {"model": str(net_path), "config": cfg.to_dict(), "chip": chip.config,
                                         "run": opts.to_dict(), "quantize": args.quantize})
    write_csv(out_dir / "evaluate.csv", rows)
    write_json(out_dir / "results.json", {"rows": rows})
    for row in rows:
        row["energy_total_nj"] = row.get("energy_total_pj", float("nan")) / 1000.0
    table = markdown_table(rows, EVALUATE_COLUMNS, aligned=True)
    (out_dir / "evaluate.md").write_text(table + "\n")
    print(f"{inputs}, scheduler {opts.scheduler}, F={opts.f_label}, chip {chip.name}"
          + (" (run options of the network file)" if net.run_options is not None else ""))
    print(table)
    print(f"results in {out_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .train.export import export_network

    _, net_path = _run_or_network(args.model)
    net = _load_network(net_path, args.nir_dt)
    chip = _chip_from_args(args, net)
    out = Path(args.output)
    if out.suffix == ".nir":
        from . import nir as nir_io
        from .train.export import quantize_network

        dt = args.nir_dt if args.nir_dt is not None else (net.dt * 1e-6 if net.dt else None)
        if dt is None:
            raise InputError("invalid input: --nir-dt: the network records no frame length; give it in seconds")
        if args.quantize:
            net = quantize_network(net, chip.config["arithmetic"])
        nir_io.write(net, out, dt=dt, bias_channel=args.bias_channel)
        print(f"wrote {out} (NIR, frames of {dt:g} s{', quantised to ' + chip.name + ' fixed point' if args.quantize else ''})")
        return 0
    export_network(net, out, chip=chip, quantize=args.quantize)
    print(f"wrote {out} ({'quantised to ' + chip.name + ' fixed point, ' if args.quantize else ''}placement on "
          f"{chip.name} checked)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from . import nir as nir_io

    graph = nir_io.read(args.file)
    net = nir_io.from_nir(graph, args.dt, approximate=args.approximate)
    out = net.save(args.output)
    inputs = next(iter(graph.nodes[n] for n in graph.nodes if type(graph.nodes[n]).__name__ == "Input"))
    m = int(np.prod(np.asarray(inputs.input_type["input"])))
    pops = "-".join(str(p.size) for p in net.populations)
    bias = " + the bias channel (feed it one event per frame)" if net.n_inputs == m + 1 else ""
    print(f"read {args.file}: {m} inputs{bias} -> {pops}, {len(net.projections)} projections; wrote {out}")
    return 0


def _load_network(path: Path, nir_dt: Optional[float]) -> Network:
    """A network file: asyncsnn's ``.npz``, or a NIR graph (``.nir``) for frames of ``nir_dt`` s."""
    if path.suffix == ".nir":
        from . import nir as nir_io

        if nir_dt is None:
            raise InputError("invalid input: --nir-dt: a NIR file holds continuous-time constants; give the frame "
                             "length in seconds (snnTorch exports with 1e-4, Norse with 1e-3)")
        return nir_io.from_nir(path, nir_dt)
    return Network.load(path)


DEFAULT_CHIP = "loihi"  # the one default of every command that runs or places a network


def _bounded(kind, lo: float, hi: float = float("inf"), what: str = ""):
    """An argparse type: a ``kind`` (int or float) in ``[lo, hi]``, finite; the message names the
    range (argparse adds the flag)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (lo <= v <= hi) or (kind is float and v != v):
            rng = f"{lo:g}..{hi:g}" if hi != float("inf") else f"{lo:g}.."
            raise argparse.ArgumentTypeError(f"{text} is outside {rng}{what}")
        return v
    parse.__name__ = kind.__name__
    return parse


POSITIVE = _bounded(int, 1)
NON_NEGATIVE = _bounded(int, 0)
SECONDS = _bounded(float, 1e-12, 1e9, " (seconds)")


def _add_nir_dt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nir-dt", type=SECONDS, default=None,
                   help="frame length in seconds for a NIR file (read, or written by export: default the network's dt)")


def _add_chip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chip", default=DEFAULT_CHIP, help=f"preset name (loihi, edge, ideal) or a .toml file "
                                                        f"(default: {DEFAULT_CHIP})")
    p.add_argument("--core-neurons", type=NON_NEGATIVE, default=None,
                   help="neurons per core (small values spread the network over the mesh); default: the chip's "
                        f"own (a generated network: {GENERATED_CORE_NEURONS}); 0 keeps the chip's")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a chip field, e.g. --set hop_latency_ticks=10 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asyncsnn", description="Spiking networks for asynchronous neuromorphic chips.")
    p.add_argument("--version", action="version", version=f"asyncsnn {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr (no progress lines)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("emulate", help="run a network on the emulated chip and report spikes, latency, energy")
    e.add_argument("--network", help="a training run folder (its network on its test data) or a network file "
                                     "(.npz, on Poisson input); default: a generated network")
    e.add_argument("--sizes", default="256,128,64,10", help="generated network sizes, inputs first")
    e.add_argument("--refractory", action="store_true", help="generated network: refractory neurons")
    e.add_argument("--beta", type=_bounded(float, 0.0, 1.0), default=0.9, help="generated network: leak per frame")
    _add_chip_args(e)
    e.add_argument("--mode", default="both", choices=["steps", "events", "both"])
    e.add_argument("--scheduler", default=None, choices=["all", *SCHEDULERS],
                   help="default: a trained network's own scheduler, else all")
    e.add_argument("--F", default=None, help="comma-separated release limits per core and step (inf = none); "
                                              "default: a trained network's own F, else 1,inf")
    e.add_argument("--batch", type=POSITIVE, default=64, help="samples (of a run's test set: the first N)")
    e.add_argument("--frames", type=POSITIVE, default=20)
    e.add_argument("--rate", type=_bounded(float, 0.0, 1.0, " (a probability per channel and frame)"), default=0.05, help="input events per channel and frame")
    e.add_argument("--seed", type=NON_NEGATIVE, default=0)
    e.add_argument("--threads", type=POSITIVE, default=None)
    e.add_argument("--max-work", type=NON_NEGATIVE, default=2**40, metavar="N",
                   help="refuse a run of more than N neuron updates (samples x frames x (neurons + 64)); "
                        "0: no bound (default 2^40, about 20 minutes of one core)")
    e.add_argument("--resume", metavar="RUN", default=None,
                   help="continue an interrupted emulate run folder: the runs it has not finished, same arguments")
    e.add_argument("--executor", default="threads", choices=["threads", "pool", "ray"],
                   help="threads: this process, the samples over its cores (default); pool or ray: the batch cut "
                        "into shards run by a pool of processes or Ray tasks (same results)")
    e.add_argument("--workers", type=POSITIVE, default=None, help="pool: processes (default: one per core)")
    e.add_argument("--address", default=None, help="ray: the cluster's address; default: a local instance")
    e.add_argument("--out", default="runs", help="folder for run folders")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--no-plots", action="store_true")
    _add_nir_dt(e)
    e.set_defaults(func=cmd_emulate)

    x = sub.add_parser("experiment", help="the main job: layered versus unlayered training, run asynchronously "
                                          "in PyTorch and on the emulated chip")
    x.add_argument("--config", help="TOML or JSON file (sections experiment, data, model, train) over the default")
    x.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a setting, e.g. --set experiment.schedulers=momentum,fifo --set train.epochs=4 "
                        "(repeatable)")
    x.add_argument("--full", action="store_true",
                   help="the full study: both generated datasets, spoken-digits (generated if missing), N-MNIST "
                        "and SHD when on disk (meant for a GPU)")
    x.add_argument("--epochs", type=NON_NEGATIVE, default=None, help="shortcut for --set train.epochs=N (every model)")
    x.add_argument("--only", default=None, metavar="LABELS",
                   help="shortcut for --set experiment.only=LABELS: only these datasets, e.g. --full --only spoken-digits")
    x.add_argument("--out", default=None, help="folder for run folders (default: runs)")
    x.add_argument("--executor", default="pool", choices=["pool", "sequential", "ray"],
                   help="where the study's pieces (each model's training, each scheduler and F's evaluation) run: "
                        "a pool of processes on this machine (default), one after another here, or Ray tasks")
    x.add_argument("--workers", type=POSITIVE, default=None, help="pool: processes (default: one per core)")
    x.add_argument("--address", default=None,
                   help="ray: the cluster's address (e.g. ray://head:10001 or auto); default: a local instance")
    x.add_argument("--resume", metavar="RUN", default=None,
                   help="continue an interrupted study in its run folder: trained models are loaded, an interrupted "
                        "training resumes, finished cells are kept")
    x.add_argument("--no-progress", action="store_true")
    x.add_argument("--no-plots", action="store_true")
    x.add_argument("--print-config", action="store_true",
                   help="list every key (experiment, data, model, train) with its default and meaning, and exit")
    x.set_defaults(func=cmd_experiment)

    t = sub.add_parser("train", help="train a network for asynchronous execution (or the layered baseline)")
    t.add_argument("--config", help="TOML or JSON file (sections data, model, train); default: built-in defaults")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a setting, e.g. --set train.F=16 --set model.hidden=[128,128] (repeatable)")
    t.add_argument("--epochs", type=NON_NEGATIVE, default=None, help="shortcut for --set train.epochs=N")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("--out", default=None, help="folder for run folders (default: the config's `out`, runs)")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--print-config", action="store_true",
                   help="list every config key with its default and meaning, and exit")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("evaluate", help="test metrics in the PyTorch simulator and on the emulator, side by side")
    v.add_argument("model", help="a training run folder, or a network .npz file")
    v.add_argument("--config", help="training config for the dataset and schedule (default: the run's)")
    v.add_argument("--scheduler", choices=list(SCHEDULERS), default=None, help="default: the training scheduler")
    v.add_argument("--F", default=None, help="release limit (default: the training F; inf = none)")
    v.add_argument("--modes", default="steps,events", help="emulator modes, comma-separated")
    v.add_argument("--quantize", action="store_true", help="round weights to the chip's fixed-point grid first")
    v.add_argument("--limit", type=POSITIVE, default=None, help="use only the first N test samples")
    v.add_argument("--out", default="runs", help="folder for run folders")
    _add_chip_args(v)
    _add_nir_dt(v)
    v.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("export", help="write a trained network (optionally quantised) for the chip, or as NIR")
    x.add_argument("model", help="a training run folder, a network .npz file or a NIR .nir file")
    x.add_argument("-o", "--output", required=True, help="output .npz file, or .nir for NIR (other tools)")
    x.add_argument("--quantize", action="store_true", help="round weights to the chip's fixed-point grid")
    x.add_argument("--bias-channel", action="store_true",
                   help=".nir: the last input channel is the bias channel; write its weights as Affine biases")
    _add_nir_dt(x)
    _add_chip_args(x)
    x.set_defaults(func=cmd_export)

    im = sub.add_parser("import", help="read a NIR graph (snnTorch, Norse, ...) into an asyncsnn network file")
    im.add_argument("file", help="a NIR .nir file")
    im.add_argument("-o", "--output", required=True, help="output network .npz file")
    im.add_argument("--dt", type=SECONDS, required=True,
                    help="frame length in seconds (NIR's time unit; snnTorch exports with 1e-4, Norse with 1e-3)")
    im.add_argument("--approximate", action="store_true",
                    help="allow the documented approximation (per-neuron thresholds normalised into the weights)")
    im.set_defaults(func=cmd_import)

    d = sub.add_parser("datasets", help="list, inspect, generate and plot datasets")
    d.add_argument("action", choices=["list", "stats", "generate", "plot"])
    d.add_argument("name", nargs="?", help="dataset name (see `asyncsnn datasets list`)")
    d.add_argument("--data-dir", default=None, help="data root (default $ASYNCSNN_DATA_DIR or ./datasets)")
    d.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="dataset option, e.g. --option n_classes=4 (repeatable)")
    d.add_argument("--dt", type=POSITIVE, default=1000, help="generate: frame length in microseconds")
    d.add_argument("--split", choices=["train", "test"], default="train", help="plot: split")
    d.add_argument("--index", type=NON_NEGATIVE, default=0, help="plot: sample index")
    d.add_argument("--out", default=None, help="plot: output PNG; generate spoken-digits: the dataset folder "
                                               "(default <data root>/spoken-digits)")
    d.add_argument("--speakers", type=_bounded(int, 2, 100_000), default=None,
                   help="generate spoken-digits: number of synthetic speakers (default 40)")
    d.add_argument("--jobs", type=_bounded(int, 1, 1024), default=None,
                   help="generate spoken-digits: worker processes (default: the CPUs)")
    d.add_argument("--force", action="store_true",
                   help="generate spoken-digits: replace a dataset made with another config")
    d.add_argument("--json", action="store_true", help="stats: one JSON line per split instead of a table")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_datasets)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    configure(logging.WARNING if args.quiet else logging.INFO)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("asyncsnn: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, NetworkError, InputError, MappingError, RunawayError, FileNotFoundError, ValueError,
            ImportError, MemoryError) as e:  # (ImportError: a part whose extra is not installed)
        if args.debug:
            raise
        print(f"asyncsnn: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # not the project's: one line, the traceback with --debug
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"asyncsnn: internal error: {type(e).__name__}: {first} (run with --debug for the traceback, and "
              "please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
