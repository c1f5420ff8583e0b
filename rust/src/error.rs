//! Exceptions, the one mapping of core errors to them, and the one place where the binding
//! releases the interpreter and catches panics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use emulator::Error;
use pyo3::create_exception;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

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

/// A core error on its way to Python (`?` converts it).
#[derive(Debug)]
pub struct CoreError(pub Error);

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
            Error::Memory { .. } => PyMemoryError::new_err(msg),
            Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
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

/// A core result as a Python result.
pub fn core<T>(r: emulator::Result<T>) -> PyResult<T> {
    r.map_err(|e| CoreError(e).into())
}

/// A caught panic as `InternalError`.
fn panicked(panic: &(dyn std::any::Any + Send)) -> PyErr {
    let what = panic
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    InternalError::new_err(format!("emulator panicked: {what}"))
}

/// `work` runs with the interpreter detached; a core error becomes its Python exception, a
/// panic becomes `InternalError`.
pub fn detached<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> emulator::Result<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => core(result),
        Err(panic) => Err(panicked(&*panic)),
    }
}

/// How often a waiting interpreter looks at its signals during [`interruptible`] work.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// [`detached`] for long work that takes a stop flag: it runs on a thread of its own while
/// this thread looks at the interpreter's signals every 50 ms. A signal handler that raises
/// (Ctrl-C: `KeyboardInterrupt`) sets the flag, waits for the work to stop (within one step)
/// and raises that exception; nothing is returned.
pub fn interruptible<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&AtomicBool) -> emulator::Result<T> + Send,
) -> PyResult<T> {
    let stop = AtomicBool::new(false);
    let waiter = std::thread::current();
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new().spawn_scoped(scope, || {
            let r = catch_unwind(AssertUnwindSafe(|| work(&stop)));
            waiter.unpark();
            r
        });
        let handle = match spawned {
            Ok(h) => h,
            // No thread to be had (a memory or thread limit): say so, do not panic.
            Err(e) => {
                return Err(PyMemoryError::new_err(format!(
                    "out of memory: no thread for the run ({e})"
                )))
            }
        };
        let mut signal: Option<PyErr> = None;
        while !handle.is_finished() {
            py.detach(|| std::thread::park_timeout(SIGNAL_POLL));
            if signal.is_none() {
                if let Err(e) = py.check_signals() {
                    stop.store(true, Ordering::Relaxed);
                    signal = Some(e);
                }
            }
        }
        let outcome = py.detach(|| handle.join());
        if let Some(e) = signal {
            return Err(e);
        }
        match outcome {
            Ok(Ok(result)) => core(result),
            Ok(Err(panic)) | Err(panic) => Err(panicked(&*panic)),
        }
    })
}

/// An `InputError` naming `field`.
pub fn input_err(field: &str, message: impl Into<String>) -> PyErr {
    CoreError(Error::Input {
        field: field.to_owned(),
        message: message.into(),
    })
    .into()
}

/// A `NetworkError` naming `field`.
pub fn network_err(field: &str, message: impl Into<String>) -> PyErr {
    CoreError(Error::Network {
        field: field.to_owned(),
        message: message.into(),
    })
    .into()
}

/// Register the exceptions on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("NetworkError", py.get_type::<NetworkError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("MappingError", py.get_type::<MappingError>())?;
    m.add("RunawayError", py.get_type::<RunawayError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    Ok(())
}
