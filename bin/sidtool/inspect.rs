//! `sidtool inspect`: a quick look at any sidtool input or output.

use anyhow::Result;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use sidtool::io::embeddings::open_parquet;
use sidtool::quant::store;
use std::fmt::Write;
use std::path::Path;

/// Rows shown by default.
pub const SAMPLE_ROWS: usize = 5;
/// List values shown per cell before eliding.
const LIST_PREVIEW: usize = 6;

/// Describe a Parquet file, a JSON artefact or a quantizer directory.
pub fn describe(path: &Path, rows: usize) -> Result<String> {
    if path.is_dir() && path.join("config.json").is_file() {
        return describe_quantizer(path);
    }
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| sidtool::Error::io(path, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|cause| sidtool::Error::Json {
                path: path.to_path_buf(),
                cause,
            })?;
        return Ok(serde_json::to_string_pretty(&v).unwrap() + "\n");
    }
    let builder = open_parquet(path)?;
    let schema = builder.schema().clone();
    let mut o = String::new();
    writeln!(o, "{}", path.display()).unwrap();
    let parts = builder.files().count();
    writeln!(
        o,
        "rows: {}   row groups: {}{}",
        builder.num_rows(),
        builder.num_row_groups(),
        if parts > 1 {
            format!("   parts: {parts}")
        } else {
            String::new()
        }
    )
    .unwrap();
    writeln!(o, "columns:").unwrap();
    for f in schema.fields() {
        writeln!(
            o,
            "  {:<24} {}{}",
            f.name(),
            f.data_type(),
            if f.is_nullable() { " (nullable)" } else { "" }
        )
        .unwrap();
    }
    for (k, v) in builder.key_values() {
        if k.starts_with("sidtool") {
            writeln!(o, "metadata {k}: {v}").unwrap();
        }
    }
    if rows > 0 {
        let mut reader = builder.reader(Some(rows), None)?;
        if let Some(b) = reader.next() {
            let b = b.map_err(|e| sidtool::Error::arrow(path, e))?;
            writeln!(o, "first {} rows:", b.num_rows()).unwrap();
            for r in 0..b.num_rows() {
                let cells: Vec<String> = schema
                    .fields()
                    .iter()
                    .zip(b.columns())
                    .map(|(f, c)| format!("{}={}", f.name(), cell(c, r)))
                    .collect();
                writeln!(o, "  [{r}] {}", cells.join("  ")).unwrap();
            }
        }
    }
    Ok(o)
}

fn describe_quantizer(dir: &Path) -> Result<String> {
    let cfg = dir.join(store::CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg).map_err(|e| sidtool::Error::io(&cfg, e))?;
    let mut o = format!("{} (quantizer)\n{}\n", dir.display(), text.trim_end());
    let tensors = store::load_tensors(dir)?;
    let mut names: Vec<_> = tensors.keys().collect();
    names.sort();
    for n in names {
        writeln!(o, "tensor {n}: {:?}", tensors[n].dims()).unwrap();
    }
    Ok(o)
}

/// One cell as text; long lists are elided.
fn cell(a: &ArrayRef, r: usize) -> String {
    if a.is_null(r) {
        return "null".into();
    }
    macro_rules! prim {
        ($t:ty) => {
            a.as_primitive::<$t>().value(r).to_string()
        };
    }
    match a.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => format!("{:.4}", a.as_primitive::<Float32Type>().value(r)),
        DataType::Float64 => format!("{:.4}", a.as_primitive::<Float64Type>().value(r)),
        DataType::Boolean => a.as_boolean().value(r).to_string(),
        DataType::Utf8 => format!("{:?}", a.as_string::<i32>().value(r)),
        DataType::LargeUtf8 => format!("{:?}", a.as_string::<i64>().value(r)),
        DataType::Utf8View => format!("{:?}", a.as_string_view().value(r)),
        DataType::FixedSizeList(_, _) => list(&a.as_fixed_size_list().value(r)),
        DataType::List(_) => list(&a.as_list::<i32>().value(r)),
        DataType::LargeList(_) => list(&a.as_list::<i64>().value(r)),
        t => format!("<{t}>"),
    }
}

fn list(values: &ArrayRef) -> String {
    let n = values.len();
    let shown: Vec<String> = (0..n.min(LIST_PREVIEW)).map(|i| cell(values, i)).collect();
    if n > LIST_PREVIEW {
        format!("[{}, … ({n} values)]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}
