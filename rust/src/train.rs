//! `train_forward` and `TrainTape`: the core's training engine (`emulator::train`) for numpy
//! arrays of `float32` or `float64`. Only conversions; `asyncsnn.sim.native` is the caller.

use std::sync::Arc;

use emulator::train::{self, Model, Real, Run, Schedule, Surrogate};
use emulator::{Choice, Scheduler};
use numpy::{Element, IntoPyArray, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{core, detached, input_err};

/// One float array of the run's dtype, flattened (its shape checked by the core).
fn floats<T: Element + Copy>(x: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<T>> {
    let a: PyReadonlyArrayDyn<'_, T> = x.extract().map_err(|_| {
        input_err(
            field,
            "expected a numpy array of the run's float dtype (float32 or float64)",
        )
    })?;
    Ok(a.as_array().iter().copied().collect())
}

fn ints(x: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<i64>> {
    let a: PyReadonlyArrayDyn<'_, i64> = x
        .extract()
        .map_err(|_| input_err(field, "expected a numpy array of int64"))?;
    Ok(a.as_array().iter().copied().collect())
}

fn bools(x: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<bool>> {
    let a: PyReadonlyArrayDyn<'_, bool> = x
        .extract()
        .map_err(|_| input_err(field, "expected a numpy array of bool"))?;
    Ok(a.as_array().iter().copied().collect())
}

fn indices(v: Vec<i64>, field: &str, upto: usize) -> PyResult<Vec<u32>> {
    v.into_iter()
        .map(|x| {
            u32::try_from(x)
                .ok()
                .filter(|&u| (u as usize) <= upto)
                .ok_or_else(|| input_err(field, format!("index {x} is outside 0..={upto}")))
        })
        .collect()
}

/// Non-negative integers (offsets, layer numbers).
fn naturals<U: TryFrom<i64>>(v: Vec<i64>, field: &str) -> PyResult<Vec<U>> {
    v.into_iter()
        .map(|x| U::try_from(x).map_err(|_| input_err(field, format!("{x} is negative"))))
        .collect()
}

enum Held {
    F32(Arc<Model<f32>>, Run<f32>),
    F64(Arc<Model<f64>>, Run<f64>),
}

/// A forward run's tape, for its one backward.
#[pyclass(name = "TrainTape", module = "asyncsnn._native")]
pub struct PyTrainTape(Held);

impl std::fmt::Debug for PyTrainTape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrainTape({} bytes)", self.nbytes())
    }
}

#[pymethods]
impl PyTrainTape {
    /// Bytes the tape holds (what the run keeps for its backward).
    #[getter]
    fn nbytes(&self) -> usize {
        match &self.0 {
            Held::F32(_, r) => r.tape_bytes(),
            Held::F64(_, r) => r.tape_bytes(),
        }
    }

    /// The gradients of the input weights and of the neuron-to-neuron weights, one per support
    /// entry, from those of `out_counts`, `spike_counts`, `v_final` and `first_time` (or None).
    #[pyo3(signature = (g_out, g_counts, g_v, g_first, truncated, surrogate, slope, threads))]
    #[allow(clippy::too_many_arguments)]
    fn backward<'py>(
        &self,
        py: Python<'py>,
        g_out: &Bound<'py, PyAny>,
        g_counts: &Bound<'py, PyAny>,
        g_v: &Bound<'py, PyAny>,
        g_first: Option<&Bound<'py, PyAny>>,
        truncated: bool,
        surrogate: &str,
        slope: f64,
        threads: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let sg = core(Surrogate::of(surrogate, slope))?;
        match &self.0 {
            Held::F32(m, r) => back(
                py, m, r, g_out, g_counts, g_v, g_first, truncated, sg, threads,
            ),
            Held::F64(m, r) => back(
                py, m, r, g_out, g_counts, g_v, g_first, truncated, sg, threads,
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn back<'py, T: Real + Element>(
    py: Python<'py>,
    m: &Arc<Model<T>>,
    r: &Run<T>,
    g_out: &Bound<'py, PyAny>,
    g_counts: &Bound<'py, PyAny>,
    g_v: &Bound<'py, PyAny>,
    g_first: Option<&Bound<'py, PyAny>>,
    truncated: bool,
    sg: Surrogate,
    threads: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let g_out = floats::<T>(g_out, "g_out")?;
    let g_counts = floats::<T>(g_counts, "g_counts")?;
    let g_v = floats::<T>(g_v, "g_v")?;
    let g_first = g_first.map(|g| floats::<T>(g, "g_first")).transpose()?;
    let (g_w_in, g_w) = detached(py, || {
        train::backward(
            m,
            r,
            &g_out,
            &g_counts,
            &g_v,
            g_first.as_deref(),
            truncated,
            sg,
            threads,
        )
    })?;
    Ok((
        g_w_in.into_pyarray(py).into_any(),
        g_w.into_pyarray(py).into_any(),
    ))
}

/// Run a batch through the training engine; returns `(outputs, tape)`: a dict of numpy arrays
/// (batch first) and the tape for the backward. Float arrays share one dtype (float32 or
/// float64, that of `theta`).
#[pyfunction]
#[pyo3(signature = (theta, beta, subtract, refractory, has_out, layer, slot_neuron, n_inputs, out,
                    src_start, target, weight, fanout, in_start, in_target, in_weight, in_fanout,
                    frames, scheduler, limit,
                    seed, sample_offset, step_limit, limit_is_error, stop_after_output, threads,
                    tape=true))]
