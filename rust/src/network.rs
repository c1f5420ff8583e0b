//! `Network`: a validated network (see the core's `Network`), built from the plain values
//! that `asyncsnn.Network.to_native` hands over.

use emulator::{mem, Network, NeuronKind, Population, Projection, Reset, Source, Weights};
use numpy::ndarray::ArrayView1;
use numpy::{PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::error::{core, network_err};

/// One population: a dict with every key.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct PopulationArgs {
    size: i64,
    theta: f32,
    beta: f32,
    reset: String,
    refractory: bool,
    kind: String,
    alpha: f32,
}

impl PopulationArgs {
    fn into_core(self, i: usize) -> PyResult<Population> {
        let field = |k: &str| format!("populations[{i}].{k}");
        let size = usize::try_from(self.size)
            .map_err(|_| network_err(&field("size"), format!("{} is outside 1..", self.size)))?;
        let reset = Reset::parse(&self.reset).map_err(|_| {
            network_err(
                &field("reset"),
                format!("{:?}; allowed: zero, subtract", self.reset),
            )
        })?;
        let kind = NeuronKind::parse(&self.kind, self.alpha).map_err(|_| {
            network_err(
                &field("kind"),
                format!("{:?}; allowed: lif, stochastic, integrator", self.kind),
            )
        })?;
        Ok(Population {
            size,
            theta: self.theta,
            beta: self.beta,
            reset,
            refractory: self.refractory,
            kind,
        })
    }
}

/// A projection's source: `"input"` or a population index.
#[derive(FromPyObject)]
enum SourceArg {
    Population(i64),
    Name(String),
}

/// A weight matrix: dense `(rows, cols)` float32, or sparse `(shape, rows, cols, values)`.
#[derive(FromPyObject)]
enum WeightsArg<'py> {
    Dense(PyReadonlyArray2<'py, f32>),
    Sparse(
        (usize, usize),
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, i64>,
        PyReadonlyArray1<'py, f32>,
    ),
    /// int32 indices (what most sparse matrices hold): taken as they are, not widened.
    Sparse32(
        (usize, usize),
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray1<'py, f32>,
    ),
}

/// The entries of a sparse matrix from its index and value arrays.
fn sparse_entries<I: Copy + Into<i64>>(
    (rows, cols): (usize, usize),
    r: ArrayView1<'_, I>,
    c: ArrayView1<'_, I>,
    v: ArrayView1<'_, f32>,
    field: &str,
) -> PyResult<Weights> {
    if r.len() != c.len() || r.len() != v.len() {
        return Err(network_err(
            field,
            format!(
                "rows, cols and values differ in length ({}, {}, {})",
                r.len(),
                c.len(),
                v.len()
            ),
        ));
    }
    let index = |i: i64, j: i64| -> PyResult<(u32, u32)> {
        match (u32::try_from(i), u32::try_from(j)) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(network_err(
                field,
                format!("index ({i}, {j}) is outside the ({rows}, {cols}) matrix"),
            )),
        }
    };
    let mut entries = core(mem::with_capacity(r.len(), field))?;
    for ((&i, &j), &w) in r.iter().zip(&c).zip(&v) {
        let (i, j) = index(i.into(), j.into())?;
        entries.push((i, j, w));
    }
    Ok(Weights::Sparse {
        rows,
        cols,
        entries,
    })
}

/// One projection: a dict with `source`, `target` and `weights`.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct ProjectionArgs<'py> {
    source: SourceArg,
    target: i64,
    weights: WeightsArg<'py>,
}

impl ProjectionArgs<'_> {
    fn into_core(self, j: usize) -> PyResult<Projection> {
        let field = |k: &str| format!("projections[{j}].{k}");
        let source = match self.source {
            SourceArg::Name(s) if s == "input" => Source::Input,
            SourceArg::Name(s) => {
                return Err(network_err(
                    &field("source"),
                    format!("{s:?}; allowed: 'input' or a population index"),
                ))
            }
            SourceArg::Population(s) => Source::Population(
                usize::try_from(s)
                    .map_err(|_| network_err(&field("source"), format!("{s} is negative")))?,
            ),
        };
        let target = usize::try_from(self.target)
            .map_err(|_| network_err(&field("target"), format!("{} is negative", self.target)))?;
        let weights = match self.weights {
            WeightsArg::Dense(w) => {
                let a = w.as_array();
                let (rows, cols) = a.dim();
                Weights::Dense {
                    rows,
                    cols,
                    data: core(mem::collect(a.len(), a.iter().copied(), &field("weights")))?,
                }
            }
            WeightsArg::Sparse(shape, r, c, v) => sparse_entries(
                shape,
                r.as_array(),
                c.as_array(),
                v.as_array(),
                &field("weights"),
            )?,
            WeightsArg::Sparse32(shape, r, c, v) => sparse_entries(
                shape,
                r.as_array(),
                c.as_array(),
                v.as_array(),
                &field("weights"),
            )?,
        };
        Ok(Projection {
            source,
            target,
            weights,
        })
    }
}

#[pyclass(name = "Network", module = "asyncsnn._native", frozen)]
#[derive(Debug)]
pub struct PyNetwork(pub Network);

#[pymethods]
impl PyNetwork {
    #[new]
    fn new(
        n_inputs: i64,
        populations: Vec<Bound<'_, PyAny>>,
        projections: Vec<Bound<'_, PyAny>>,
        output: i64,
    ) -> PyResult<Self> {
        let n_inputs = usize::try_from(n_inputs)
            .map_err(|_| network_err("n_inputs", format!("{n_inputs} is negative")))?;
        let output = usize::try_from(output)
            .map_err(|_| network_err("output", format!("{output} is negative")))?;
        let pops = populations
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.extract::<PopulationArgs>()
                    .map_err(|e| network_err(&format!("populations[{i}]"), e.to_string()))?
                    .into_core(i)
            })
            .collect::<PyResult<Vec<_>>>()?;
        let projs = projections
            .iter()
            .enumerate()
            .map(|(j, p)| {
                p.extract::<ProjectionArgs<'_>>()
                    .map_err(|e| network_err(&format!("projections[{j}]"), e.to_string()))?
                    .into_core(j)
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self(core(Network::new(n_inputs, pops, projs, output))?))
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
