//! `asyncsnn._native`: the PyO3 binding of the emulator crate.
//!
//! This crate only converts: Python values to owned core values, core results to numpy
//! arrays, core errors to Python exceptions (`error`). One module per type: `options`
//! (`RunOptions`), `chip` (`ChipConfig`), `network` (`Network`), `emulator` (`Emulator` and its
//! `run`), `result` (what a run returns), `queue` (`SpikeQueue`, the hash), `train` (the training engine). The simulation runs
//! with the interpreter detached and inside `catch_unwind`, so no panic crosses into Python.

// PyO3 hands extracted arguments over by value.
#![allow(clippy::needless_pass_by_value)]

mod chip;
mod emulator;
mod error;
mod network;
mod options;
mod queue;
mod result;
mod train;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<chip::PyChipConfig>()?;
    m.add_class::<network::PyNetwork>()?;
    m.add_class::<emulator::PyEmulator>()?;
    m.add_class::<queue::PySpikeQueue>()?;
    m.add_function(wrap_pyfunction!(queue::hash_key, m)?)?;
    m.add_function(wrap_pyfunction!(queue::stochastic_thresholds, m)?)?;
    m.add_class::<train::PyTrainTape>()?;
    m.add_function(wrap_pyfunction!(train::train_forward, m)?)?;
    options::register(m)?;
    error::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
