//! Whole runs: fixed point, step caps, runaway activity, determinism, input conversions.

use emulator::{
    Arithmetic, Choice, Emulator, Error, InputMode, Mapping, Mode, Network, Projection, Reset,
    RunOptions, SampleInput, Scheduler, Source, RUNAWAY_STEPS,
};

use crate::common::{dense, ideal, pop, random_input, random_net, run1, Rng};

#[test]
fn fixed_point_quantizes_clips_and_saturates() {
    let mut chip = ideal(1);
    chip.arithmetic = Arithmetic::Fixed {
        weight_bits: 4,
        potential_bits: 6,
        frac_bits: 0,
        leak_bits: 4,
    };
    // Potentials in [-32, 31], weights in [-8, 7].
    let net = Network::new(
        5,
        vec![pop(2, 30.0, 1.0, Reset::Subtract, false)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(
                2,
                5,
                vec![7.0, 7.0, 7.0, 7.0, 100.0, -8.0, -8.0, -8.0, -8.0, -8.0],
            ),
        }],
        0,
    )
    .unwrap();
    let emu = Emulator::new(&net, chip, &Mapping::Auto).unwrap();
    assert_eq!(emu.clipped_weights(), 1);
    let r = run1(
        &emu,
        SampleInput::from_dense(&[2; 5], 1, 5).unwrap(),
        &RunOptions::default(),
    );
    // Neuron 0: 5 x 7 x 2 = 70 saturates at 31 > 30, fires, 31 - 30 = 1 left.
    // Neuron 1: -80 saturates at -32.
    assert_eq!(r.out_counts, vec![1, 0]);
    assert_eq!(r.v_final, vec![1.0, -32.0]);
}

#[test]
fn fixed_point_threshold_out_of_range_is_an_error() {
    let mut chip = ideal(1);
    chip.arithmetic = Arithmetic::Fixed {
        weight_bits: 4,
        potential_bits: 6,
        frac_bits: 0,
        leak_bits: 4,
    };
    let net = Network::new(
        1,
        vec![pop(1, 100.0, 1.0, Reset::Zero, false)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(1, 1, vec![1.0]),
        }],
        0,
    )
    .unwrap();
    let err = Emulator::new(&net, chip, &Mapping::Auto)
        .unwrap_err()
        .to_string();
    assert!(err.contains("populations[0].theta"), "{err}");
}

/// One self-exciting neuron: once it fires it re-fires forever.
fn runaway_net() -> Network {
    Network::new(
        1,
        vec![pop(1, 1.0, 1.0, Reset::Subtract, false)],
        vec![
            Projection {
                source: Source::Input,
                target: 0,
                weights: dense(1, 1, vec![2.0]),
            },
            Projection {
                source: Source::Population(0),
                target: 0,
                weights: dense(1, 1, vec![2.0]),
            },
        ],
        0,
    )
    .unwrap()
}

#[test]
fn runaway_activity_is_an_error_not_a_hang() {
    let emu = Emulator::new(&runaway_net(), ideal(1), &Mapping::Auto).unwrap();
    for mode in [Mode::Steps, Mode::Events] {
        let opts = RunOptions {
            mode,
            ..RunOptions::default()
        };
        let err = emu
            .run(&[SampleInput::from_dense(&[1], 1, 1).unwrap()], None, &opts)
            .unwrap_err();
        assert!(matches!(err, Error::Runaway { .. }), "{err}");
        assert!(err.to_string().contains("max_steps"));
        assert!(
            err.to_string().contains(&RUNAWAY_STEPS.to_string()),
            "{err}"
        );
        // The limit is an option: a lower one stops sooner, and names itself.
        let opts = RunOptions {
            runaway_steps: 50,
            ..opts
        };
        let err = emu
            .run(&[SampleInput::from_dense(&[1], 1, 1).unwrap()], None, &opts)
            .unwrap_err();
        assert!(err.to_string().contains("runaway_steps = 50 "), "{err}");
    }
    let opts = RunOptions {
        runaway_steps: 0,
        ..RunOptions::default()
    };
    let err = emu
        .run(&[SampleInput::from_dense(&[1], 1, 1).unwrap()], None, &opts)
        .unwrap_err();
    assert!(err.to_string().contains("runaway_steps"), "{err}");
    // No cap switches the guard off without saying so: a cap above it is refused.
    let opts = RunOptions {
        max_steps: Some(u64::MAX),
        ..RunOptions::default()
    };
    let err = emu
        .run(&[SampleInput::from_dense(&[1], 1, 1).unwrap()], None, &opts)
        .unwrap_err();
    assert!(err.to_string().contains("is above runaway_steps"), "{err}");
}

