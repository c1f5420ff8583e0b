//! `events` mode timing, routing, buffers and energy, computed by hand.

use emulator::{
    ChipConfig, Emulator, Mapping, Mode, Network, NeuronUpdate, Overflow, Projection, Reset,
    RunOptions, SampleInput, SampleResult, Source,
};

use crate::common::{dense, ideal, pop, run1};

/// A 3x1 mesh with 5-tick hops and 2-tick synaptic ops; free buffers.
fn line_chip() -> ChipConfig {
    let mut c = ideal(3);
    c.hop_latency_ticks = 5;
    c.syn_op_ticks = 2;
    c.tick_ns = 0.5;
    c.syn_op_energy_pj = 1.0;
    c.neuron_update_energy_pj = 10.0;
    c.packet_energy_pj = 3.0;
    c.hop_energy_pj = 5.0;
    c.static_power_mw = 2.0;
    c
}

/// input -> A (core 2) -> B (core 0).
fn chain() -> Network {
    Network::new(
        1,
        vec![
            pop(1, 1.0, 1.0, Reset::Zero, true),
            pop(1, 1.0, 1.0, Reset::Zero, true),
        ],
        vec![
            Projection {
                source: Source::Input,
                target: 0,
                weights: dense(1, 1, vec![2.0]),
            },
            Projection {
                source: Source::Population(0),
                target: 1,
                weights: dense(1, 1, vec![2.0]),
            },
        ],
        1,
    )
    .unwrap()
}

fn events() -> RunOptions {
    RunOptions {
        mode: Mode::Events,
        trace: true,
        ..RunOptions::default()
    }
}

#[test]
fn chain_latency_hops_and_energy() {
    let emu = Emulator::new(&chain(), line_chip(), &Mapping::Explicit(vec![2, 0])).unwrap();
    let r = run1(
        &emu,
        SampleInput::from_dense(&[1], 1, 1).unwrap(),
        &events(),
    );
    // Input released at tick 0, two hops of 5 ticks to core 2, 2 ticks of synaptic work: A fires
    // at 12; released at 13, two hops back to core 0, 2 ticks: B fires at 25.
    assert_eq!(spike_times(&r), vec![(0, 12), (1, 25)]);
    let m = &r.metrics;
    assert_eq!(
        (
            m.packets,
            m.packets_delivered,
            m.hops,
            m.synaptic_operations,
            m.spikes
        ),
        (2, 2, 4, 2, 2)
    );
    assert_eq!(m.steps, 2, "release ticks 0 and 13");
    assert_eq!(m.ticks, 26);
    assert_eq!(m.first_out.unwrap().tick, 25);
    assert_eq!(r.first_spike, vec![25]);
    assert_eq!(r.core_busy_ticks, vec![2, 0, 2 + 1]);
    // Energy = counts x unit costs.
    assert_eq!(m.membrane_updates, 2 + 2);
    assert!((m.energy.synaptic_pj - 2.0).abs() < 1e-9);
    assert!((m.energy.neuron_pj - 40.0).abs() < 1e-9);
    assert!((m.energy.routing_pj - (2.0 * 3.0 + 4.0 * 5.0)).abs() < 1e-9);
    assert!((m.energy.static_pj - 2.0 * 26.0 * 0.5).abs() < 1e-9);
    // steps mode counts the same packets and hops, with no time.
    let s = run1(
        &emu,
        SampleInput::from_dense(&[1], 1, 1).unwrap(),
        &RunOptions::default(),
    );
    assert_eq!(
        (s.metrics.packets, s.metrics.hops, s.metrics.ticks),
        (2, 4, 0)
    );
}

/// Three input channels to three neurons on core 2.
fn fan() -> Network {
    Network::new(
        3,
        vec![pop(3, 1.0, 1.0, Reset::Zero, true)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(3, 3, vec![2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0]),
        }],
        0,
    )
    .unwrap()
}

