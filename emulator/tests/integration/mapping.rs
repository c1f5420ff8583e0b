//! Mapping of neurons to cores and capacity checks.

use emulator::{Emulator, Error, Mapping, Network, Projection, Reset, Source};

use crate::common::{dense, ideal, pop};

fn net(sizes: &[usize]) -> Network {
    let mut pops = Vec::new();
    let mut projs = Vec::new();
    let mut prev = 4;
    for (i, &s) in sizes.iter().enumerate() {
        pops.push(pop(s, 1.0, 1.0, Reset::Zero, false));
        let source = if i == 0 {
            Source::Input
        } else {
            Source::Population(i - 1)
        };
        projs.push(Projection {
            source,
            target: i,
            weights: dense(s, prev, vec![0.5; s * prev]),
        });
        prev = s;
    }
    Network::new(4, pops, projs, sizes.len() - 1).unwrap()
}

#[test]
fn auto_mapping_fills_cores_in_order() {
    let mut chip = ideal(4);
    chip.core.neurons = 3;
    let emu = Emulator::new(&net(&[4, 3]), chip, &Mapping::Auto).unwrap();
    assert_eq!(emu.core_of(), &[0, 0, 0, 1, 1, 1, 2]);
    let u = emu.usage();
    assert_eq!(u.neurons, vec![3, 3, 1, 0]);
    // synapses stored at the target core: 4 inputs x 3, 4x1 + 3x2 (core 1), 4 (core 2)
    assert_eq!(u.synapses, vec![12, 4 + 8, 4, 0]);
    // fan-in: distinct sources per core
    assert_eq!(u.fan_in, vec![4, 4 + 4, 4, 0]);
    // fan-out: (neuron, destination core) pairs: layer 0 on cores 0,1 projects to cores 1 and 2
    assert_eq!(u.fan_out, vec![3 * 2, 2, 0, 0]);
}

#[test]
fn auto_mapping_respects_synapse_capacity() {
    let mut chip = ideal(4);
    chip.core.synapses = 8;
    let emu = Emulator::new(&net(&[4]), chip, &Mapping::Auto).unwrap();
    assert_eq!(emu.core_of(), &[0, 0, 1, 1]);
}

#[test]
fn violations_are_reported_per_core_with_numbers() {
    let mut chip = ideal(2);
    chip.core.neurons = 2;
    chip.core.fan_in = 3;
    let err = Emulator::new(&net(&[3]), chip, &Mapping::Explicit(vec![0, 0, 1])).unwrap_err();
    let Error::Mapping { violations, .. } = &err else {
        panic!("{err}")
    };
    let v: Vec<(usize, &str, u64, u64)> = violations
        .iter()
        .map(|v| (v.core, v.resource, v.needed, v.capacity))
        .collect();
    assert_eq!(v, vec![(0, "fan_in", 4, 3), (1, "fan_in", 4, 3)]);
    let mut chip = ideal(2);
    chip.core.neurons = 2;
    let err = Emulator::new(&net(&[3]), chip, &Mapping::Explicit(vec![0, 0, 0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("core 0: neurons needed 3 > capacity 2"),
        "{err}"
    );
}

#[test]
fn out_of_cores_and_bad_explicit_mappings() {
    let mut chip = ideal(2);
    chip.core.neurons = 1;
    let err = Emulator::new(&net(&[3]), chip.clone(), &Mapping::Auto)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ran out of cores"), "{err}");
    let err = Emulator::new(&net(&[3]), chip.clone(), &Mapping::Explicit(vec![0, 5, 0]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neuron 1 is mapped to core 5, outside 0..2"),
        "{err}"
    );
    let err = Emulator::new(&net(&[3]), chip, &Mapping::Explicit(vec![0]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 entries for 3 neurons"), "{err}");
}