#[test]
fn choices_parse_their_names_and_list_them_when_unknown() {
    for s in Scheduler::ALL {
        assert_eq!(Scheduler::parse(s.name()).unwrap(), *s);
    }
    assert_eq!(Mode::names(), ["steps", "events"]);
    assert_eq!(InputMode::names(), ["all_at_once", "scheduled"]);
    let e = Scheduler::parse("lifo").unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid input: scheduler: \"lifo\"; allowed: fifo, random, momentum, layered"
    );
    let e = Mode::parse("async").unwrap_err().to_string();
    assert!(e.contains("mode: \"async\"; allowed: steps, events"), "{e}");
}

#[test]
fn nanoseconds_only_in_events_mode() {
    let net = Network::new(
        1,
        vec![pop(1, 0.5, 1.0, Reset::Zero, true)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(1, 1, vec![1.0]),
        }],
        0,
    )
    .unwrap();
    let mut chip = ideal(1);
    chip.tick_ns = 2.5;
    chip.syn_op_ticks = 3;
    let emu = Emulator::new(&net, chip, &Mapping::Auto).unwrap();
    let x = || vec![SampleInput::from_dense(&[1, 1], 2, 1).unwrap()];
    let r = emu.run(&x(), Some(&[0]), &RunOptions::default()).unwrap();
    let m = &r[0].metrics;
    assert_eq!(m.time_ns, None);
    assert_eq!(m.first_out.unwrap().ns, None);
    let events = RunOptions {
        mode: Mode::Events,
        ..RunOptions::default()
    };
    let r = emu.run(&x(), Some(&[0]), &events).unwrap();
    let m = &r[0].metrics;
    assert!(m.ticks > 0);
    #[allow(clippy::cast_precision_loss)]
    let want = m.ticks as f64 * 2.5;
    assert_eq!(m.time_ns, Some(want));
    for lat in [m.first_out.unwrap(), m.first_correct.unwrap()] {
        #[allow(clippy::cast_precision_loss)]
        let want = lat.tick as f64 * 2.5;
        assert_eq!(lat.ns, Some(want));
    }
}

#[test]
fn step_cap_carries_over_and_reports_unreleased() {
    let emu = Emulator::new(&runaway_net(), ideal(1), &Mapping::Auto).unwrap();
    let opts = RunOptions {
        max_steps: Some(5),
        ..RunOptions::default()
    };
    let r = run1(&emu, SampleInput::from_dense(&[1, 0], 2, 1).unwrap(), &opts);
    assert_eq!(r.metrics.steps, 10);
    // It fires at every step: 5 in each frame, and the last spike is still pending at the end.
    assert_eq!(r.out_counts, vec![5, 5]);
    assert_eq!(r.metrics.unreleased, 1);
    // Ten spikes of one neuron in two frames: two active (neuron, frame) pairs of two.
    assert_eq!(r.metrics.active_neuron_frames, 2);
    assert_eq!(r.metrics.activation_sparsity(1, 2), Some(0.0));
    assert_eq!(r.metrics.activation_sparsity(4, 2), Some(0.75));
    assert_eq!(r.metrics.activation_sparsity(1, 0), None);
    let r = run1(
        &emu,
        SampleInput::from_dense(&[1, 0, 0], 3, 1).unwrap(),
        &opts,
    );
    assert_eq!(r.out_counts, vec![5, 5, 5]);
    assert_eq!(r.metrics.active_neuron_frames, 3);
}

