//! The run options as one typed object (`RunOptions`), and the conversion of option names to
//! the core's enums. Python's `asyncsnn.RunOptions` holds the defaults and checks the values;
//! this only converts them (the core checks them again for Rust callers).

use emulator::{Choice, InputMode, Mode, RunOptions, Scheduler};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::error::{core, input_err};

/// A core choice (mode, scheduler, input mode) taken from its Python name.
pub struct Wrap<T>(pub T);

impl<'a, 'py, T: Choice> FromPyObject<'a, 'py> for Wrap<T> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name = obj.cast::<PyString>().map_err(|_| {
            input_err(
                T::FIELD,
                format!("expected a name; allowed: {}", T::names().join(", ")),
            )
        })?;
        Ok(Self(core(T::parse(&name.to_cow()?))?))
    }
}

/// Everything that parameterises a run besides the network, chip and inputs (see the core's
/// `RunOptions`), checked and frozen.
#[pyclass(name = "RunOptions", module = "asyncsnn._native", frozen, eq)]
#[derive(Debug, PartialEq)]
pub struct PyRunOptions(pub RunOptions);

#[pymethods]
impl PyRunOptions {
    #[new]
    #[pyo3(signature = (*, mode, scheduler, f, seed, sample_offset, input_mode, max_steps, runaway_steps,
                        trace, threads))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: Wrap<Mode>,
        scheduler: Wrap<Scheduler>,
        f: Option<usize>,
        seed: u64,
        sample_offset: u64,
        input_mode: Wrap<InputMode>,
        max_steps: Option<u64>,
        runaway_steps: u64,
        trace: bool,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        let o = RunOptions {
            mode: mode.0,
            scheduler: scheduler.0,
            f,
            seed,
            sample_offset,
            input_mode: input_mode.0,
            max_steps,
            runaway_steps,
            trace,
            threads,
        };
        core(o.validate())?;
        Ok(Self(o))
    }

    #[getter]
    fn mode(&self) -> &'static str {
        self.0.mode.name()
    }
    #[getter]
    fn scheduler(&self) -> &'static str {
        self.0.scheduler.name()
    }
    #[getter]
    fn f(&self) -> Option<usize> {
        self.0.f
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.0.seed
    }
    #[getter]
    fn sample_offset(&self) -> u64 {
        self.0.sample_offset
    }
    #[getter]
    fn input_mode(&self) -> &'static str {
        self.0.input_mode.name()
    }
    #[getter]
    fn max_steps(&self) -> Option<u64> {
        self.0.max_steps
    }
    #[getter]
    fn runaway_steps(&self) -> u64 {
        self.0.runaway_steps
    }
    #[getter]
    fn trace(&self) -> bool {
        self.0.trace
    }
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.0.threads
    }

    fn __repr__(&self) -> String {
        let o = &self.0;
        let opt = |v: Option<u64>| v.map_or_else(|| "None".to_owned(), |x| x.to_string());
        let usize_opt = |v: Option<usize>| opt(v.map(|x| x as u64));
        format!(
            "RunOptions(mode='{}', scheduler='{}', f={}, seed={}, sample_offset={}, input_mode='{}', \
             max_steps={}, runaway_steps={}, trace={}, threads={})",
            o.mode.name(),
            o.scheduler.name(),
            usize_opt(o.f),
            o.seed,
            o.sample_offset,
            o.input_mode.name(),
            opt(o.max_steps),
            o.runaway_steps,
            if o.trace { "True" } else { "False" },
            usize_opt(o.threads)
        )
    }
}

/// The names of every choice, and the default runaway limit, for `asyncsnn.options`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRunOptions>()?;
    m.add("MODES", Mode::names())?;
    m.add("SCHEDULERS", Scheduler::names())?;
    m.add("INPUT_MODES", InputMode::names())?;
    m.add("RUNAWAY_STEPS", emulator::RUNAWAY_STEPS)?;
    Ok(())
}
