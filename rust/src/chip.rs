//! `ChipConfig`: a chip description (see the core's `ChipConfig`).

use emulator::ChipConfig;
use pyo3::prelude::*;

use crate::error::core;

#[pyclass(name = "ChipConfig", module = "asyncsnn._native", frozen)]
#[derive(Debug)]
pub struct PyChipConfig(pub ChipConfig);

#[pymethods]
impl PyChipConfig {
    #[staticmethod]
    fn preset(name: &str) -> PyResult<Self> {
        Ok(Self(core(ChipConfig::preset(name))?))
    }
    #[staticmethod]
    fn from_toml(text: &str) -> PyResult<Self> {
        Ok(Self(core(ChipConfig::from_toml(text))?))
    }
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Self(core(ChipConfig::from_json(text))?))
    }
    #[staticmethod]
    fn presets() -> Vec<&'static str> {
        emulator::PRESETS.to_vec()
    }
    fn to_toml(&self) -> PyResult<String> {
        core(self.0.to_toml())
    }
    fn to_json(&self) -> PyResult<String> {
        core(self.0.to_json())
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
