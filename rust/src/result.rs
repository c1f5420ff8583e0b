//! What a batch run returns, as a dict of numpy arrays (batch first). Per-sample metrics are
//! `float64` arrays named as in `asyncsnn.metrics`; what never happened (no output spike, no
//! time in `steps` mode) is NaN.

use emulator::{mem, Latency, SampleResult};

use crate::error::core;
use numpy::{IntoPyArray, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The per-sample metrics of one result, in a fixed order.
#[allow(clippy::cast_precision_loss)]
fn metrics(r: &SampleResult, n_frames: usize) -> Vec<(String, f64)> {
    let m = &r.metrics;
    let count = |x: u64| x as f64;
    let mut out: Vec<(String, f64)> = [
        ("spikes", count(m.spikes)),
        ("synaptic_operations", count(m.synaptic_operations)),
        ("membrane_updates", count(m.membrane_updates)),
        (
            "activation_sparsity",
            m.activation_sparsity(r.v_final.len(), n_frames)
                .unwrap_or(f64::NAN),
        ),
        ("steps", count(m.steps)),
        ("unreleased", count(m.unreleased)),
        ("packets", count(m.packets)),
        ("packets_delivered", count(m.packets_delivered)),
        ("hops", count(m.hops)),
        ("stall_ticks", count(m.stall_ticks)),
        ("stalled_packets", count(m.stalled_packets)),
        ("dropped_link", count(m.dropped_link)),
        ("dropped_buffer", count(m.dropped_buffer)),
        ("ticks", count(m.ticks)),
        ("time_ns", m.time_ns.unwrap_or(f64::NAN)),
        ("energy_synaptic_pj", m.energy.synaptic_pj),
        ("energy_neuron_pj", m.energy.neuron_pj),
        ("energy_routing_pj", m.energy.routing_pj),
        ("energy_static_pj", m.energy.static_pj),
        ("energy_total_pj", m.energy.total_pj()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (prefix, lat) in [
        ("first_out", m.first_out),
        ("first_correct", m.first_correct),
    ] {
        let field = |f: fn(&Latency) -> f64| lat.as_ref().map_or(f64::NAN, f);
        for (name, value) in [
            ("step", field(|l| l.global_step as f64)),
            ("frame", field(|l| f64::from(l.frame))),
            ("step_in_frame", field(|l| l.step as f64)),
            ("tick", field(|l| l.tick as f64)),
            ("ns", field(|l| l.ns.unwrap_or(f64::NAN))),
            ("spikes_before", field(|l| l.spikes_before as f64)),
        ] {
            out.push((format!("{prefix}_{name}"), value));
        }
    }
    out
}

/// The results of a batch as a dict (see `asyncsnn.RunResult`).
pub fn batch_to_dict<'py>(
    py: Python<'py>,
    results: &[SampleResult],
    n_frames: usize,
    n_out: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let b = results.len();
    let n_neurons = results.first().map_or(0, |r| r.v_final.len());
    let n_cores = results.first().map_or(0, |r| r.core_spikes.len());
    let cat = |f: fn(&SampleResult) -> &[u64]| -> PyResult<Vec<u64>> {
        let n = b.saturating_mul(n_cores);
        core(mem::collect(
            n,
            results.iter().flat_map(|r| f(r).iter().copied()),
            "per-core counts",
        ))
    };
    let per_sample = n_frames.saturating_mul(n_out);
    let out_len = b.saturating_mul(per_sample);
    let mut out_counts = core(mem::with_capacity(out_len, "output counts"))?;
    let mut first_spike = core(mem::with_capacity(b.saturating_mul(n_out), "first spikes"))?;
    let mut v_final = core(mem::with_capacity(
        b.saturating_mul(n_neurons),
        "final potentials",
    ))?;
    let mut out_potential = core(mem::with_capacity(out_len, "output potentials"))?;
    let trace_rows: usize = results.iter().map(|r| r.trace.len()).sum();
    let release_rows: usize = results.iter().map(|r| r.releases.len()).sum();
    let mut trace: Vec<i64> = core(mem::with_capacity(
        trace_rows.saturating_mul(5),
        "spike trace",
    ))?;
    let mut releases: Vec<i64> = core(mem::with_capacity(
        release_rows.saturating_mul(7),
        "release trace",
    ))?;
    // (the names of an empty batch's metrics come from an empty result)
    let blank = SampleResult {
        out_counts: Vec::new(),
        out_potential: Vec::new(),
        first_spike: Vec::new(),
        trace: Vec::new(),
        releases: Vec::new(),
        v_final: Vec::new(),
        metrics: emulator::Metrics::default(),
        core_spikes: Vec::new(),
        core_synops: Vec::new(),
        core_busy_ticks: Vec::new(),
    };
    let names: Vec<String> = metrics(&blank, 0).into_iter().map(|(k, _)| k).collect();
    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(b); names.len()];
    let to_i = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    for (i, r) in results.iter().enumerate() {
        out_counts.extend_from_slice(&r.out_counts);
        first_spike.extend_from_slice(&r.first_spike);
        v_final.extend_from_slice(&r.v_final);
        out_potential.extend_from_slice(&r.out_potential);
        let i = i as i64;
        for t in &r.trace {
            trace.extend_from_slice(&[
                i,
                i64::from(t.frame),
                to_i(t.step),
                to_i(t.time),
                i64::from(t.neuron),
            ]);
        }
        for e in &r.releases {
            releases.extend_from_slice(&[
                i,
                i64::from(e.frame),
                to_i(e.step),
                to_i(e.time),
                i64::from(e.group),
                i64::from(e.source),
                i64::from(e.count),
            ]);
        }
        for (column, (_, value)) in columns.iter_mut().zip(metrics(r, n_frames)) {
            column.push(value);
        }
    }
    let d = PyDict::new(py);
    d.set_item(
        "out_counts",
        out_counts.into_pyarray(py).reshape([b, n_frames, n_out])?,
    )?;
    d.set_item(
        "first_spike",
        first_spike.into_pyarray(py).reshape([b, n_out])?,
    )?;
    d.set_item("v_final", v_final.into_pyarray(py).reshape([b, n_neurons])?)?;
    d.set_item(
        "out_potential",
        out_potential
            .into_pyarray(py)
            .reshape([b, n_frames, n_out])?,
    )?;
    for (key, f) in [
        (
            "core_spikes",
            (|r| &r.core_spikes) as fn(&SampleResult) -> &[u64],
        ),
        ("core_synops", |r| &r.core_synops),
        ("core_busy_ticks", |r| &r.core_busy_ticks),
    ] {
        d.set_item(key, cat(f)?.into_pyarray(py).reshape([b, n_cores])?)?;
    }
    let rows = trace.len() / 5;
    let trace: Bound<'py, PyArray2<i64>> = trace.into_pyarray(py).reshape([rows, 5])?;
    d.set_item("trace", trace)?;
    let rows = releases.len() / 7;
    let releases: Bound<'py, PyArray2<i64>> = releases.into_pyarray(py).reshape([rows, 7])?;
    d.set_item("releases", releases)?;
    let metrics = PyDict::new(py);
    for (k, v) in names.into_iter().zip(columns) {
        metrics.set_item(k, v.into_pyarray(py))?;
    }
    d.set_item("metrics", metrics)?;
    Ok(d)
}