#[allow(clippy::too_many_arguments)]
pub fn train_forward<'py>(
    py: Python<'py>,
    theta: &Bound<'py, PyAny>,
    beta: &Bound<'py, PyAny>,
    subtract: &Bound<'py, PyAny>,
    refractory: &Bound<'py, PyAny>,
    has_out: &Bound<'py, PyAny>,
    layer: &Bound<'py, PyAny>,
    slot_neuron: &Bound<'py, PyAny>,
    n_inputs: usize,
    out: (usize, usize),
    src_start: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: &Bound<'py, PyAny>,
    fanout: &Bound<'py, PyAny>,
    in_start: &Bound<'py, PyAny>,
    in_target: &Bound<'py, PyAny>,
    in_weight: &Bound<'py, PyAny>,
    in_fanout: &Bound<'py, PyAny>,
    frames: &Bound<'py, PyAny>,
    scheduler: &str,
    limit: Option<usize>,
    seed: u64,
    sample_offset: u64,
    step_limit: usize,
    limit_is_error: bool,
    stop_after_output: Option<u64>,
    threads: usize,
    tape: bool,
) -> PyResult<(Bound<'py, PyDict>, PyTrainTape)> {
    let schedule = Schedule {
        scheduler: core(Scheduler::parse(scheduler))?,
        limit,
        seed,
        sample_offset,
        step_limit,
        limit_is_error,
        stop_after_output,
        tape,
    };
    let arr = frames
        .cast::<numpy::PyUntypedArray>()
        .map_err(|_| input_err("frames", "expected a numpy array (batch, frames, channels)"))?;
    let shape = arr.shape().to_vec();
    if shape.len() != 3 || shape[2] != n_inputs {
        return Err(input_err(
            "frames",
            format!("expected (batch, frames, {n_inputs}), got {shape:?}"),
        ));
    }
    let (b, nf) = (shape[0], shape[1]);
    let f64_run = theta.extract::<PyReadonlyArrayDyn<'_, f64>>().is_ok();
    let n = theta
        .cast::<numpy::PyUntypedArray>()
        .map_err(|_| input_err("theta", "expected a numpy array"))?
        .len();
    let slots = slot_neuron
        .cast::<numpy::PyUntypedArray>()
        .ok()
        .and_then(|a| a.shape().get(1).copied())
        .ok_or_else(|| input_err("slot_neuron", "expected a (cores, slots) array"))?;
    let common = Common {
        subtract: bools(subtract, "subtract")?,
        refractory: bools(refractory, "refractory")?,
        has_out: bools(has_out, "has_out")?,
        layer: naturals(ints(layer, "layer")?, "layer")?,
        slot_neuron: indices(ints(slot_neuron, "slot_neuron")?, "slot_neuron", n)?,
        slots,
        src_start: naturals(ints(src_start, "src_start")?, "src_start")?,
        target: indices(ints(target, "target")?, "target", n)?,
        in_start: naturals(ints(in_start, "in_start")?, "in_start")?,
        in_target: indices(ints(in_target, "in_target")?, "in_target", n)?,
        n_inputs,
        out,
    };
    let floats_of = Floats {
        theta,
        beta,
        weight,
        fanout,
        in_weight,
        in_fanout,
        frames,
    };
    if f64_run {
        run::<f64>(py, common, &floats_of, &schedule, b, nf, threads, Held::F64)
    } else {
        run::<f32>(py, common, &floats_of, &schedule, b, nf, threads, Held::F32)
    }
}

