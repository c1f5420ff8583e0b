//! `asyncsnn._native`: the PyO3 binding of the emulator crate.
//!
//! This crate only converts: Python values to owned core values, core results to numpy
//! arrays, core errors to Python exceptions. The simulation runs with the interpreter detached
//! and inside `catch_unwind`, so no panic crosses into Python.

// PyO3 hands extracted arguments over by value.
#![allow(clippy::needless_pass_by_value)]

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use emulator::{
    ChipConfig, Emulator, Error, InputMode, Mapping, Mode, Network, NeuronKind, Population,
    Projection, Reset, RunOptions, SampleInput, SampleResult, Scheduler, Source, Weights,
};
use numpy::{
    IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

create_exception!(
    _native,
    ConfigError,
    PyValueError,
    "Invalid chip configuration (a field is out of range)."
);
create_exception!(
    _native,
    NetworkError,
    PyValueError,
    "Invalid network description."
);
create_exception!(
    _native,
    InputError,
    PyValueError,
    "Invalid run input or option."
);
create_exception!(
    _native,
    MappingError,
    ConfigError,
    "The mapping of neurons to cores does not fit the chip."
);
create_exception!(
    _native,
    RunawayError,
    PyRuntimeError,
    "Activity that does not settle within the step limit."
);
create_exception!(
    _native,
    InternalError,
    PyRuntimeError,
    "A bug in the emulator (please report it)."
);

/// The one place where core errors become Python exceptions.
struct CoreError(Error);

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> Self {
        let msg = e.0.to_string();
        match e.0 {
            Error::Config { .. } => ConfigError::new_err(msg),
            Error::Network { .. } => NetworkError::new_err(msg),
            Error::Input { .. } => InputError::new_err(msg),
            Error::Runaway { .. } => RunawayError::new_err(msg),
            Error::Mapping { violations, .. } => Python::attach(|py| {
                let err = MappingError::new_err(msg);
                let rows: Vec<(usize, &str, u64, u64)> = violations
                    .iter()
                    .map(|v| (v.core, v.resource, v.needed, v.capacity))
                    .collect();
                // Attaching the structured list is best effort; the message already has it all.
                let _ = err.value(py).setattr("violations", rows);
                err
            }),
        }
    }
}

/// The one place where the binding releases the interpreter and catches panics: `work` runs
/// detached, a core error becomes its Python exception, a panic becomes `InternalError`.
fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> emulator::Result<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => Ok(result.map_err(CoreError)?),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(InternalError::new_err(format!("emulator panicked: {what}")))
        }
    }
}

fn input_err(field: &str, message: impl Into<String>) -> PyErr {
    InputError::new_err(format!("invalid input: {field}: {}", message.into()))
}

fn network_err(field: &str, message: impl Into<String>) -> PyErr {
    NetworkError::new_err(format!("invalid network: {field}: {}", message.into()))
}

/// A chip description (see the emulator's `ChipConfig`).
#[pyclass(name = "ChipConfig", module = "asyncsnn._native", frozen)]
struct PyChipConfig(ChipConfig);

#[pymethods]
impl PyChipConfig {
    #[staticmethod]
    fn preset(name: &str) -> PyResult<Self> {
        Ok(Self(ChipConfig::preset(name).map_err(CoreError)?))
    }
    #[staticmethod]
    fn from_toml(text: &str) -> PyResult<Self> {
        Ok(Self(ChipConfig::from_toml(text).map_err(CoreError)?))
    }
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Self(ChipConfig::from_json(text).map_err(CoreError)?))
    }
    #[staticmethod]
    fn presets() -> Vec<&'static str> {
        emulator::PRESETS.to_vec()
    }
    fn to_toml(&self) -> PyResult<String> {
        Ok(self.0.to_toml().map_err(CoreError)?)
    }
    fn to_json(&self) -> PyResult<String> {
        Ok(self.0.to_json().map_err(CoreError)?)
    }
    #[getter]
    fn n_cores(&self) -> usize {
        self.0.n_cores()
    }
    fn __repr__(&self) -> String {
        format!(
            "ChipConfig(name={:?}, mesh={}x{}, arithmetic={:?})",
            self.0.name, self.0.mesh_width, self.0.mesh_height, self.0.arithmetic
        )
    }
}

