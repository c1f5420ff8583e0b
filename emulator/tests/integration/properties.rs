//! Property tests (proptest) of the core invariants on random networks.

use emulator::{
    Emulator, InputMode, Mapping, Mode, Network, Population, Projection, Reset, RunOptions,
    SampleInput, Scheduler, Source, Weights,
};
use proptest::prelude::*;

use crate::common::{ideal, random_input, random_net, Rng};

fn scheduler(i: u8) -> Scheduler {
    [
        Scheduler::Fifo,
        Scheduler::Random,
        Scheduler::Momentum,
        Scheduler::Layered,
    ][usize::from(i % 4)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// On a chip with zero costs, `events` mode reproduces `steps` mode spike for spike.
    #[test]
    fn events_on_free_chip_equal_steps(seed in 1u64.., sched in 0u8..4, f in 0usize..4, cores in 1u32..4,
                                       scheduled in any::<bool>(), on_arrival in any::<bool>()) {
        let mut rng = Rng(seed);
        let recurrent = rng.below(2) == 0;
        let net = random_net(&mut rng, 6, &[5, 4, 3], recurrent);
        let n = net.n_neurons();
        let core_of: Vec<u32> = (0..n).map(|_| rng.below(u64::from(cores)) as u32).collect();
        let mut chip = ideal(cores);
        if on_arrival {
            chip.neuron_update = emulator::NeuronUpdate::OnArrival;
        }
        let emu = Emulator::new(&net, chip, &Mapping::Explicit(core_of)).unwrap();
        let x = random_input(&mut rng, 4, 6, 40);
        let opts = RunOptions {
            scheduler: scheduler(sched), f: if f == 0 { None } else { Some(f) }, seed, trace: true,
            input_mode: if scheduled { InputMode::Scheduled } else { InputMode::AllAtOnce },
            max_steps: Some(200), ..RunOptions::default()
        };
        let a = emu.run(std::slice::from_ref(&x), None, &opts).unwrap().pop().unwrap();
        // The step cap means different things in the two modes (global steps versus release
        // rounds per group); compare runs that settled on their own.
        prop_assume!(a.releases.iter().all(|e| e.step + 1 < 200));
        let b = emu.run(&[x], None, &RunOptions { mode: Mode::Events, ..opts }).unwrap().pop().unwrap();
        let key = |r: &emulator::SampleResult| r.trace.iter().map(|t| (t.frame, t.step, t.neuron)).collect::<Vec<_>>();
        let (ka, kb) = (key(&a), key(&b));
        let first_diff = ka.iter().zip(&kb).position(|(x, y)| x != y);
        prop_assert!(ka == kb, "traces differ: lengths {} vs {}, first difference at {:?}", ka.len(), kb.len(), first_diff);
        prop_assert_eq!(&a.out_counts, &b.out_counts);
        prop_assert_eq!(&a.v_final, &b.v_final);
        prop_assert_eq!(a.metrics.synaptic_operations, b.metrics.synaptic_operations);
        prop_assert_eq!(a.metrics.unreleased, b.metrics.unreleased);
    }

    /// The same on dense layers of plain float weights, one layer per core: there the order of
    /// the additions shows in the last bits of the potentials. `steps` adds several released
    /// rows into a block in one pass, `events` one packet at a time; both in source order.
    #[test]
    fn events_on_free_chip_equal_steps_on_dense_float_layers(seed in 1u64.., sched in 0u8..4,
                                                             f in 0usize..6) {
        let mut rng = Rng(seed);
        let sizes = [12usize, 9, 5];
        let mut prev = (Source::Input, 10usize);
        let mut pops = Vec::new();
        let mut projs = Vec::new();
        for (i, &s) in sizes.iter().enumerate() {
            pops.push(Population::lif(s, 1.0, 0.75, Reset::Subtract, false));
            // every weight non-zero (a dense block), most of them not exact in a sum
            let data = (0..s * prev.1)
                .map(|_| (rng.below(1 << 20) as f32 + 1.0) / (1 << 20) as f32 - 0.35)
                .collect();
            projs.push(Projection { source: prev.0, target: i, weights: Weights::Dense { rows: s, cols: prev.1, data } });
            prev = (Source::Population(i), s);
        }
        let net = Network::new(10, pops, projs, 2).unwrap();
        let core_of: Vec<u32> = sizes.iter().enumerate().flat_map(|(c, &s)| vec![c as u32; s]).collect();
        let emu = Emulator::new(&net, ideal(3), &Mapping::Explicit(core_of)).unwrap();
        let x = random_input(&mut rng, 3, 10, 70);
        let opts = RunOptions {
            scheduler: scheduler(sched), f: if f == 0 { None } else { Some(f) }, seed, trace: true,
            max_steps: Some(200), ..RunOptions::default()
        };
        let a = emu.run(std::slice::from_ref(&x), None, &opts).unwrap().pop().unwrap();
        prop_assume!(a.releases.iter().all(|e| e.step + 1 < 200));
        let b = emu.run(&[x], None, &RunOptions { mode: Mode::Events, ..opts }).unwrap().pop().unwrap();
        let key = |r: &emulator::SampleResult| r.trace.iter().map(|t| (t.frame, t.step, t.neuron)).collect::<Vec<_>>();
        prop_assert_eq!(key(&a), key(&b));
        prop_assert_eq!(&a.v_final, &b.v_final);
    }

    /// Each core releases at most F per step; every spike of a projecting neuron is released
    /// exactly once (nothing pending is lost or released twice).
    #[test]
    fn per_core_f_and_release_conservation(seed in 1u64.., sched in 0u8..4, f in 1usize..4, cores in 1u32..4,
                                           events in any::<bool>()) {
        let mut rng = Rng(seed);
        let net = random_net(&mut rng, 6, &[6, 5, 3], true);
        let n = net.n_neurons();
        let core_of: Vec<u32> = (0..n).map(|_| rng.below(u64::from(cores)) as u32).collect();
        let mut chip = ideal(cores);
        if events {
            chip.hop_latency_ticks = 1 + rng.below(3);
            chip.syn_op_ticks = rng.below(2);
        }
        let emu = Emulator::new(&net, chip, &Mapping::Explicit(core_of)).unwrap();
        let x = random_input(&mut rng, 4, 6, 50);
        let opts = RunOptions {
            mode: if events { Mode::Events } else { Mode::Steps },
            scheduler: scheduler(sched), f: Some(f), seed, trace: true, max_steps: Some(300),
            ..RunOptions::default()
        };
        let r = emu.run(&[x], None, &opts).unwrap().pop().unwrap();
        let mut per_step = std::collections::HashMap::new();
        for e in &r.releases {
            if e.group != cores {
                *per_step.entry((e.frame, e.time, e.group)).or_insert(0usize) += 1;
            }
        }
        prop_assert!(per_step.values().all(|&k| k <= f));
        if r.metrics.unreleased == 0 {
            let mut released = vec![0u64; 6 + n];
            for e in &r.releases { released[e.source as usize] += u64::from(e.count); }
            let mut spikes = vec![0u64; 6 + n];
            for t in &r.trace { spikes[6 + t.neuron as usize] += 1; }
            // The output layer (last 3 neurons) never queues.
            for s in 6..6 + n - 3 { prop_assert_eq!(released[s], spikes[s], "source {}", s); }
        }
    }

    /// Packets are conserved (sent = delivered + counted drops; under backpressure, none
    /// dropped) and energy is counts x costs, also with tiny buffers and congested links.
    #[test]
    fn packets_conserved_and_energy_additive(seed in 1u64.., depth in 1u32..3, cores in 2u32..5, drop in proptest::bool::ANY) {
        let mut rng = Rng(seed);
        let net = random_net(&mut rng, 8, &[8, 6, 3], false);
        let mut chip = emulator::ChipConfig::preset("loihi").unwrap();
        chip.mesh_width = cores;
        chip.mesh_height = 2;
        chip.link_buffer_depth = Some(depth);
        chip.input_buffer_depth = Some(depth);
        chip.overflow = if drop { emulator::Overflow::Drop } else { emulator::Overflow::Backpressure };
        let n = net.n_neurons();
        let core_of: Vec<u32> = (0..n).map(|_| rng.below(u64::from(cores) * 2) as u32).collect();
        let emu = Emulator::new(&net, chip.clone(), &Mapping::Explicit(core_of)).unwrap();
        let x = random_input(&mut rng, 3, 8, 60);
        let opts = RunOptions { mode: Mode::Events, f: Some(2), seed, ..RunOptions::default() };
        let r = emu.run(&[x], None, &opts).unwrap().pop().unwrap();
        let m = &r.metrics;
        prop_assert_eq!(m.packets, m.packets_delivered + m.dropped_link + m.dropped_buffer);
        if !drop {
            // Backpressure loses nothing: every released spike reaches every destination core.
            prop_assert_eq!((m.dropped_link, m.dropped_buffer), (0, 0));
        }
        let e = &m.energy;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        prop_assert!(close(e.synaptic_pj, m.synaptic_operations as f64 * chip.syn_op_energy_pj));
        prop_assert!(close(e.neuron_pj, m.membrane_updates as f64 * chip.neuron_update_energy_pj));
        prop_assert!(close(e.routing_pj, m.packets as f64 * chip.packet_energy_pj + m.hops as f64 * chip.hop_energy_pj));
        prop_assert!(close(e.static_pj, chip.static_power_mw * m.ticks as f64 * chip.tick_ns));
        prop_assert!(close(e.total_pj(), e.synaptic_pj + e.neuron_pj + e.routing_pj + e.static_pj));
    }
}

#[test]
fn empty_input_is_quiet() {
    let mut rng = Rng(3);
    let mut net = random_net(&mut rng, 4, &[3, 2], false);
    // Stochastic neurons fire without input: this test is about LIF networks.
    let pops = net
        .populations()
        .iter()
        .map(|p| emulator::Population {
            kind: emulator::NeuronKind::Lif,
            ..p.clone()
        })
        .collect();
    net = emulator::Network::new(4, pops, net.projections().to_vec(), net.output()).unwrap();
    let emu = Emulator::new(&net, ideal(1), &Mapping::Auto).unwrap();
    for mode in [Mode::Steps, Mode::Events] {
        let r = emu
            .run(
                &[SampleInput::from_dense(&[0; 12], 3, 4).unwrap()],
                None,
                &RunOptions {
                    mode,
                    ..Default::default()
                },
            )
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (
                r.metrics.spikes,
                r.metrics.steps,
                r.metrics.synaptic_operations
            ),
            (0, 0, 0)
        );
    }
}
