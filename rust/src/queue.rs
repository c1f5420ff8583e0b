//! `SpikeQueue`: the emulator's arbitration queue, driven directly (see the core's
//! `CheckedQueue`), and the hash and firing table it and the stochastic neurons use.

use emulator::{CheckedQueue, Scheduler};
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

use crate::error::core;
use crate::options::Wrap;

#[pyclass(name = "SpikeQueue", module = "asyncsnn._native")]
#[derive(Debug)]
pub struct PySpikeQueue(CheckedQueue);

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
        Ok(Self(core(CheckedQueue::new(
            n_inputs, group_of, population, seed, sample,
        ))?))
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
        core(self.0.push(source, count, frame, step, overshoot))
    }

    #[pyo3(signature = (group, f, scheduler, frame=0, step=0))]
    fn release(
        &mut self,
        group: u32,
        f: Option<usize>,
        scheduler: Wrap<Scheduler>,
        frame: u32,
        step: u32,
    ) -> PyResult<Vec<(u32, u32)>> {
        core(self.0.release(group, f, scheduler.0, frame, step))
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
pub fn hash_key(seed: u64, sample: u64, frame: u64, step: u64, source: u64) -> u32 {
    emulator::hash::key(seed, sample, frame, step, source)
}

/// The stochastic neurons' firing table `T[i + 4096]`, `i` in `-4096..=4096`.
#[pyfunction]
pub fn stochastic_thresholds(py: Python<'_>) -> Bound<'_, PyArray1<u64>> {
    emulator::stochastic::thresholds().to_vec().into_pyarray(py)
}
