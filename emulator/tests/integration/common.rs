//! Helpers shared by the integration tests.

use emulator::{
    ChipConfig, Choice, Emulator, InputMode, Mapping, Network, NeuronKind, Population, Projection,
    Reset, RunOptions, SampleInput, SampleResult, Scheduler, Source, Weights,
};
use serde_json::Value;

pub fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/execution_model.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden json")
}

pub fn ideal(n_cores: u32) -> ChipConfig {
    let mut c = ChipConfig::preset("ideal").unwrap();
    c.mesh_width = n_cores.max(1);
    c
}

pub fn pop(size: usize, theta: f32, beta: f32, reset: Reset, refractory: bool) -> Population {
    Population::lif(size, theta, beta, reset, refractory)
}

pub fn dense(rows: usize, cols: usize, data: Vec<f32>) -> Weights {
    Weights::Dense { rows, cols, data }
}

/// Network, mapping, options and input of one golden case.
pub fn case_setup(c: &Value) -> (Network, Mapping, u32, RunOptions, SampleInput) {
    let n_inputs = c["n_inputs"].as_u64().unwrap() as usize;
    let pops: Vec<Population> = c["populations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            pop(
                p["size"].as_u64().unwrap() as usize,
                p["theta"].as_f64().unwrap() as f32,
                p["beta"].as_f64().unwrap() as f32,
                Reset::parse(p["reset"].as_str().unwrap()).unwrap(),
                p["refractory"].as_bool().unwrap(),
            )
        })
        .collect();
    let projections = c["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pr| {
            let source = match &pr["source"] {
                Value::String(_) => Source::Input,
                v => Source::Population(v.as_u64().unwrap() as usize),
            };
            let rows: Vec<Vec<f32>> = pr["weight"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|w| w.as_f64().unwrap() as f32)
                        .collect()
                })
                .collect();
            let (nr, nc) = (rows.len(), rows[0].len());
            Projection {
                source,
                target: pr["target"].as_u64().unwrap() as usize,
                weights: dense(nr, nc, rows.concat()),
            }
        })
        .collect();
    let net = Network::new(
        n_inputs,
        pops,
        projections,
        c["output"].as_u64().unwrap() as usize,
    )
    .unwrap();
    let (mapping, n_cores) = match &c["core_of"] {
        Value::Null => (Mapping::Auto, 1),
        v => {
            let core_of: Vec<u32> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let n = core_of.iter().copied().max().unwrap() + 1;
            (Mapping::Explicit(core_of), n)
        }
    };
    let frames: Vec<Vec<u32>> = c["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    let input = SampleInput::from_dense(&frames.concat(), frames.len(), n_inputs).unwrap();
    let opts = RunOptions {
        scheduler: Scheduler::parse(c["scheduler"].as_str().unwrap()).unwrap(),
        f: c["F"].as_u64().map(|f| f as usize),
        seed: c["seed"].as_u64().unwrap(),
        sample_offset: c["sample"].as_u64().unwrap(),
        input_mode: InputMode::parse(c["input_mode"].as_str().unwrap()).unwrap(),
        trace: true,
        ..RunOptions::default()
    };
    (net, mapping, n_cores, opts, input)
}

pub fn run1(emu: &Emulator, input: SampleInput, opts: &RunOptions) -> SampleResult {
    emu.run(&[input], None, opts).unwrap().pop().unwrap()
}

/// A small deterministic generator for test data (xorshift).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A weight on the grid of multiples of 1/64 in [-lo, hi).
    pub fn grid(&mut self, lo: i64, hi: i64) -> f32 {
        (self.below((hi - lo) as u64) as i64 + lo) as f32 / 64.0
    }
}

/// A random layered network `n_in -> sizes...` with recurrent and skip projections optional.
pub fn random_net(rng: &mut Rng, n_in: usize, sizes: &[usize], recurrent: bool) -> Network {
    let mut pops = Vec::new();
    let mut projs = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        let reset = if rng.below(2) == 0 {
            Reset::Zero
        } else {
            Reset::Subtract
        };
        let beta = [0.0, 0.5, 0.75, 1.0][rng.below(4) as usize];
        let mut p = pop(s, 1.0, beta, reset, rng.below(2) == 0);
        // One population in three is a stochastic or integrator population.
        let alpha = [0.0, 0.5, 0.75, 1.0][rng.below(4) as usize];
        p.kind = match rng.below(6) {
            0 => NeuronKind::Stochastic { alpha },
            1 => NeuronKind::Integrator { alpha },
            _ => NeuronKind::Lif,
        };
        pops.push(p);
        let (src, n_src) = if i == 0 {
            (Source::Input, n_in)
        } else {
            (Source::Population(i - 1), sizes[i - 1])
        };
        let data = (0..s * n_src)
            .map(|_| {
                if rng.below(4) == 0 {
                    0.0
                } else {
                    rng.grid(-40, 90)
                }
            })
            .collect();
        projs.push(Projection {
            source: src,
            target: i,
            weights: dense(s, n_src, data),
        });
        if recurrent && i > 0 {
            let data = (0..s * s).map(|_| rng.grid(-30, 40)).collect();
            projs.push(Projection {
                source: Source::Population(i),
                target: i,
                weights: dense(s, s, data),
            });
        }
    }
    Network::new(n_in, pops, projs, sizes.len() - 1).unwrap()
}

pub fn random_input(rng: &mut Rng, frames: usize, channels: usize, density: u64) -> SampleInput {
    let counts: Vec<u32> = (0..frames * channels)
        .map(|_| {
            if rng.below(100) < density {
                1 + rng.below(2) as u32
            } else {
                0
            }
        })
        .collect();
    SampleInput::from_dense(&counts, frames, channels).unwrap()
}