fn get_item<'py>(d: &Bound<'py, PyDict>, key: &str, field: &str) -> PyResult<Bound<'py, PyAny>> {
    d.get_item(key)?
        .ok_or_else(|| network_err(field, format!("missing key {key:?}")))
}

fn extract<'py, T: FromPyObjectOwned<'py>>(
    v: &Bound<'py, PyAny>,
    field: &str,
    what: &str,
) -> PyResult<T> {
    v.extract::<T>()
        .map_err(|_| network_err(field, format!("expected {what}")))
}

fn parse_population(i: usize, d: &Bound<'_, PyDict>) -> PyResult<Population> {
    let f = |k: &str| format!("populations[{i}].{k}");
    let size: i64 = extract(&get_item(d, "size", &f("size"))?, &f("size"), "an integer")?;
    let size = usize::try_from(size)
        .map_err(|_| network_err(&f("size"), format!("{size} is outside 1..")))?;
    let theta: f32 = extract(&get_item(d, "theta", &f("theta"))?, &f("theta"), "a number")?;
    let beta: f32 = extract(&get_item(d, "beta", &f("beta"))?, &f("beta"), "a number")?;
    let reset: String = extract(
        &get_item(d, "reset", &f("reset"))?,
        &f("reset"),
        "'zero' or 'subtract'",
    )?;
    let reset = Reset::parse(&reset)
        .map_err(|_| network_err(&f("reset"), format!("{reset:?}; allowed: zero, subtract")))?;
    let refractory: bool = extract(
        &get_item(d, "refractory", &f("refractory"))?,
        &f("refractory"),
        "a bool",
    )?;
    let kind: String = match d.get_item("kind")? {
        Some(k) => extract(&k, &f("kind"), "'lif', 'stochastic' or 'integrator'")?,
        None => "lif".to_owned(),
    };
    let alpha: f32 = match d.get_item("alpha")? {
        Some(a) => extract(&a, &f("alpha"), "a number")?,
        None => 0.0,
    };
    let kind = NeuronKind::parse(&kind, alpha).map_err(|_| {
        network_err(
            &f("kind"),
            format!("{kind:?}; allowed: lif, stochastic, integrator"),
        )
    })?;
    Ok(Population {
        size,
        theta,
        beta,
        reset,
        refractory,
        kind,
    })
}

fn parse_projection(j: usize, d: &Bound<'_, PyDict>) -> PyResult<Projection> {
    let f = |k: &str| format!("projections[{j}].{k}");
    let src = get_item(d, "source", &f("source"))?;
    let source = if let Ok(s) = src.extract::<String>() {
        if s != "input" {
            return Err(network_err(
                &f("source"),
                format!("{s:?}; allowed: 'input' or a population index"),
            ));
        }
        Source::Input
    } else {
        let s: i64 = extract(&src, &f("source"), "'input' or a population index")?;
        Source::Population(
            usize::try_from(s)
                .map_err(|_| network_err(&f("source"), format!("{s} is negative")))?,
        )
    };
    let t: i64 = extract(
        &get_item(d, "target", &f("target"))?,
        &f("target"),
        "a population index",
    )?;
    let target =
        usize::try_from(t).map_err(|_| network_err(&f("target"), format!("{t} is negative")))?;
    let weights = if let Some(w) = d.get_item("weights")? {
        let arr: PyReadonlyArray2<'_, f32> = w
            .extract()
            .map_err(|_| network_err(&f("weights"), "expected a 2-D float32 numpy array"))?;
        let a = arr.as_array();
        let (rows, cols) = a.dim();
        Weights::Dense {
            rows,
            cols,
            data: a.iter().copied().collect(),
        }
    } else {
        let shape: (usize, usize) = extract(
            &get_item(d, "shape", &f("shape"))?,
            &f("shape"),
            "(rows, cols)",
        )?;
        let rows: PyReadonlyArray1<'_, i64> = extract(
            &get_item(d, "rows", &f("rows"))?,
            &f("rows"),
            "a 1-D int64 array",
        )?;
        let cols: PyReadonlyArray1<'_, i64> = extract(
            &get_item(d, "cols", &f("cols"))?,
            &f("cols"),
            "a 1-D int64 array",
        )?;
        let vals: PyReadonlyArray1<'_, f32> = extract(
            &get_item(d, "values", &f("values"))?,
            &f("values"),
            "a 1-D float32 array",
        )?;
        let (r, c, v) = (rows.as_array(), cols.as_array(), vals.as_array());
        if r.len() != c.len() || r.len() != v.len() {
            return Err(network_err(
                &f("weights"),
                format!(
                    "rows, cols and values differ in length ({}, {}, {})",
                    r.len(),
                    c.len(),
                    v.len()
                ),
            ));
        }
        let mut entries = Vec::with_capacity(r.len());
        for k in 0..r.len() {
            let (ri, ci) = (r[k], c[k]);
            if ri < 0 || ci < 0 || ri as u64 >= shape.0 as u64 || ci as u64 >= shape.1 as u64 {
                return Err(network_err(
                    &f("weights"),
                    format!(
                        "index ({ri}, {ci}) is outside the ({}, {}) matrix",
                        shape.0, shape.1
                    ),
                ));
            }
            entries.push((ri as u32, ci as u32, v[k]));
        }
        Weights::Sparse {
            rows: shape.0,
            cols: shape.1,
            entries,
        }
    };
    Ok(Projection {
        source,
        target,
        weights,
    })
}

