//! Throughput of the emulator alone (no Python): effective synaptic operations per second on
//! a 2312-64-64-64-10 network with N-MNIST-like input, in `steps` and `events` mode, one thread.
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

fn network(rng: &mut Rng) -> Network {
    let sizes = [2312usize, 64, 64, 64, 10];
    let mut pops = Vec::new();
    let mut projs = Vec::new();
    for (i, w) in sizes.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        let scale = 3.0 / (a as f64).sqrt();
        let data: Vec<f32> = (0..a * b)
            .map(|_| ((rng.normal() * scale + 3.0 / a as f64) * 64.0).round() as f32 / 64.0)
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let batch = if quick { 8 } else { 32 };
    let mut rng = Rng(0x5eed);
    let net = network(&mut rng);
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
    let loihi = ChipConfig::preset("loihi").expect("preset");
    for (label, chip, mode) in [
        ("steps, 4 cores", ideal.clone(), Mode::Steps),
        ("events, 4 cores, zero-cost timing", ideal, Mode::Events),
        ("events, loihi timing", loihi, Mode::Events),
    ] {
        let emu = Emulator::new(&net, chip, &Mapping::Auto).expect("fits");
        let opts = RunOptions {
            mode,
            scheduler: Scheduler::Random,
            f: Some(16),
            threads: Some(1),
            ..Default::default()
        };
        let _ = emu.run(&inputs, None, &opts).expect("runs");
        let t0 = Instant::now();
        let res = emu.run(&inputs, None, &opts).expect("runs");
        let dt = t0.elapsed().as_secs_f64();
        let synops: u64 = res.iter().map(|r| r.metrics.synaptic_operations).sum();
        let spikes: u64 = res.iter().map(|r| r.metrics.spikes).sum();
        println!(
            "{label:40} {:>10.3e} synops/s  ({synops} synops, {:.1} spikes/sample, {dt:.3} s)",
            synops as f64 / dt,
            spikes as f64 / batch as f64
        );
    }
}
