//! Throughput of the emulator alone (no Python): effective synaptic operations per second on
//! a 2312-64-64-64-10 network with N-MNIST-like input, in `steps` and `events` mode, one thread.
//!
//! The **limit probe** replays the releases of the `steps` run (the same sources, counts and
//! order, step by step) through a bare loop that only accumulates each released source's
//! weight row into an array of potentials (CSR: one target index and one weight per synapse):
//! what one core can do for these synaptic operations with no scheduling, firing or
//! bookkeeping. `steps` mode is reported as a share of it (issue 23's target: at least 25%).
//! Every row and probe is timed once per round, so that a probe is timed next to the `steps`
//! run it is compared with: the share is printed as the ratio of the best times, and as the
//! median over the rounds of the ratio within a round ("paired", which a change of the
//! machine's speed during the run does not move).
//!
//! `cargo bench -p asyncsnn-emulator` (or `-- --quick`). The full comparison with the numpy
//! baseline and the 20 000-neuron chip is `benchmarks/emulator_throughput.py`.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::time::Instant;

use emulator::{
    ChipConfig, Emulator, Mapping, Mode, Network, Population, Projection, Reset, RunOptions,
    SampleInput, Scheduler, Source, Weights,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The 2312-64-64-64-10 network; `grid`: weights on the 1/64 grid (about 10% of them round to
/// zero and are not stored), else plain floats (every synapse stored: dense blocks).
fn network(rng: &mut Rng, grid: bool) -> Network {
    let sizes = [2312usize, 64, 64, 64, 10];
    let mut pops = Vec::new();
    let mut projs = Vec::new();
    for (i, w) in sizes.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        let scale = 3.0 / (a as f64).sqrt();
        let data: Vec<f32> = (0..a * b)
            .map(|_| {
                let w = rng.normal() * scale + 3.0 / a as f64;
                if grid {
                    (w * 64.0).round() as f32 / 64.0
                } else {
                    w as f32
                }
            })
            .collect();
        pops.push(Population::lif(b, 1.0, 0.875, Reset::Subtract, false));
        let source = if i == 0 {
            Source::Input
        } else {
            Source::Population(i - 1)
        };
        projs.push(Projection {
            source,
            target: i,
            weights: Weights::Dense {
                rows: b,
                cols: a,
                data,
            },
        });
    }
    Network::new(2312, pops, projs, 3).expect("valid network")
}

/// Per source (input channels, then neurons), its synapses as CSR rows: `(row start, targets,
/// weights)`, in the emulator's numbering.
fn csr(net: &Network, sizes: &[usize]) -> (Vec<usize>, Vec<u32>, Vec<f32>) {
    let n_in = sizes[0];
    let offsets: Vec<usize> = sizes[1..]
        .iter()
        .scan(0, |acc, &n| {
            let o = *acc;
            *acc += n;
            Some(o)
        })
        .collect();
    let n_sources = n_in + sizes[1..].iter().sum::<usize>();
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_sources];
    for p in net.projections() {
        let Weights::Dense {
            rows: r,
            cols,
            data,
        } = &p.weights
        else {
            panic!("dense projections only")
        };
        let src0 = match p.source {
            Source::Input => 0,
            Source::Population(i) => n_in + offsets[i],
        };
        for t in 0..*r {
            for c in 0..*cols {
                let w = data[t * cols + c];
                if w != 0.0 {
                    rows[src0 + c].push(((offsets[p.target] + t) as u32, w));
                }
            }
        }
    }
    let mut start = vec![0usize];
    let (mut targets, mut weights) = (Vec::new(), Vec::new());
    for row in rows {
        for (t, w) in row {
            targets.push(t);
            weights.push(w);
        }
        start.push(targets.len());
    }
    (start, targets, weights)
}