/// A validated network (see the emulator's `Network`).
#[pyclass(name = "Network", module = "asyncsnn._native", frozen)]
struct PyNetwork(Network);

#[pymethods]
impl PyNetwork {
    #[new]
    fn new(
        n_inputs: i64,
        populations: &Bound<'_, PyList>,
        projections: &Bound<'_, PyList>,
        output: i64,
    ) -> PyResult<Self> {
        let n_inputs = usize::try_from(n_inputs)
            .map_err(|_| network_err("n_inputs", format!("{n_inputs} is negative")))?;
        let output = usize::try_from(output)
            .map_err(|_| network_err("output", format!("{output} is negative")))?;
        let mut pops = Vec::with_capacity(populations.len());
        for (i, p) in populations.iter().enumerate() {
            let d = p
                .cast::<PyDict>()
                .map_err(|_| network_err(&format!("populations[{i}]"), "expected a dict"))?;
            pops.push(parse_population(i, d)?);
        }
        let mut projs = Vec::with_capacity(projections.len());
        for (j, p) in projections.iter().enumerate() {
            let d = p
                .cast::<PyDict>()
                .map_err(|_| network_err(&format!("projections[{j}]"), "expected a dict"))?;
            projs.push(parse_projection(j, d)?);
        }
        Ok(Self(
            Network::new(n_inputs, pops, projs, output).map_err(CoreError)?,
        ))
    }
    #[getter]
    fn n_inputs(&self) -> usize {
        self.0.n_inputs()
    }
    #[getter]
    fn n_neurons(&self) -> usize {
        self.0.n_neurons()
    }
    #[getter]
    fn output_range(&self) -> (usize, usize) {
        let r = self.0.output_range();
        (r.start, r.end)
    }
}

#[allow(clippy::too_many_arguments)]
fn parse_options(
    mode: &str,
    scheduler: &str,
    f: Option<i64>,
    seed: u64,
    sample_offset: u64,
    input_mode: &str,
    max_steps: Option<i64>,
    trace: bool,
    threads: Option<i64>,
) -> PyResult<RunOptions> {
    let pos = |field: &str, v: i64| -> PyResult<u64> {
        u64::try_from(v)
            .ok()
            .filter(|&x| x >= 1)
            .ok_or_else(|| input_err(field, format!("{v} is outside 1..")))
    };
    Ok(RunOptions {
        mode: Mode::parse(mode).map_err(CoreError)?,
        scheduler: Scheduler::parse(scheduler).map_err(CoreError)?,
        f: f.map(|v| pos("F", v))
            .transpose()?
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
        seed,
        sample_offset,
        input_mode: InputMode::parse(input_mode).map_err(CoreError)?,
        max_steps: max_steps.map(|v| pos("max_steps", v)).transpose()?,
        trace,
        threads: threads
            .map(|v| pos("threads", v))
            .transpose()?
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX)),
    })
}