#[test]
fn same_results_on_any_thread_count() {
    let mut rng = Rng(42);
    let net = random_net(&mut rng, 12, &[10, 8, 4], true);
    let inputs: Vec<SampleInput> = (0..24).map(|_| random_input(&mut rng, 5, 12, 30)).collect();
    let mut chip = ideal(3);
    chip.hop_latency_ticks = 2;
    chip.syn_op_ticks = 1;
    let emu = Emulator::new(
        &net,
        chip,
        &Mapping::Explicit((0..22).map(|i| i % 3).collect()),
    )
    .unwrap();
    for mode in [Mode::Steps, Mode::Events] {
        for scheduler in [Scheduler::Random, Scheduler::Momentum] {
            let base = RunOptions {
                mode,
                scheduler,
                f: Some(2),
                seed: 9,
                trace: true,
                ..RunOptions::default()
            };
            let one = emu
                .run(
                    &inputs,
                    None,
                    &RunOptions {
                        threads: Some(1),
                        ..base.clone()
                    },
                )
                .unwrap();
            let four = emu
                .run(
                    &inputs,
                    None,
                    &RunOptions {
                        threads: Some(4),
                        ..base.clone()
                    },
                )
                .unwrap();
            let all = emu.run(&inputs, None, &base).unwrap();
            assert_eq!(one, four);
            assert_eq!(one, all);
            let other_seed = emu
                .run(
                    &inputs,
                    None,
                    &RunOptions {
                        seed: 10,
                        ..base.clone()
                    },
                )
                .unwrap();
            assert_ne!(
                one, other_seed,
                "the seed must matter for the random schedule"
            );
        }
    }
}

