//! `Emulator`: a network placed on a chip (see the core's `Emulator`), and its one `run`.

use emulator::{mem, Emulator, Mapping, SampleInput};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray3};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::chip::PyChipConfig;
use crate::error::{core, detached, input_err, interruptible};
use crate::network::PyNetwork;
use crate::options::PyRunOptions;
use crate::result::batch_to_dict;

/// What a run takes: dense counts `(batch, frames, channels)`, or event streams
/// `(times, channels, dt, n_frames)` (one pair of 1-D int64 arrays per sample, binned into frames
/// of `dt`; `n_frames=None`: enough for the latest event).
#[derive(FromPyObject)]
enum Inputs<'py> {
    Dense(PyReadonlyArray3<'py, u32>),
    Events(
        Vec<PyReadonlyArray1<'py, i64>>,
        Vec<PyReadonlyArray1<'py, i64>>,
        i64,
        Option<usize>,
    ),
}

impl Inputs<'_> {
    fn into_samples(self, n_channels: usize) -> PyResult<Vec<SampleInput>> {
        match self {
            Self::Dense(a) => {
                let a = a.as_array();
                let (b, t, c) = a.dim();
                let counts = core(mem::collect(a.len(), a.iter().copied(), "input counts"))?;
                core(SampleInput::batch_from_dense(&counts, b, t, c))
            }
            Self::Events(times, channels, dt, n_frames) => {
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
                let owned = times
                    .iter()
                    .zip(&channels)
                    .map(|(t, c)| {
                        let (t, c) = (t.as_array(), c.as_array());
                        Ok((
                            mem::collect(t.len(), t.iter().copied(), "event times")?,
                            mem::collect(c.len(), c.iter().copied(), "event channels")?,
                        ))
                    })
                    .collect::<emulator::Result<Vec<(Vec<i64>, Vec<i64>)>>>();
                let owned = core(owned)?;
                let streams: Vec<(&[i64], &[i64])> = owned
                    .iter()
                    .map(|(t, c)| (t.as_slice(), c.as_slice()))
                    .collect();
                core(SampleInput::batch_from_events(
                    &streams, dt, n_frames, n_channels,
                ))
            }
        }
    }
}

#[pyclass(name = "Emulator", module = "asyncsnn._native", frozen)]
#[derive(Debug)]
pub struct PyEmulator(Emulator);

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
            Some(a) => Mapping::Explicit(
                a.as_array()
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        u32::try_from(c).map_err(|_| {
                            input_err(
                                "mapping",
                                format!(
                                    "neuron {i} is mapped to core {c}, outside 0..{}",
                                    chip.0.n_cores()
                                ),
                            )
                        })
                    })
                    .collect::<PyResult<_>>()?,
            ),
        };
        let (net, cfg) = (&network.0, chip.0.clone());
        Ok(Self(detached(py, || Emulator::new(net, cfg, &mapping))?))
    }

    #[getter]
    fn core_of<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        self.0.core_of().to_vec().into_pyarray(py)
    }

    #[getter]
    fn n_synapses(&self) -> usize {
        self.0.n_synapses()
    }

    /// Bytes the placed network holds.
    #[getter]
    fn nbytes(&self) -> usize {
        self.0.nbytes()
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

    /// Run a batch (see [`Inputs`]) with `options`; `labels[i]` is sample `i`'s class.
    #[pyo3(signature = (inputs, options, labels=None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Inputs<'py>,
        options: &PyRunOptions,
        labels: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let samples = inputs.into_samples(self.0.n_inputs())?;
        let labels = labels
            .map(|l| {
                l.as_array()
                    .iter()
                    .enumerate()
                    .map(|(i, &y)| {
                        u32::try_from(y).map_err(|_| {
                            input_err("labels", format!("label {y} of sample {i} is negative"))
                        })
                    })
                    .collect::<PyResult<Vec<u32>>>()
            })
            .transpose()?;
        let emu = &self.0;
        let opts = &options.0;
        let results = interruptible(py, |stop| {
            emu.run_until(&samples, labels.as_deref(), opts, stop)
        })?;
        let n_frames = samples.first().map_or(0, SampleInput::n_frames);
        batch_to_dict(py, &results, n_frames, emu.output_size())
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