/// A network placed on a chip (see the emulator's `Emulator`).
#[pyclass(name = "Emulator", module = "asyncsnn._native", frozen)]
struct PyEmulator(Emulator);

#[pymethods]
impl PyEmulator {
    #[new]
    #[pyo3(signature = (network, chip, core_of=None))]
    fn new(
        py: Python<'_>,
        network: &PyNetwork,
        chip: &PyChipConfig,
        core_of: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<Self> {
        let mapping = match core_of {
            None => Mapping::Auto,
            Some(a) => {
                let mut v = Vec::with_capacity(a.len()?);
                for (i, &c) in a.as_array().iter().enumerate() {
                    let c = u32::try_from(c).map_err(|_| {
                        input_err(
                            "mapping",
                            format!(
                                "neuron {i} is mapped to core {c}, outside 0..{}",
                                chip.0.n_cores()
                            ),
                        )
                    })?;
                    v.push(c);
                }
                Mapping::Explicit(v)
            }
        };
        let (net, cfg) = (&network.0, chip.0.clone());
        Ok(Self(detached(py, || Emulator::new(net, cfg, &mapping))?))
    }

    #[getter]
    fn core_of<'py>(&self, py: Python<'py>) -> Bound<'py, numpy::PyArray1<u32>> {
        self.0.core_of().to_vec().into_pyarray(py)
    }

    #[getter]
    fn n_synapses(&self) -> usize {
        self.0.n_synapses()
    }

    #[getter]
    fn clipped_weights(&self) -> u64 {
        self.0.clipped_weights()
    }

    #[getter]
    fn chip(&self) -> PyChipConfig {
        PyChipConfig(self.0.chip().clone())
    }

    /// Per-core resource use: dict of numpy arrays `neurons`, `synapses`, `fan_in`, `fan_out`.
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let u = self.0.usage();
        let d = PyDict::new(py);
        d.set_item("neurons", u.neurons.into_pyarray(py))?;
        d.set_item("synapses", u.synapses.into_pyarray(py))?;
        d.set_item("fan_in", u.fan_in.into_pyarray(py))?;
        d.set_item("fan_out", u.fan_out.into_pyarray(py))?;
        Ok(d)
    }

    /// Run a batch of dense input frames `(batch, frames, channels)` of event counts.
    #[pyo3(signature = (inputs, labels=None, *, mode="steps", scheduler="fifo", f=None, seed=0, sample_offset=0,
                        input_mode="all_at_once", max_steps=None, trace=false, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn run_dense<'py>(
        &self,
        py: Python<'py>,
        inputs: PyReadonlyArray3<'py, u32>,
        labels: Option<PyReadonlyArray1<'py, i64>>,
        mode: &str,
        scheduler: &str,
        f: Option<i64>,
        seed: u64,
        sample_offset: u64,
        input_mode: &str,
        max_steps: Option<i64>,
        trace: bool,
        threads: Option<i64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let opts = parse_options(
            mode,
            scheduler,
            f,
            seed,
            sample_offset,
            input_mode,
            max_steps,
            trace,
            threads,
        )?;
        let a = inputs.as_array();
        let (b, t, c) = a.dim();
        let mut samples = Vec::with_capacity(b);
        for i in 0..b {
            let counts: Vec<u32> = a
                .index_axis(numpy::ndarray::Axis(0), i)
                .iter()
                .copied()
                .collect();
            samples.push(SampleInput::from_dense(&counts, t, c).map_err(CoreError)?);
        }
        let labels = convert_labels(labels, b)?;
        self.run_samples(py, &samples, labels.as_deref(), &opts)
    }

    /// Run a batch of event streams: `times[i]`, `channels[i]` (1-D int64 arrays) of sample `i`,
    /// binned into frames of `dt`.
    #[pyo3(signature = (times, channels, dt, n_frames=None, labels=None, *, mode="steps", scheduler="fifo", f=None,
                        seed=0, sample_offset=0, input_mode="all_at_once", max_steps=None, trace=false, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn run_events<'py>(
        &self,
        py: Python<'py>,
        times: Vec<PyReadonlyArray1<'py, i64>>,
        channels: Vec<PyReadonlyArray1<'py, i64>>,
        dt: i64,
        n_frames: Option<i64>,
        labels: Option<PyReadonlyArray1<'py, i64>>,
        mode: &str,
        scheduler: &str,
        f: Option<i64>,
        seed: u64,
        sample_offset: u64,
        input_mode: &str,
        max_steps: Option<i64>,
        trace: bool,
        threads: Option<i64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let opts = parse_options(
            mode,
            scheduler,
            f,
            seed,
            sample_offset,
            input_mode,
            max_steps,
            trace,
            threads,
        )?;
        if times.len() != channels.len() {
            return Err(input_err(
                "events",
                format!(
                    "{} time arrays but {} channel arrays",
                    times.len(),
                    channels.len()
                ),
            ));
        }
        if dt <= 0 {
            return Err(input_err("dt", format!("{dt} is outside 1..")));
        }
        let n_frames = match n_frames {
            Some(n) => Some(
                usize::try_from(n)
                    .map_err(|_| input_err("n_frames", format!("{n} is negative")))?,
            ),
            None => {
                // One frame count for the whole batch: enough for the latest event.
                let last = times
                    .iter()
                    .filter_map(|t| t.as_array().iter().copied().max())
                    .max()
                    .unwrap_or(-1);
                Some(if last < 0 {
                    0
                } else {
                    usize::try_from(last / dt + 1).unwrap_or(usize::MAX)
                })
            }
        };
        let n_ch = self.0.n_inputs();
        let mut samples = Vec::with_capacity(times.len());
        for (i, (t, c)) in times.iter().zip(&channels).enumerate() {
            let (t, c) = (t.as_array(), c.as_array());
            let (t, c): (Vec<i64>, Vec<i64>) =
                (t.iter().copied().collect(), c.iter().copied().collect());
            let s = SampleInput::from_events(&t, &c, dt, n_frames, n_ch).map_err(|e| match e {
                Error::Input { field, message } => {
                    input_err(&format!("sample {i}: {field}"), message)
                }
                other => PyErr::from(CoreError(other)),
            })?;
            samples.push(s);
        }
        let labels = convert_labels(labels, samples.len())?;
        self.run_samples(py, &samples, labels.as_deref(), &opts)
    }

    fn __repr__(&self) -> String {
        format!(
            "Emulator(chip={:?}, inputs={}, outputs={}, synapses={})",
            self.0.chip().name,
            self.0.n_inputs(),
            self.0.output_size(),
            self.0.n_synapses()
        )
    }
}