/// The bare accumulation loop over recorded releases: synaptic operations per second.
/// `blocks`: a row whose targets are consecutive is added as one block (no index loads: the
/// loop vectorises), the limit for dense projections. `hot`: every release reads one of the
/// first 32 sources' rows instead of its own, so that the weights stay in the core's caches
/// (the compute limit, without the memory traffic of the workload's 1.2 MB of synapses).
fn limit_probe(
    releases: &[Vec<(u32, u32)>],
    csr: &(Vec<usize>, Vec<u32>, Vec<f32>),
    n: usize,
    blocks: bool,
    hot: bool,
) -> (f64, u64) {
    let (start, targets, weights) = csr;
    let mut acc = vec![0f32; n];
    let mut ops = 0u64;
    let t0 = Instant::now();
    for sample in releases {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for &(s, c) in sample {
            let s = if hot { s % 32 } else { s };
            let (b, e) = (start[s as usize], start[s as usize + 1]);
            let c = c as f32;
            let ts = &targets[b..e];
            let t0 = ts.first().map_or(0, |&t| t as usize);
            if blocks && ts.last().is_some_and(|&t| t as usize == t0 + ts.len() - 1) {
                for (a, &w) in acc[t0..t0 + ts.len()].iter_mut().zip(&weights[b..e]) {
                    *a += w * c;
                }
            } else {
                for (&t, &w) in ts.iter().zip(&weights[b..e]) {
                    acc[t as usize] += w * c;
                }
            }
            ops += (e - b) as u64;
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    std::hint::black_box(&acc);
    (ops as f64 / dt, ops)
}

/// Timed runs per row; the best is reported.
const REPEAT: usize = 7;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo bench -p asyncsnn-emulator -- NAME`: only the runs whose label contains NAME
    // (for profiling one of them); the limit probes run only without a filter.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let batch = if quick { 8 } else { 32 };
    let mut rng = Rng(0x5eed);
    let net = network(&mut rng, true);
    let dense_net = network(&mut Rng(0x5eed), false);
    let inputs: Vec<SampleInput> = (0..batch)
        .map(|_| {
            let counts: Vec<u32> = (0..30 * 2312)
                .map(|_| u32::from(rng.unit() < 0.05))
                .collect();
            SampleInput::from_dense(&counts, 30, 2312).expect("valid input")
        })
        .collect();
    let mut ideal = ChipConfig::preset("ideal").expect("preset");
    ideal.mesh_width = 2;
    ideal.mesh_height = 2;
    ideal.core.neurons = 64;
    let ideal_steps = ideal.clone();
    let loihi = ChipConfig::preset("loihi").expect("preset");
    let sizes = [2312usize, 64, 64, 64, 10];
    let repeat = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(REPEAT);
    let mut rows = Vec::new();
    for (label, net, chip, mode) in [
        ("steps, 4 cores", &net, ideal.clone(), Mode::Steps),
        (
            "steps, 4 cores, float weights",
            &dense_net,
            ideal.clone(),
            Mode::Steps,
        ),
        (
            "events, 4 cores, zero-cost timing",
            &net,
            ideal,
            Mode::Events,
        ),
        ("events, loihi timing", &net, loihi, Mode::Events),
    ] {
        if only.as_deref().is_some_and(|o| !label.contains(o)) {
            continue;
        }
        let emu = Emulator::new(net, chip, &Mapping::Auto).expect("fits");
        let opts = RunOptions {
            mode,
            scheduler: Scheduler::Random,
            f: Some(16),
            threads: Some(1),
            ..Default::default()
        };
        let res = emu.run(&inputs, None, &opts).expect("runs");
        rows.push((label, emu, opts, res, f64::INFINITY));
    }
    // The limit probes replay the releases of the steps runs (same inputs, options and chip).
    let n: usize = sizes[1..].iter().sum();
    let mut replays = Vec::new();
    let mut probes = Vec::new();
    if only.is_none() {
        for (net, steps_label, list) in [
            (
                &net,
                "steps, 4 cores",
                [
                    ("limit probe, indexed rows", false, false),
                    ("limit probe, indexed rows in cache", false, true),
                ],
            ),
            (
                &dense_net,
                "steps, 4 cores, float weights",
                [
                    ("limit probe, float weights, dense blocks", true, false),
                    ("limit probe, float weights, in cache", true, true),
                ],
            ),
        ] {
            let emu = Emulator::new(net, ideal_steps.clone(), &Mapping::Auto).expect("fits");
            let opts = RunOptions {
                scheduler: Scheduler::Random,
                f: Some(16),
                threads: Some(1),
                trace: true,
                ..Default::default()
            };
            let res = emu.run(&inputs, None, &opts).expect("runs");
            let releases: Vec<Vec<(u32, u32)>> = res
                .iter()
                .map(|r| r.releases.iter().map(|e| (e.source, e.count)).collect())
                .collect();
            let synops: u64 = res.iter().map(|r| r.metrics.synaptic_operations).sum();
            let k = rows
                .iter()
                .position(|r| r.0 == steps_label)
                .expect("steps row");
            replays.push(Replay {
                steps_row: k,
                releases,
                rows: csr(net, &sizes),
                synops,
            });
            for (label, blocks, hot) in list {
                probes.push(Probe {
                    label,
                    replay: replays.len() - 1,
                    blocks,
                    hot,
                    best: 0.0,
                    paired: Vec::new(),
                });
            }
        }
    }
    // Rounds: every row once, then every probe once, so that a probe and the steps run it is
    // compared with are timed next to each other (this VM's speed changes by up to a third from
    // one second to the next); each row's best time is reported, and each probe's share as the
    // ratio of the bests and as the median of the ratios within a round.
    for _ in 0..repeat {
        let mut rates = Vec::new();
        for (_, emu, opts, res, dt) in &mut rows {
            let t0 = Instant::now();
            *res = emu.run(&inputs, None, opts).expect("runs");
            let t = t0.elapsed().as_secs_f64();
            *dt = dt.min(t);
            let synops: u64 = res.iter().map(|r| r.metrics.synaptic_operations).sum();
            rates.push(synops as f64 / t);
        }
        for p in &mut probes {
            let r = &replays[p.replay];
            let (rate, ops) = limit_probe(&r.releases, &r.rows, n, p.blocks, p.hot);
            if !p.hot {
                assert_eq!(
                    ops, r.synops,
                    "the probe replays exactly the run's synaptic operations"
                );
            }
            p.best = p.best.max(rate);
            p.paired.push(rates[r.steps_row] / rate);
        }
    }
    for (label, _, _, res, dt) in &rows {
        let synops: u64 = res.iter().map(|r| r.metrics.synaptic_operations).sum();
        let spikes: u64 = res.iter().map(|r| r.metrics.spikes).sum();
        println!(
            "{label:40} {:>10.3e} synops/s  ({synops} synops, {:.1} spikes/sample, {dt:.3} s)",
            synops as f64 / dt,
            spikes as f64 / batch as f64
        );
        if std::env::var_os("BENCH_COUNTS").is_some() {
            let m = |f: fn(&emulator::Metrics) -> u64| {
                res.iter().map(|r| f(&r.metrics)).sum::<u64>() as f64 / batch as f64
            };
            println!(
                "  per sample: steps {:.0}, membrane updates {:.0}, packets {:.0}",
                m(|x| x.steps),
                m(|x| x.membrane_updates),
                m(|x| x.packets)
            );
        }
    }
    for p in &mut probes {
        let (_, _, _, res, dt) = &rows[replays[p.replay].steps_row];
        let steps: u64 = res.iter().map(|r| r.metrics.synaptic_operations).sum();
        let steps_best = steps as f64 / dt;
        p.paired.sort_by(f64::total_cmp);
        let median = p.paired[p.paired.len() / 2];
        println!(
            "{:40} {:>10.3e} synops/s  (bare accumulation of the same releases); steps mode: \
             {:.1}% of it, {:.1}% paired (target: 25%)",
            p.label,
            p.best,
            100.0 * steps_best / p.best,
            100.0 * median
        );
    }
}

/// What the limit probes of one network replay: the releases of its steps run, its rows as
/// CSR, and the run's synaptic operations.
struct Replay {
    /// The steps row whose releases these are.
    steps_row: usize,
    releases: Vec<Vec<(u32, u32)>>,
    rows: (Vec<usize>, Vec<u32>, Vec<f32>),
    synops: u64,
}

/// A limit probe: the replay it runs (index into the replays), how, and its timings.
struct Probe {
    label: &'static str,
    replay: usize,
    blocks: bool,
    hot: bool,
    best: f64,
    /// The steps row's rate over the probe's, round by round.
    paired: Vec<f64>,
}
