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
    /// with pyarrow (or Spark) resolve like `sidtool assign --dedup none` parts. GenSAR
    /// quantizers read the collaborative vectors too and add `cid_codes`.
    #[pyo3(signature = (batch, id_column="item_id", embedding_column="embedding", collab_column="collab_embedding", token_format="<{level}_{code}>"))]
    fn encode(
        &self,
        py: Python<'_>,
        batch: PyArrowType<RecordBatch>,
        id_column: &str,
        embedding_column: &str,
        collab_column: &str,
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
                    collab_column,
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
/// `embeddings`: reassign's vectors (with `quantizer`); `config_file`/`settings`: `[input]`,
/// `[collab]` and `[ids] token_format`, as the CLI reads them.
#[pyfunction]
#[pyo3(signature = (parts, out, dedup="suffix", existing=None, stats=None, quantizer=None, embeddings=None, config_file=None, settings="{}"))]
#[allow(clippy::too_many_arguments)]
fn resolve(
    py: Python<'_>,
    parts: Vec<PathBuf>,
    out: PathBuf,
    dedup: &str,
    existing: Option<PathBuf>,
    stats: Option<PathBuf>,
    quantizer: Option<&Quantizer>,
    embeddings: Option<PathBuf>,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<String> {
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
    match (strategy, &embeddings, quantizer) {
        (Dedup::Reassign, None, _) | (Dedup::Reassign, _, None) => {
            return Err(SidtoolError::new_err(
                "dedup=\"reassign\" moves colliding items to the nearest free code, which needs \
                 their vectors: give quantizer= (the quantizer that coded the parts) and \
                 embeddings= (the vectors it coded them from)",
            ));
        }
        (Dedup::Suffix | Dedup::None, Some(_), _) => {
            return Err(SidtoolError::new_err(
                "embeddings= is only read by dedup=\"reassign\" (the colliding items' vectors)",
            ));
        }
        _ => {}
    }
    let q = quantizer.map(|q| q.inner.as_ref());
    py.detach(|| -> sidtool::error::Result<String> {
        let cfg = config(config_file, settings)?;
        let coded_by = q.map(|q| sidtool::pipeline::raw_meta(q, &cfg.ids.token_format));
        let files = sidtool::pipeline::part_files(&parts)?;
        let existing = existing
            .as_deref()
            .map(sidtool::ids::sid_table::read)
            .transpose()?;
        let collab = match (q, &embeddings) {
            (Some(q), Some(e)) => sidtool::pipeline::collab_for(q, e, &cfg)?,
            _ => None,
        };
        let vectors = q
            .zip(embeddings.as_deref())
            .map(|(q, e)| sidtool::pipeline::Vectors {
                quantizer: q,
                source: sidtool::pipeline::Source::File {
                    path: e,
                    input: &cfg.input,
                    collab: collab.as_ref(),
                },
            });
        let a = sidtool::pipeline::resolve(
            &files,
            strategy,
            existing.as_ref(),
            coded_by.as_ref(),
            vectors.as_ref(),
        )?;
        sidtool::pipeline::write_assigned(&a, &out, stats.as_deref())?;
        Ok(json(&a.stats))
    })
    .map_err(err)
}

/// A text-embedding model with its item template: `sidtool embed` per Arrow batch.
#[pyclass(frozen, subclass, module = "sidtool")]
struct Embedder {
    inner: sidtool::embed::batch::BatchEmbedder,
}

#[pymethods]
impl Embedder {
    /// Load the model (a hub id through the HF cache, or a local directory). Unset options
    /// take `sidtool embed`'s defaults.
    #[new]
    #[pyo3(signature = (model=None, *, template=None, pooling=None, dim=None, device=None, dtype=None, instruction=None, max_length=None, batch_tokens=None, revision=None, id_column="item_id"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<String>,
        template: Option<String>,
        pooling: Option<String>,
        dim: Option<usize>,
        device: Option<String>,
        dtype: Option<String>,
        instruction: Option<String>,
        max_length: Option<usize>,
        batch_tokens: Option<usize>,
        revision: Option<String>,
        id_column: &str,
    ) -> PyResult<Embedder> {
        let mut o = serde_json::Map::new();
        let mut set = |k: &str, v: serde_json::Value| {
            if !v.is_null() {
                o.insert(k.to_string(), v);
            }
        };
        set("model", model.into());
        set("template", template.into());
        set("pooling", pooling.into());
        set("dim", dim.into());
        set("device", device.into());
        set("dtype", dtype.into());
        set("instruction", instruction.into());
        set("max_length", max_length.into());
        set("batch_tokens", batch_tokens.into());
        set("revision", revision.into());
        let cfg: sidtool::config::EmbedConfig = sidtool::config::with_overrides(
            &sidtool::config::EmbedConfig::default(),
            &serde_json::Value::Object(o),
        )
        .map_err(err)?;
        let inner = py
            .detach(|| sidtool::embed::batch::BatchEmbedder::new(&cfg, id_column))
            .map_err(err)?;
        Ok(Embedder { inner })
    }

    /// `item_id` + `embedding` (FixedSizeList<float32>) of every row of `batch`: the vectors
    /// `sidtool embed` writes for the same rows.
    fn embed(
        &self,
        py: Python<'_>,
        batch: PyArrowType<RecordBatch>,
    ) -> PyResult<PyArrowType<RecordBatch>> {
        let out = py.detach(|| self.inner.embed(&batch.0)).map_err(err)?;
        Ok(PyArrowType(out))
    }

    /// The model, dimension, pooling, dtype, device and instruction, as JSON text.
    #[getter]
    fn _info(&self) -> String {
        serde_json::to_string(self.inner.info()).expect("encoder info serialises")
    }
}

/// The settings of a wrapper call: the TOML file, then the JSON object of sections over it.
fn config(
    file: Option<PathBuf>,
    settings: &str,
) -> sidtool::error::Result<sidtool::config::Config> {
    let v: serde_json::Value = serde_json::from_str(settings)
        .map_err(|e| sidtool::error::Error::Config(format!("settings: {e}")))?;
    sidtool::config::Config::load(file.as_deref(), &v)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("reports serialise")
}

/// `sidtool build`; returns the statistics as JSON text.
#[pyfunction]
fn _build(
    py: Python<'_>,
    items: PathBuf,
    out: PathBuf,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<String> {
    py.detach(|| -> sidtool::error::Result<String> {
        let cfg = config(config_file, settings)?;
        let (_, stats) = sidtool::pipeline::build(&items, &out, &cfg, &sidtool::progress::Silent)?;
        Ok(json(&stats))
    })
    .map_err(err)
}

/// `sidtool embed`; returns the run's report as JSON text.
#[pyfunction]
fn _embed_file(
    py: Python<'_>,
    items: PathBuf,
    out: PathBuf,
    resume: bool,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<String> {
    py.detach(|| -> sidtool::error::Result<String> {
        let cfg = config(config_file, settings)?;
        let r = sidtool::embed::job::embed_file(
            &items,
            &out,
            &cfg.embed,
            &cfg.input,
            resume,
            &sidtool::progress::Silent,
        )?;
        Ok(json(&r))
    })
    .map_err(err)
}

/// `sidtool train`: the quantizer is saved to `out` and returned.
#[pyfunction]
fn _train(
    py: Python<'_>,
    embeddings: PathBuf,
    out: PathBuf,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<Quantizer> {
    let inner = py
        .detach(
            || -> sidtool::error::Result<Box<dyn sidtool::quant::Quantizer>> {
                let cfg = config(config_file, settings)?;
                let q = sidtool::pipeline::train(&embeddings, &cfg, &sidtool::progress::Silent)?;
                q.save(&out)?;
                Ok(q)
            },
        )
        .map_err(err)?;
    Ok(Quantizer { inner, path: out })
}

/// `sidtool assign`; returns the statistics as JSON text.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn _assign(
    py: Python<'_>,
    embeddings: PathBuf,
    quantizer: &Quantizer,
    out: PathBuf,
    stats: Option<PathBuf>,
    existing: Option<PathBuf>,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<String> {
    let q = quantizer.inner.as_ref();
    py.detach(|| -> sidtool::error::Result<String> {
        let mut cfg = config(config_file, settings)?;
        let previous = existing
            .as_deref()
            .map(sidtool::ids::sid_table::read)
            .transpose()?;
        if let Some(meta) = previous.as_ref().and_then(|t| t.meta.as_ref()) {
            // As the CLI: the existing table's dedup and token format unless given.
            let given: serde_json::Value = serde_json::from_str(settings).unwrap_or_default();
            let ids = &given["ids"];
            cfg.ids.follow_existing(
                meta,
                !ids["dedup"].is_null(),
                !ids["token_format"].is_null(),
            )?;
        }
        let collab = sidtool::pipeline::collab_for(q, &embeddings, &cfg)?;
        let source = sidtool::pipeline::Source::File {
            path: &embeddings,
            input: &cfg.input,
            collab: collab.as_ref(),
        };
        let a = sidtool::pipeline::assign(
            &source,
            q,
            &cfg,
            previous.as_ref(),
            &sidtool::progress::Silent,
        )?;
        sidtool::pipeline::write_assigned(&a, &out, stats.as_deref())?;
        Ok(json(&a.stats))
    })
    .map_err(err)
}

/// `sidtool stats`; returns the statistics as JSON text.
#[pyfunction]
fn _stats(
    py: Python<'_>,
    sids: PathBuf,
    embeddings: Option<PathBuf>,
    quantizer: Option<&Quantizer>,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<String> {
    let q = quantizer.map(|q| q.inner.as_ref());
    py.detach(|| -> sidtool::error::Result<String> {
        let cfg = config(config_file, settings)?;
        let s = match (embeddings.as_deref(), q) {
            (Some(e), Some(q)) => {
                let collab = sidtool::pipeline::collab_for(q, e, &cfg)?;
                let source = sidtool::pipeline::Source::File {
                    path: e,
                    input: &cfg.input,
                    collab: collab.as_ref(),
                };
                sidtool::pipeline::stats_of_table(&sids, Some((&source, q)))?
            }
            (None, None) => sidtool::pipeline::stats_of_table(&sids, None)?,
            _ => {
                return Err(sidtool::error::Error::Config(
                    "stats: embeddings and quantizer go together (the reconstruction error needs \
                     both)"
                        .into(),
                ));
            }
        };
        Ok(json(&s))
    })
    .map_err(err)
}

/// `sidtool vocab`; returns the vocabulary report (sid_tokens.json) as JSON text.
#[pyfunction]
fn _vocab(
    py: Python<'_>,
    sids: PathBuf,
    out: PathBuf,
    config_file: Option<PathBuf>,
    settings: &str,
) -> PyResult<String> {
    py.detach(|| -> sidtool::error::Result<String> {
        let cfg = config(config_file, settings)?;
        let v = &cfg.vocab;
        let Some(spec) = &v.llm else {
            return Err(sidtool::error::Error::Config(
                "vocab needs llm: the LLM that will learn the SIDs (hub id, model directory or \
                 tokenizer.json)"
                    .into(),
            ));
        };
        let llm = sidtool::vocab::llm::Llm::resolve(spec, &v.llm_revision)?;
        let table = sidtool::ids::sid_table::read(&sids)?;
        let opts = sidtool::vocab::extend::Options::new(v, cfg.seed);
        Ok(json(&sidtool::vocab::write_all(&table, &llm, &out, &opts)?))
    })
    .map_err(err)
}

#[pymodule]
fn _sidtool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Quantizer>()?;
    m.add_class::<Embedder>()?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    for f in [
        wrap_pyfunction!(_build, m)?,
        wrap_pyfunction!(_embed_file, m)?,
        wrap_pyfunction!(_train, m)?,
        wrap_pyfunction!(_assign, m)?,
        wrap_pyfunction!(_stats, m)?,
        wrap_pyfunction!(_vocab, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add("SidtoolError", m.py().get_type::<SidtoolError>())?;
    m.add("__version__", sidtool::VERSION)?;
    Ok(())
}