fn convert_labels(
    labels: Option<PyReadonlyArray1<'_, i64>>,
    n: usize,
) -> PyResult<Option<Vec<u32>>> {
    let Some(l) = labels else { return Ok(None) };
    let a = l.as_array();
    if a.len() != n {
        return Err(input_err(
            "labels",
            format!("{} labels for {n} samples", a.len()),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for (i, &y) in a.iter().enumerate() {
        out.push(
            u32::try_from(y)
                .map_err(|_| input_err("labels", format!("label {y} of sample {i} is negative")))?,
        );
    }
    Ok(Some(out))
}

impl PyEmulator {
    fn run_samples<'py>(
        &self,
        py: Python<'py>,
        samples: &[SampleInput],
        labels: Option<&[u32]>,
        opts: &RunOptions,
    ) -> PyResult<Bound<'py, PyDict>> {
        let emu = &self.0;
        let results = detached(py, || emu.run(samples, labels, opts))?;
        let n_frames = samples.first().map_or(0, SampleInput::n_frames);
        // Nanoseconds exist only in `events` mode.
        let tick_ns = if opts.mode == Mode::Events {
            emu.chip().tick_ns
        } else {
            f64::NAN
        };
        batch_to_dict(py, &results, n_frames, emu.output_size(), tick_ns)
    }
}

fn batch_to_dict<'py>(
    py: Python<'py>,
    results: &[SampleResult],
    n_frames: usize,
    n_out: usize,
    tick_ns: f64,
) -> PyResult<Bound<'py, PyDict>> {
    // `tick_ns` is NaN in `steps` mode, which makes every nanosecond figure NaN.
    let b = results.len();
    let d = PyDict::new(py);
    let mut out_counts = Vec::with_capacity(b * n_frames * n_out);
    let mut first_spike = Vec::with_capacity(b * n_out);
    let n_neurons = results.first().map_or(0, |r| r.v_final.len());
    let n_cores = results.first().map_or(0, |r| r.core_spikes.len());
    let mut v_final = Vec::with_capacity(b * n_neurons);
    let mut out_potential = Vec::with_capacity(b * n_frames * n_out);
    let (mut cs, mut cy, mut cb) = (Vec::new(), Vec::new(), Vec::new());
    let mut trace: Vec<i64> = Vec::new();
    let mut releases: Vec<i64> = Vec::new();
    let mut ints: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut floats: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let to_i = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    for (i, r) in results.iter().enumerate() {
        out_counts.extend_from_slice(&r.out_counts);
        first_spike.extend_from_slice(&r.first_spike);
        v_final.extend_from_slice(&r.v_final);
        out_potential.extend_from_slice(&r.out_potential);
        cs.extend_from_slice(&r.core_spikes);
        cy.extend_from_slice(&r.core_synops);
        cb.extend_from_slice(&r.core_busy_ticks);
        for t in &r.trace {
            trace.extend_from_slice(&[
                i as i64,
                i64::from(t.frame),
                to_i(t.step),
                to_i(t.time),
                i64::from(t.neuron),
            ]);
        }
        for e in &r.releases {
            releases.extend_from_slice(&[
                i as i64,
                i64::from(e.frame),
                to_i(e.step),
                to_i(e.time),
                i64::from(e.group),
                i64::from(e.source),
                i64::from(e.count),
            ]);
        }
        let m = &r.metrics;
        for (k, v) in [
            ("spikes", m.spikes),
            ("synops", m.synops),
            ("neuron_updates", m.neuron_updates),
            ("packets", m.packets),
            ("packets_delivered", m.packets_delivered),
            ("hops", m.hops),
            ("stall_ticks", m.stall_ticks),
            ("stalled_packets", m.stalled_packets),
            ("dropped_link", m.dropped_link),
            ("dropped_buffer", m.dropped_buffer),
            ("steps", m.steps),
            ("unreleased", m.unreleased),
            ("ticks", m.ticks),
        ] {
            ints.entry(k.to_string()).or_default().push(to_i(v));
        }
        for (prefix, lat) in [
            ("first_out", m.first_out),
            ("first_correct", m.first_correct),
        ] {
            let (frame, step, gstep, tick, before) = lat.map_or((-1, -1, -1, -1, -1), |l| {
                (
                    i64::from(l.frame),
                    to_i(l.step),
                    to_i(l.global_step),
                    to_i(l.tick),
                    to_i(l.spikes_before),
                )
            });
            for (field, value) in [
                ("frame", frame),
                ("step", step),
                ("global_step", gstep),
                ("tick", tick),
                ("spikes_before", before),
            ] {
                ints.entry(format!("{prefix}_{field}"))
                    .or_default()
                    .push(value);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let ns = |t: i64| if t < 0 { f64::NAN } else { t as f64 * tick_ns };
        let e = &m.energy;
        for (k, v) in [
            ("energy_synaptic_pj", e.synaptic_pj),
            ("energy_neuron_pj", e.neuron_pj),
            ("energy_routing_pj", e.routing_pj),
            ("energy_static_pj", e.static_pj),
            ("energy_total_pj", e.total_pj()),
            #[allow(clippy::cast_precision_loss)]
            ("time_ns", m.ticks as f64 * tick_ns),
            ("first_out_ns", ns(m.first_out.map_or(-1, |l| to_i(l.tick)))),
            (
                "first_correct_ns",
                ns(m.first_correct.map_or(-1, |l| to_i(l.tick))),
            ),
        ] {
            floats.entry(k).or_default().push(v);
        }
    }
    let shape3 = |v: Vec<u32>| -> PyResult<Bound<'py, PyAny>> {
        Ok(v.into_pyarray(py).reshape([b, n_frames, n_out])?.into_any())
    };
    d.set_item("out_counts", shape3(out_counts)?)?;
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
    d.set_item("core_spikes", cs.into_pyarray(py).reshape([b, n_cores])?)?;
    d.set_item("core_synops", cy.into_pyarray(py).reshape([b, n_cores])?)?;
    d.set_item(
        "core_busy_ticks",
        cb.into_pyarray(py).reshape([b, n_cores])?,
    )?;
    let rows = trace.len() / 5;
    let trace: Bound<'py, PyArray2<i64>> = trace.into_pyarray(py).reshape([rows, 5])?;
    d.set_item("trace", trace)?;
    let rows = releases.len() / 7;
    let releases: Bound<'py, PyArray2<i64>> = releases.into_pyarray(py).reshape([rows, 7])?;
    d.set_item("releases", releases)?;
    let metrics = PyDict::new(py);
    for (k, v) in ints {
        metrics.set_item(k, v.into_pyarray(py))?;
    }
    for (k, v) in floats {
        metrics.set_item(k, v.into_pyarray(py))?;
    }
    d.set_item("metrics", metrics)?;
    Ok(d)
}