/// [`fan`] on `chip` with its three neurons on `core`, one event on each channel, one frame.
fn run_fan(chip: ChipConfig, core: u32) -> SampleResult {
    let emu = Emulator::new(&fan(), chip, &Mapping::Explicit(vec![core; 3])).unwrap();
    run1(
        &emu,
        SampleInput::from_dense(&[1, 1, 1], 1, 3).unwrap(),
        &events(),
    )
}

/// `(neuron, tick)` of every spike, in trace order.
fn spike_times(r: &SampleResult) -> Vec<(u32, u64)> {
    r.trace.iter().map(|t| (t.neuron, t.time)).collect()
}

#[test]
fn injection_waits_for_the_link_and_is_never_dropped() {
    let mut chip = line_chip();
    chip.overflow = Overflow::Drop;
    chip.link_packets_per_tick = Some(1);
    chip.link_buffer_depth = Some(1);
    let r = run_fan(chip.clone(), 2);
    let m = &r.metrics;
    // Three packets want the link 0->1 at tick 0: they leave at ticks 0, 1 and 2.
    assert_eq!(
        (m.packets, m.dropped_link, m.stalled_packets, m.stall_ticks),
        (3, 0, 2, 1 + 2)
    );
    assert_eq!(m.packets, m.packets_delivered);
    // They reach core 2 at 10, 11 and 12; the core takes 2 ticks per synapse and is busy
    // until 16, when it updates the three neurons it has fed (once each).
    assert_eq!(spike_times(&r), vec![(0, 16), (1, 16), (2, 16)]);
    assert_eq!(m.membrane_updates, 3 + 3);
    // A core that updates a neuron as each input lands fires each as its packet is done.
    chip.neuron_update = NeuronUpdate::OnArrival;
    let r = run_fan(chip, 2);
    assert_eq!(spike_times(&r), vec![(0, 12), (1, 14), (2, 16)]);
}

#[test]
fn backpressure_holds_packets_until_a_slot_is_free_and_loses_none() {
    // The same three packets under backpressure: a slot of the next buffer is held from a
    // packet's departure until it leaves that buffer, so with one slot per link and 5-tick
    // hops a packet leaves router 0 every 5 ticks: the packets reach core 2 at 10, 15, 20.
    let mut chip = line_chip();
    chip.link_packets_per_tick = Some(1);
    chip.link_buffer_depth = Some(1);
    let r = run_fan(chip, 2);
    let m = &r.metrics;
    assert_eq!((m.packets, m.packets_delivered, m.dropped_link), (3, 3, 0));
    // Packet 2 waits in link 0->1's buffer 0..5; packet 3 waits for that buffer 0..5, then
    // in it 5..10.
    assert_eq!((m.stalled_packets, m.stall_ticks), (3, 15));
    assert_eq!(spike_times(&r), vec![(0, 12), (1, 17), (2, 22)]);
    assert_eq!(m.hops, 3 * 2);
}

#[test]
fn backpressure_at_a_full_input_buffer_stalls_the_sender() {
    let mut chip = line_chip();
    chip.input_buffer_depth = Some(1);
    let r = run_fan(chip, 0);
    let m = &r.metrics;
    // The core takes the first packet at once (2 ticks), the second waits in its buffer, the
    // third at the router until the core takes the second at tick 2.
    assert_eq!(
        (m.packets, m.packets_delivered, m.dropped_buffer),
        (3, 3, 0)
    );
    assert_eq!((m.stalled_packets, m.stall_ticks), (1, 2));
    assert_eq!(r.out_counts, vec![1, 1, 1]);
    assert_eq!(spike_times(&r), vec![(0, 6), (1, 6), (2, 6)]);
}

