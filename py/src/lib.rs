//! The `sidtool` Python package's native module: thin bindings over the library, Arrow in and
//! out through the C data interface (pyarrow ⇄ arrow-rs, no copies of the buffers), the GIL
//! released while Rust computes, library errors raised as `sidtool.SidtoolError` with the
//! library's message.

use arrow_array::{Array, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_pyarrow::PyArrowType;
use arrow_schema::{DataType, Field};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sidtool::config::Dedup;
use std::path::PathBuf;
use std::sync::Arc;

create_exception!(
    _sidtool,
    SidtoolError,
    PyException,
    "A sidtool error: bad input (naming the file or batch, column and row), a bad setting, or \
     an unreadable model."
);

fn err(e: sidtool::error::Error) -> PyErr {
    SidtoolError::new_err(e.to_string())
}

/// A trained quantizer (a `sidtool train` output, or `quantizer/` of a build).
#[pyclass(frozen, module = "sidtool")]
struct Quantizer {
    inner: Box<dyn sidtool::quant::Quantizer>,
    path: PathBuf,
}

#[pymethods]
impl Quantizer {
    /// Load the quantizer directory (config.json + model.safetensors).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Quantizer> {
        let inner = py.detach(|| sidtool::quant::load(&path)).map_err(err)?;
        Ok(Quantizer { inner, path })
    }

    /// Method, levels, codebook sizes, input dimension and fingerprint.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let q = &self.inner;
        d.set_item("method", q.method().name())?;
        d.set_item("levels", q.levels())?;
        d.set_item("codebook_sizes", q.codebook_sizes().to_vec())?;
        d.set_item("dim", q.dim())?;
        d.set_item("fingerprint", q.fingerprint())?;
        d.set_item("path", self.path.clone())?;
        Ok(d)
    }

    /// Raw codes of one batch: `item_id` and `codes` (uint16 per level), no collision
    /// resolution; the schema metadata carries the footer `resolve` needs, so batches written
    /// with pyarrow (or Spark) resolve like `sidtool assign --dedup none` parts.
    #[pyo3(signature = (batch, id_column="item_id", embedding_column="embedding", token_format="<{level}_{code}>"))]
    fn encode(
        &self,
        py: Python<'_>,
        batch: PyArrowType<RecordBatch>,
        id_column: &str,
        embedding_column: &str,
        token_format: &str,
    ) -> PyResult<PyArrowType<RecordBatch>> {
        let q = self.inner.as_ref();
        let out = py
            .detach(|| {
                sidtool::pipeline::encode_batch(
                    q,
                    &batch.0,
                    id_column,
                    embedding_column,
                    token_format,
                )
            })
            .map_err(err)?;
        Ok(PyArrowType(out))
    }

    /// The reconstruction of each row of codes (a list of code lists, the quantizer's levels;
    /// a trailing suffix code is ignored) as a FixedSizeList<float32> array.
    fn decode(
        &self,
        py: Python<'_>,
        codes: Vec<Vec<u16>>,
    ) -> PyResult<PyArrowType<arrow_data::ArrayData>> {
        let q = self.inner.as_ref();
        let levels = q.levels();
        let mut flat = Vec::with_capacity(codes.len() * levels);
        for (row, c) in codes.iter().enumerate() {
            if c.len() != levels && c.len() != levels + 1 {
                return Err(SidtoolError::new_err(format!(
                    "codes row {row} has {} codes; this quantizer has {levels} levels (plus an \
                     optional suffix)",
                    c.len()
                )));
            }
            for (l, &code) in c[..levels].iter().enumerate() {
                if code as usize >= q.codebook_sizes()[l] {
                    return Err(SidtoolError::new_err(format!(
                        "codes row {row}: code {code} at level {} is not below the codebook size \
                         {}",
                        l + 1,
                        q.codebook_sizes()[l]
                    )));
                }
            }
            flat.extend_from_slice(&c[..levels]);
        }
        let m = py.detach(|| q.decode(&flat)).map_err(err)?;
        let values = Arc::new(Float32Array::from(m.data));
        let field = Arc::new(Field::new("item", DataType::Float32, false));
        let a = FixedSizeListArray::new(field, m.cols as i32, values, None);
        Ok(PyArrowType(a.into_data()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Quantizer({}, {:?}, dim={})",
            self.inner.method().name(),
            self.inner.codebook_sizes(),
            self.inner.dim()
        )
    }
}

/// Global collision resolution of raw-code parts (files or Spark-style directories), written
/// to `out` exactly as `sidtool resolve` writes it; returns the statistics as JSON text.
#[pyfunction]
#[pyo3(signature = (parts, out, dedup="suffix", existing=None, stats=None, quantizer=None))]
fn resolve(
    py: Python<'_>,
    parts: Vec<PathBuf>,
    out: PathBuf,
    dedup: &str,
    existing: Option<PathBuf>,
    stats: Option<PathBuf>,
    quantizer: Option<&Quantizer>,
) -> PyResult<String> {
    let coded_by = quantizer.map(|q| {
        sidtool::pipeline::raw_meta(q.inner.as_ref(), sidtool::ids::tokens::DEFAULT_TOKEN_FORMAT)
    });
    let strategy = match dedup {
        "suffix" => Dedup::Suffix,
        "none" => Dedup::None,
        "reassign" => Dedup::Reassign,
        other => {
            return Err(SidtoolError::new_err(format!(
                "dedup {other:?}: expected \"suffix\", \"none\" or \"reassign\""
            )));
        }
    };
    py.detach(|| -> sidtool::error::Result<String> {
        let files = sidtool::pipeline::part_files(&parts)?;
        let existing = existing
            .as_deref()
            .map(sidtool::ids::sid_table::read)
            .transpose()?;
        let a = sidtool::pipeline::resolve(&files, strategy, existing.as_ref(), coded_by.as_ref())?;
        sidtool::pipeline::write_assigned(&a, &out, stats.as_deref())?;
        Ok(serde_json::to_string(&a.stats).expect("statistics serialise"))
    })
    .map_err(err)
}

#[pymodule]
fn _sidtool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Quantizer>()?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add("SidtoolError", m.py().get_type::<SidtoolError>())?;
    m.add("__version__", sidtool::VERSION)?;
    Ok(())
}