/// The arbitration queue of the emulator, driven directly (see the core's `CheckedQueue`).
#[pyclass(name = "SpikeQueue", module = "asyncsnn._native")]
struct PySpikeQueue(emulator::CheckedQueue);

#[pymethods]
impl PySpikeQueue {
    #[new]
    #[pyo3(signature = (n_inputs, group_of, population, seed=0, sample=0))]
    fn new(
        n_inputs: usize,
        group_of: Vec<u32>,
        population: Vec<u32>,
        seed: u64,
        sample: u64,
    ) -> PyResult<Self> {
        Ok(Self(
            emulator::CheckedQueue::new(n_inputs, group_of, population, seed, sample)
                .map_err(CoreError)?,
        ))
    }

    #[pyo3(signature = (source, count=1, frame=0, step=0, overshoot=None))]
    fn push(
        &mut self,
        source: u32,
        count: u32,
        frame: u32,
        step: u32,
        overshoot: Option<f64>,
    ) -> PyResult<()> {
        Ok(self
            .0
            .push(source, count, frame, step, overshoot)
            .map_err(CoreError)?)
    }

    #[pyo3(signature = (group, f, scheduler, frame=0, step=0))]
    fn release(
        &mut self,
        group: u32,
        f: Option<usize>,
        scheduler: &str,
        frame: u32,
        step: u32,
    ) -> PyResult<Vec<(u32, u32)>> {
        let scheduler = Scheduler::parse(scheduler).map_err(CoreError)?;
        Ok(self
            .0
            .release(group, f, scheduler, frame, step)
            .map_err(CoreError)?)
    }