#[test]
fn transit_packets_overflow_a_full_link_buffer() {
    // Input port on router 1 of a 3x1 mesh. X (core 0) relays channels 0..3 to Y (core 2);
    // channels 0..6 also go straight to Y. The six input packets queue on link 1->2
    // (leaving at ticks 0..5); X's spikes come back through router 1 at ticks 3, 4 and 5.
    let mut chip = ideal(3);
    chip.input_port = [1, 0];
    chip.hop_latency_ticks = 1;
    chip.link_packets_per_tick = Some(1);
    chip.link_buffer_depth = Some(1);
    chip.overflow = Overflow::Drop;
    let mut to_x = vec![0.0; 3 * 6];
    let mut to_y = vec![0.25; 3 * 6];
    for i in 0..3 {
        to_x[i * 6 + i] = 2.0;
        to_y[i * 6 + 3 + i] = 0.0;
    }
    let eye: Vec<f32> = (0..9).map(|k| if k % 4 == 0 { 2.0 } else { 0.0 }).collect();
    let net = Network::new(
        6,
        vec![
            pop(3, 1.0, 1.0, Reset::Zero, true),
            pop(3, 1.0, 1.0, Reset::Zero, true),
        ],
        vec![
            Projection {
                source: Source::Input,
                target: 0,
                weights: dense(3, 6, to_x),
            },
            Projection {
                source: Source::Input,
                target: 1,
                weights: dense(3, 6, to_y),
            },
            Projection {
                source: Source::Population(0),
                target: 1,
                weights: dense(3, 3, eye),
            },
        ],
        1,
    )
    .unwrap();
    let emu = Emulator::new(&net, chip, &Mapping::Explicit(vec![0, 0, 0, 2, 2, 2])).unwrap();
    let r = run1(
        &emu,
        SampleInput::from_dense(&[1; 6], 1, 6).unwrap(),
        &events(),
    );
    let m = &r.metrics;
    // X0's packet reaches router 1 at tick 3 with departures 4 and 5 waiting: dropped; so is
    // X1's at tick 4 (5 waiting); X2's at tick 5 waits one tick.
    assert_eq!(m.packets, 6 + 3 + 3);
    assert_eq!(m.dropped_link, 2);
    assert_eq!(
        m.packets,
        m.packets_delivered + m.dropped_link + m.dropped_buffer
    );
    assert_eq!(m.stalled_packets, 5 + 2 + 1);
    assert_eq!(m.stall_ticks, (1 + 2 + 3 + 4 + 5) + (1 + 2) + 1);
}

#[test]
fn input_buffer_overflow_is_counted() {
    let mut chip = line_chip();
    chip.input_buffer_depth = Some(1);
    chip.overflow = Overflow::Drop;
    let r = run_fan(chip, 0);
    let m = &r.metrics;
    // One packet is processed at once, one waits in the buffer, the third finds it full.
    assert_eq!(
        (m.packets, m.packets_delivered, m.dropped_buffer),
        (3, 2, 1)
    );
    assert_eq!(r.out_counts, vec![1, 1, 0]);
}

#[test]
fn frames_are_separated_by_barrier_and_leak_time() {
    let mut chip = line_chip();
    chip.neuron_update_ticks = 3;
    chip.barrier_ticks = 7;
    let emu = Emulator::new(&chain(), chip, &Mapping::Explicit(vec![2, 0])).unwrap();
    let r = run1(
        &emu,
        SampleInput::from_dense(&[1, 1], 2, 1).unwrap(),
        &events(),
    );
    // Frame 0: core 2 leaks its neuron for 3 ticks before processing: A at 10 + 3 + 2... the
    // packet arrives at 10, the core is free since 3, done at 12; B as before at 25.
    // Frame 1 starts at 25 + 1 + 7 = 33: A at 33 + 12 = 45, B at 33 + 25 = 58.
    let times: Vec<(u32, u32, u64)> = r
        .trace
        .iter()
        .map(|t| (t.frame, t.neuron, t.time))
        .collect();
    assert_eq!(times, vec![(0, 0, 12), (0, 1, 25), (1, 0, 45), (1, 1, 58)]);
    let steps: Vec<u64> = r.trace.iter().map(|t| t.step).collect();
    assert_eq!(steps, vec![12, 25, 12, 25]);
}
