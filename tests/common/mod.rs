//! Helpers for the CLI tests: run the real binary, and write small Parquet inputs, good and
//! deliberately broken.
#![allow(dead_code)]

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder, ListBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

pub fn sidtool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sidtool"))
        .args(args)
        .output()
        .expect("run sidtool")
}

/// Run and require success, returning stderr.
pub fn ok(args: &[&str]) -> String {
    let o = sidtool(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "sidtool {args:?} failed:\n{err}");
    err
}

/// Run and require failure, returning stderr.
pub fn fails(args: &[&str]) -> String {
    let o = sidtool(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "sidtool {args:?} should have failed:\n{err}"
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

pub fn write_batch(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

pub fn str_ids(n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("item-{i:04}")),
    ))
}

pub fn int_ids(n: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(
        (0..n as i64).map(|i| 1000 + i),
    ))
}

/// FixedSizeList<Float32> column; `None` rows become null lists.
pub fn fsl(rows: &[Option<Vec<f32>>], dim: usize) -> ArrayRef {
    let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32);
    for r in rows {
        match r {
            Some(v) => {
                b.values().append_slice(v);
                b.append(true);
            }
            None => {
                b.values().append_slice(&vec![0.0; dim]);
                b.append(false);
            }
        }
    }
    Arc::new(b.finish())
}

/// List<Float64> column (variable length allowed, to test length checks).
pub fn list64(rows: &[Vec<f64>]) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::new());
    for r in rows {
        b.values().append_slice(r);
        b.append(true);
    }
    Arc::new(b.finish())
}

/// Deterministic clustered vectors: `n` rows around `clusters` centres.
pub fn clustered(n: usize, dim: usize, clusters: usize) -> Vec<Vec<f32>> {
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| 4.0 * rnd()).collect())
        .collect();
    (0..n)
        .map(|i| {
            centres[i % clusters]
                .iter()
                .map(|c| c + 0.3 * rnd())
                .collect()
        })
        .collect()
}

pub fn some(v: Vec<Vec<f32>>) -> Vec<Option<Vec<f32>>> {
    v.into_iter().map(Some).collect()
}

/// Files left in a directory (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
