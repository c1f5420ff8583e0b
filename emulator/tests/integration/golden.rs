//! The worked cases of the execution model (tests/data/execution_model.json), in `steps` mode
//! and in `events` mode on the zero-cost `ideal` chip.

use emulator::{hash, Emulator, Mode, RunOptions, SampleResult};
use serde_json::{json, Value};

use crate::common::{case_setup, golden, ideal, run1};

#[test]
fn hash_vectors() {
    let g = golden();
    let vectors = g["hash_vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let k = hash::key(
            v["seed"].as_u64().unwrap(),
            v["sample"].as_u64().unwrap(),
            v["frame"].as_u64().unwrap(),
            v["step"].as_u64().unwrap(),
            v["source"].as_u64().unwrap(),
        );
        assert_eq!(u64::from(k), v["key"].as_u64().unwrap(), "{v}");
    }
}

fn check(name: &str, r: &SampleResult, e: &Value) {
    let trace: Vec<Value> = r
        .trace
        .iter()
        .map(|t| json!([t.frame, t.step, t.neuron]))
        .collect();
    assert_eq!(Value::Array(trace), e["trace"], "{name}: trace");
    let out_size = e["out_counts"][0].as_array().unwrap().len();
    let rows: Vec<Value> = r.out_counts.chunks(out_size).map(|c| json!(c)).collect();
    assert_eq!(Value::Array(rows), e["out_counts"], "{name}: out_counts");
    assert_eq!(
        json!(r.metrics.synaptic_operations),
        e["synops"],
        "{name}: synops"
    );
    assert_eq!(
        json!(r.metrics.unreleased),
        e["unreleased"],
        "{name}: unreleased"
    );
    let first = r
        .metrics
        .first_out
        .map_or(Value::Null, |l| json!([l.frame, l.step]));
    assert_eq!(first, e["first_out"], "{name}: first_out");
    let v: Vec<f64> = e["v_final"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(r.v_final, v, "{name}: v_final");
}

#[test]
fn golden_cases_steps_mode() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let (net, mapping, n_cores, opts, input) = case_setup(c);
        let emu = Emulator::new(&net, ideal(n_cores), &mapping).unwrap();
        let r = run1(&emu, input, &opts);
        check(name, &r, &c["expected"]);
        assert_eq!(
            json!(r.metrics.steps),
            c["expected"]["steps"],
            "{name}: steps"
        );
    }
}

#[test]
fn golden_cases_events_mode_on_zero_cost_chip() {
    let g = golden();
    for c in g["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (net, mapping, n_cores, opts, input) = case_setup(c);
        let emu = Emulator::new(&net, ideal(n_cores), &mapping).unwrap();
        let opts = RunOptions {
            mode: Mode::Events,
            ..opts
        };
        let r = run1(&emu, input, &opts);
        check(name, &r, &c["expected"]);
        assert_eq!(
            json!(r.metrics.steps),
            c["expected"]["steps"],
            "{name}: steps"
        );
    }
}