#[test]
fn event_streams_bin_like_dense_frames() {
    let x = SampleInput::from_events(&[0, 3, 3, 10, 25], &[1, 0, 1, 1, 2], 10, None, 3).unwrap();
    let d = SampleInput::from_dense(&[1, 2, 0, 0, 1, 0, 0, 0, 1], 3, 3).unwrap();
    assert_eq!(x, d);
    let e = SampleInput::from_events(&[5, 2], &[0, 0], 10, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sorted"), "{e}");
    let e = SampleInput::from_events(&[-1], &[0], 10, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("negative"), "{e}");
    let e = SampleInput::from_events(&[1], &[3], 10, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside 0..3"), "{e}");
    let e = SampleInput::from_events(&[100], &[0], 10, Some(2), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only 2 frames"), "{e}");
}

#[test]
fn a_batch_of_event_streams_shares_one_frame_count() {
    let (t0, c0): (&[i64], &[i64]) = (&[0, 3], &[1, 0]);
    let (t1, c1): (&[i64], &[i64]) = (&[25], &[2]);
    let empty: &[i64] = &[];
    let b =
        SampleInput::batch_from_events(&[(t0, c0), (t1, c1), (empty, empty)], 10, None, 3).unwrap();
    // The latest event of the batch (t = 25) is in frame 2: every sample has 3 frames.
    assert!(b.iter().all(|s| s.n_frames() == 3));
    assert_eq!(
        b[0],
        SampleInput::from_events(t0, c0, 10, Some(3), 3).unwrap()
    );
    assert_eq!(b[2].n_events(), 0);
    let none = SampleInput::batch_from_events(&[(empty, empty)], 10, None, 3).unwrap();
    assert_eq!(none[0].n_frames(), 0);
    // Errors name the sample; dt is checked before anything divides by it.
    let bad: &[i64] = &[5, 2];
    let e = SampleInput::batch_from_events(&[(t0, c0), (bad, &[0, 0])], 10, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sample 1: events.t"), "{e}");
    let e = SampleInput::batch_from_events(&[(t0, c0)], 0, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dt: 0 is outside 1.."), "{e}");
    let huge: &[i64] = &[i64::MAX];
    let e = SampleInput::batch_from_events(&[(huge, &[0])], 1, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("n_frames"), "{e}");
    // Dense batches: one sample per leading row.
    let d = SampleInput::batch_from_dense(&[1, 0, 0, 2], 2, 1, 2).unwrap();
    assert_eq!(d[1], SampleInput::from_dense(&[0, 2], 1, 2).unwrap());
    assert!(SampleInput::batch_from_dense(&[1, 0, 0], 2, 1, 2).is_err());
}

#[test]
fn labels_give_first_correct_latency() {
    let net = Network::new(
        1,
        vec![pop(2, 1.0, 1.0, Reset::Zero, true)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(2, 1, vec![2.0, 0.5]),
        }],
        0,
    )
    .unwrap();
    let emu = Emulator::new(&net, ideal(1), &Mapping::Auto).unwrap();
    let x = SampleInput::from_dense(&[1, 1, 1, 1], 4, 1).unwrap();
    let r = emu
        .run(&[x.clone(), x], Some(&[0, 1]), &RunOptions::default())
        .unwrap();
    assert_eq!(r[0].metrics.first_correct.unwrap().frame, 0);
    // Neuron 1 integrates 0.5 per frame (no leak): above 1 in frame 2.
    assert_eq!(r[1].metrics.first_correct.unwrap().frame, 2);
    assert_eq!(r[1].first_spike, vec![0, 2]);
    let err = emu.run(
        &[SampleInput::from_dense(&[1], 1, 1).unwrap()],
        Some(&[2]),
        &RunOptions::default(),
    );
    assert!(err.unwrap_err().to_string().contains("outside 0..2"));
}

#[test]
fn scheduled_inputs_respect_f() {
    let net = Network::new(
        4,
        vec![pop(1, 100.0, 1.0, Reset::Zero, false)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(1, 4, vec![1.0; 4]),
        }],
        0,
    )
    .unwrap();
    let emu = Emulator::new(&net, ideal(1), &Mapping::Auto).unwrap();
    let opts = RunOptions {
        f: Some(1),
        input_mode: InputMode::Scheduled,
        trace: true,
        ..RunOptions::default()
    };
    let r = run1(&emu, SampleInput::from_dense(&[1; 4], 1, 4).unwrap(), &opts);
    assert_eq!(r.metrics.steps, 4);
    assert_eq!(r.releases.len(), 4);
    let opts = RunOptions {
        input_mode: InputMode::AllAtOnce,
        ..opts
    };
    assert_eq!(
        run1(&emu, SampleInput::from_dense(&[1; 4], 1, 4).unwrap(), &opts)
            .metrics
            .steps,
        1
    );
}

/// Two input channels, one neuron (the inputs' synapses do not matter here).
fn two_channel_net() -> Network {
    Network::new(
        2,
        vec![pop(1, 1.0, 1.0, Reset::Zero, true)],
        vec![Projection {
            source: Source::Input,
            target: 0,
            weights: dense(1, 2, vec![0.5, 0.5]),
        }],
        0,
    )
    .unwrap()
}

#[test]
fn a_pending_count_past_u32_max_is_an_error_not_a_silent_cap() {
    // Scheduled input at F = 1 with one step per frame: one channel stays pending at the end of
    // frame 0, and frame 1 adds another u32::MAX events to it.
    let emu = Emulator::new(&two_channel_net(), ideal(1), &Mapping::Auto).unwrap();
    for mode in [Mode::Steps, Mode::Events] {
        let opts = RunOptions {
            mode,
            f: Some(1),
            input_mode: InputMode::Scheduled,
            max_steps: Some(1),
            ..RunOptions::default()
        };
        let m = u32::MAX;
        let x = SampleInput::from_dense(&[m, m, m, m], 2, 2).unwrap();
        let err = emu.run(&[x], None, &opts).unwrap_err();
        assert!(
            matches!(&err, Error::Input { field, .. } if field == "pending count"),
            "{err}"
        );
        assert!(err.to_string().contains("end of frame 1"), "{err}");
        // One frame less fits: nothing is capped silently either way.
        let x = SampleInput::from_dense(&[m, m], 1, 2).unwrap();
        let r = emu.run(&[x], None, &opts).unwrap();
        assert_eq!(r[0].metrics.unreleased, u64::from(m));
    }
}

#[test]
fn chip_time_past_2_pow_62_ticks_is_an_error_not_a_wrap() {
    // 2^40 ticks of barrier per frame: frame 2^22 would start past 2^62.
    let mut chip = ideal(1);
    chip.barrier_ticks = 1 << 40;
    let emu = Emulator::new(&two_channel_net(), chip, &Mapping::Auto).unwrap();
    let opts = RunOptions {
        mode: Mode::Events,
        ..RunOptions::default()
    };
    let frames = (1 << 22) + 2;
    let x = SampleInput::from_events(&[0], &[0], 1, Some(frames), 2).unwrap();
    let err = emu.run(&[x], None, &opts).unwrap_err();
    assert!(
        matches!(&err, Error::Input { field, .. } if field == "ticks"),
        "{err}"
    );
    assert!(
        err.to_string().contains("barrier_ticks 1099511627776"),
        "{err}"
    );
    // Fewer frames: the time is exact (frame f starts at f x (barrier + 1)).
    let x = SampleInput::from_events(&[0], &[0], 1, Some(1000), 2).unwrap();
    let r = emu.run(&[x], None, &opts).unwrap();
    assert_eq!(r[0].metrics.ticks, 999 * ((1 << 40) + 1) + 1);
}

#[test]
fn a_set_stop_flag_ends_the_run_with_interrupted() {
    use std::sync::atomic::AtomicBool;
    let emu = Emulator::new(&runaway_net(), ideal(1), &Mapping::Auto).unwrap();
    let stop = AtomicBool::new(true);
    for mode in [Mode::Steps, Mode::Events] {
        let opts = RunOptions {
            mode,
            ..RunOptions::default()
        };
        let x = SampleInput::from_dense(&[1], 1, 1).unwrap();
        let err = emu.run_until(&[x], None, &opts, &stop).unwrap_err();
        assert_eq!(err, Error::Interrupted);
    }
    // Set from another thread while a long run is under way: a runaway network under a guard
    // of 2^28 steps runs for 10-40 s (release build) before its RunawayError; it stops at once.
    for mode in [Mode::Steps, Mode::Events] {
        let stop = AtomicBool::new(false);
        let opts = RunOptions {
            mode,
            runaway_steps: 1 << 28,
            ..RunOptions::default()
        };
        let t0 = std::time::Instant::now();
        let err = std::thread::scope(|s| {
            let run = s.spawn(|| {
                let x = SampleInput::from_dense(&[1], 1, 1).unwrap();
                emu.run_until(&[x], None, &opts, &stop)
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            run.join().unwrap()
        })
        .unwrap_err();
        assert_eq!(err, Error::Interrupted, "{mode:?}");
        assert!(
            t0.elapsed().as_secs_f64() < 2.0,
            "{mode:?}: {:?}",
            t0.elapsed()
        );
    }
}

/// One sample with threads to spare runs its cores in lanes on threads of their own: the same
/// spikes, trace, potentials and counts as on one thread, for any number of lanes (grid
/// weights with zeros, recurrent rows, stochastic and integrator populations; steps whose
/// rows hold more than the parallel threshold).
#[test]
fn one_sample_in_lanes_gives_the_same_results_on_any_thread_count() {
    let mut rng = Rng(7);
    for _ in 0..3 {
        let net = random_net(&mut rng, 400, &[400, 300, 10], true);
        let input = random_input(&mut rng, 4, 400, 40);
        let mut chip = ideal(24);
        chip.core.neurons = 40;
        let emu = Emulator::new(&net, chip, &Mapping::Auto).unwrap();
        // large enough to be split into lanes (2^18 synapses)
        assert!(emu.n_synapses() >= 1 << 18);
        for scheduler in [Scheduler::Random, Scheduler::Momentum, Scheduler::Fifo] {
            for f in [Some(3), None] {
                let base = RunOptions {
                    scheduler,
                    f,
                    seed: 3,
                    trace: true,
                    max_steps: Some(150),
                    ..RunOptions::default()
                };
                let run = |threads| {
                    emu.run(
                        std::slice::from_ref(&input),
                        None,
                        &RunOptions {
                            threads: Some(threads),
                            ..base.clone()
                        },
                    )
                    .unwrap()
                };
                let one = run(1);
                assert!(one[0].metrics.synaptic_operations > 1 << 15);
                for threads in [2, 3, 5] {
                    assert_eq!(one, run(threads), "{scheduler:?} F={f:?} threads={threads}");
                }
            }
        }
    }
}