struct Common {
    subtract: Vec<bool>,
    refractory: Vec<bool>,
    has_out: Vec<bool>,
    layer: Vec<u64>,
    slot_neuron: Vec<u32>,
    slots: usize,
    src_start: Vec<usize>,
    target: Vec<u32>,
    in_start: Vec<usize>,
    in_target: Vec<u32>,
    n_inputs: usize,
    out: (usize, usize),
}

struct Floats<'a, 'py> {
    theta: &'a Bound<'py, PyAny>,
    beta: &'a Bound<'py, PyAny>,
    weight: &'a Bound<'py, PyAny>,
    fanout: &'a Bound<'py, PyAny>,
    in_weight: &'a Bound<'py, PyAny>,
    in_fanout: &'a Bound<'py, PyAny>,
    frames: &'a Bound<'py, PyAny>,
}

#[allow(clippy::too_many_arguments)]
fn run<'py, T: Real + Element>(
    py: Python<'py>,
    c: Common,
    fl: &Floats<'_, 'py>,
    s: &Schedule,
    b: usize,
    nf: usize,
    threads: usize,
    held: fn(Arc<Model<T>>, Run<T>) -> Held,
) -> PyResult<(Bound<'py, PyDict>, PyTrainTape)> {
    let model = Arc::new(Model {
        n_inputs: c.n_inputs,
        theta: floats::<T>(fl.theta, "theta")?,
        beta: floats::<T>(fl.beta, "beta")?,
        subtract: c.subtract,
        refractory: c.refractory,
        has_out: c.has_out,
        layer: c.layer,
        slot_neuron: c.slot_neuron,
        slots: c.slots,
        out: c.out,
        src_start: c.src_start,
        target: c.target,
        weight: floats::<T>(fl.weight, "weight")?,
        fanout: floats::<T>(fl.fanout, "fanout")?,
        in_start: c.in_start,
        in_target: c.in_target,
        in_weight: floats::<T>(fl.in_weight, "in_weight")?,
        in_fanout: floats::<T>(fl.in_fanout, "in_fanout")?,
    });
    let frames: PyReadonlyArrayDyn<'_, T> = fl.frames.extract().map_err(|_| {
        input_err(
            "frames",
            "expected a numpy array of the run's float dtype (float32 or float64)",
        )
    })?;
    let copied;
    let counts: &[T] = if let Ok(x) = frames.as_slice() {
        x
    } else {
        copied = frames.as_array().iter().copied().collect::<Vec<T>>();
        &copied
    };
    let r = detached(py, || train::forward(&model, s, counts, b, nf, threads))?;
    let n = model.theta.len();
    let n_out = c.out.1 - c.out.0;
    let d = PyDict::new(py);
    // every sample's field, concatenated in sample order, as an array of `shape`
    let floats =
        |name: &str, f: fn(&train::SampleOut<T>) -> &[T], shape: &[usize]| -> PyResult<()> {
            let v: Vec<T> = r.out.iter().flat_map(|o| f(o).iter().copied()).collect();
            d.set_item(name, v.into_pyarray(py).reshape(shape)?)
        };
    floats("out_counts", |o| &o.out_counts, &[b, nf, n_out])?;
    floats("spike_counts", |o| &o.spike_counts, &[b, n])?;
    floats("v_final", |o| &o.v_final, &[b, n])?;
    floats(
        "synaptic_operations",
        |o| std::slice::from_ref(&o.synops),
        &[b],
    )?;
    floats("unreleased", |o| std::slice::from_ref(&o.unreleased), &[b])?;
    floats("spikes_before", |o| &o.spikes_before, &[b, n_out])?;
    floats("first_time", |o| &o.first_time, &[b, n_out])?;
    let ints = |name: &str, v: Vec<i64>, shape: &[usize]| -> PyResult<()> {
        d.set_item(name, v.into_pyarray(py).reshape(shape)?)
    };
    #[allow(clippy::cast_possible_wrap)]
    {
        ints(
            "steps",
            r.out.iter().map(|o| o.steps as i64).collect(),
            &[b],
        )?;
        ints(
            "active_neuron_frames",
            r.out
                .iter()
                .map(|o| o.active_neuron_frames as i64)
                .collect(),
            &[b],
        )?;
    }
    ints(
        "first_out",
        r.out.iter().flat_map(|o| o.first_out).collect(),
        &[b, 2],
    )?;
    ints(
        "first_spike",
        r.out
            .iter()
            .flat_map(|o| o.first_spike.iter().copied())
            .collect(),
        &[b, n_out],
    )?;
    Ok((d, PyTrainTape(held(model, r))))
}