    fn counts(&self) -> Vec<u32> {
        self.0.counts().to_vec()
    }

    fn group_len(&self, group: u32) -> usize {
        self.0.group_len(group)
    }

    #[getter]
    fn n_groups(&self) -> usize {
        self.0.n_groups()
    }
}

/// The scheduler hash `key(seed, sample, frame, step, source)` (see the docs).
#[pyfunction]
fn hash_key(seed: u64, sample: u64, frame: u64, step: u64, source: u64) -> u32 {
    emulator::hash::key(seed, sample, frame, step, source)
}

/// The stochastic neurons' firing table `T[i + 4096]`, `i` in `-4096..=4096`.
#[pyfunction]
fn stochastic_thresholds(py: Python<'_>) -> Bound<'_, numpy::PyArray1<u64>> {
    emulator::stochastic::thresholds().to_vec().into_pyarray(py)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyChipConfig>()?;
    m.add_class::<PyNetwork>()?;
    m.add_class::<PyEmulator>()?;
    m.add_class::<PySpikeQueue>()?;
    m.add_function(wrap_pyfunction!(hash_key, m)?)?;
    m.add_function(wrap_pyfunction!(stochastic_thresholds, m)?)?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("NetworkError", py.get_type::<NetworkError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("MappingError", py.get_type::<MappingError>())?;
    m.add("RunawayError", py.get_type::<RunawayError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("SCHEDULERS", emulator::SCHEDULERS.to_vec())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
