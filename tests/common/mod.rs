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

/// Run sidtool; every stats.json the run wrote is checked against the schema (see
/// [`check_stats_outputs`]), as with every other helper here that runs it.
pub fn sidtool(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_sidtool"))
        .args(args)
        .output()
        .expect("run sidtool");
    check_stats_outputs(args, &o, None);
    o
}

/// Run and require success, returning stderr (progress and log lines).
pub fn ok(args: &[&str]) -> String {
    ok_out(args).1
}

/// Run and require success, returning (stdout, stderr): the command's report or data, and its
/// progress and log lines.
pub fn ok_out(args: &[&str]) -> (String, String) {
    let o = sidtool(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "sidtool {args:?} failed:\n{err}");
    (String::from_utf8_lossy(&o.stdout).into_owned(), err)
}

/// Global flags that take a value: their values are not the subcommand.
const GLOBAL_VALUE_FLAGS: [&str; 3] = ["--config", "--seed", "--threads"];

/// The value of `--flag VALUE` or `--flag=VALUE` in `args`.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == name {
            args.get(i + 1).copied()
        } else {
            a.strip_prefix(eq.as_str())
        }
    })
}

/// Check every stats.json a successful run wrote against schemas/stats.schema.json: `build`'s
/// output directory, `assign`/`resolve --stats`, `stats --json`, and stdout when that is `-`.
/// Every helper that runs sidtool calls this, so each statistics file any test produces is
/// validated, not only the few a test looks at.
pub fn check_stats_outputs(args: &[&str], o: &Output, cwd: Option<&Path>) {
    // `--help` succeeds without running the command.
    if !o.status.success() || args.iter().any(|a| ["-h", "--help"].contains(a)) {
        return;
    }
    let mut i = 0;
    let cmd = loop {
        match args.get(i) {
            None => return,
            Some(a) if GLOBAL_VALUE_FLAGS.contains(a) => i += 2,
            Some(a) if a.starts_with('-') => i += 1,
            Some(a) => break *a,
        }
    };
    let target = match cmd {
        "build" => Some(flag(args, "--out").unwrap_or("sidtool-out")).map(|d| (d, true)),
        "assign" | "resolve" => flag(args, "--stats").map(|f| (f, false)),
        "stats" => flag(args, "--json").map(|f| (f, false)),
        _ => None,
    };
    let Some((path, is_dir)) = target else {
        return;
    };
    let (what, v) = if path == "-" {
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("sidtool {args:?}: stdout is not JSON: {e}"));
        ("stdout".to_string(), v)
    } else {
        let mut p = PathBuf::from(path);
        if let Some(d) = cwd.filter(|_| p.is_relative()) {
            p = d.join(p);
        }
        if is_dir {
            p = p.join("stats.json");
        }
        (p.display().to_string(), read_json(&p))
    };
    let schema = stats_schema();
    if let Err(e) = check_schema(&v, &schema, &schema, "stats") {
        panic!("sidtool {args:?}: {what} does not match schemas/stats.schema.json: {e}");
    }
}

pub fn stats_schema() -> serde_json::Value {
    read_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/stats.schema.json"))
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

/// An interactions table (`user_id`, `item_id`, and `timestamp` when given) as the
/// interaction readers take it.
pub fn write_interactions(
    path: &Path,
    users: Vec<String>,
    items: Vec<String>,
    timestamps: Option<Vec<i64>>,
) {
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(StringArray::from(users))),
        ("item_id", Arc::new(StringArray::from(items))),
    ];
    if let Some(t) = timestamps {
        cols.push(("timestamp", Arc::new(Int64Array::from(t))));
    }
    write_batch(path, cols);
}

/// A small build of the shipped catalogue (codebooks 8, 4) into `out`.
/// Interactions of 60 users in 3 taste groups, each group using 10 of items `item-0000` …
/// `item-0029`, 8 timestamped events per user: (users, items, timestamps).
pub fn taste_groups() -> (Vec<String>, Vec<String>, Vec<i64>) {
    let (mut u, mut it, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for user in 0..60 {
        for t in 0..8 {
            u.push(format!("u{user}"));
            it.push(format!(
                "item-{:04}",
                (user % 3) * 10 + (user * 3 + t * 7) % 10
            ));
            ts.push(1_700_000_000 + t as i64 * 60);
        }
    }
    (u, it, ts)
}

pub fn build_small(out: &Path) {
    ok(&[
        "build",
        testdata("items.parquet").to_str().unwrap(),
        "--codebook-sizes",
        "8,4",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
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

/// Check a JSON value against the subset of JSON Schema that schemas/*.schema.json use
/// (type, required, properties, additionalProperties: false, items, $ref to $defs, enum,
/// minimum). Returns the first violation.
pub fn check_schema(
    v: &serde_json::Value,
    schema: &serde_json::Value,
    root: &serde_json::Value,
    at: &str,
) -> Result<(), String> {
    use serde_json::Value;
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/$defs/");
        return check_schema(v, &root["$defs"][name], root, at);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {types:?}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} not in {e:?}"));
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str())
        && !regex::Regex::new(p)
            .expect("a valid schema pattern")
            .is_match(s)
    {
        return Err(format!("{at}: {s:?} does not match {p}"));
    }
    if let (Some(m), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && x < m
    {
        return Err(format!("{at}: {x} < minimum {m}"));
    }
    if let Some(obj) = v.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                return Err(format!("{at}: missing required `{r}`"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (key, val) in obj {
            match props.and_then(|p| p.get(key)) {
                Some(s) => check_schema(val, s, root, &format!("{at}.{key}"))?,
                None => {
                    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                        return Err(format!("{at}: unexpected property `{key}`"));
                    }
                    if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                        check_schema(val, s, root, &format!("{at}.{key}"))?;
                    }
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check_schema(x, items, root, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Run with extra environment variables (and HF variables cleared unless given).
pub fn sidtool_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sidtool"));
    c.args(args);
    for k in ["HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT"] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run sidtool");
    check_stats_outputs(args, &o, None);
    o
}

/// An external test asset (fetched by scripts/fetch-test-assets.sh): `None` with a printed
/// reason when absent locally; a failure under CI=true, where the script must have run.
pub fn asset(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-assets")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "{} is missing: run scripts/fetch-test-assets.sh",
        p.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

/// All rows of an embeddings table, as (ids displayed as text, vectors).
pub fn read_embeddings(path: &Path) -> (Vec<String>, Vec<Vec<f32>>) {
    read_embeddings_column(path, "embedding")
}

/// All rows of any id + vector table, e.g. `collab.parquet`'s `collab_embedding`.
pub fn read_embeddings_column(path: &Path, column: &str) -> (Vec<String>, Vec<Vec<f32>>) {
    let (ids, m) = sidtool::io::embeddings::read_all(path, "item_id", column, 4096).unwrap();
    let names = (0..ids.len()).map(|i| ids.display(i)).collect();
    let rows = (0..m.rows).map(|r| m.row(r).to_vec()).collect();
    (names, rows)
}

pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// A Parquet file's footer key-value metadata, less `ARROW:schema`.
pub fn footer_metadata(path: &Path) -> std::collections::BTreeMap<String, String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = r.metadata().file_metadata().key_value_metadata().cloned();
    kv.unwrap_or_default()
        .into_iter()
        .filter(|k| k.key != "ARROW:schema")
        .map(|k| (k.key, k.value.unwrap_or_default()))
        .collect()
}

/// The metadata of the Arrow schema stored in a Parquet footer (`ARROW:schema`) alone: what
/// pyarrow's `pq.read_schema(path).metadata` shows. (The parquet crate's reader merges the
/// footer's other keys in, so its `schema().metadata()` cannot tell the two apart.)
pub fn arrow_schema_metadata(path: &Path) -> std::collections::BTreeMap<String, String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let fm = r.metadata().file_metadata();
    let arrow_only: Vec<_> = fm
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|k| k.key == "ARROW:schema")
        .cloned()
        .collect();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), Some(&arrow_only)).unwrap();
    schema.metadata().clone().into_iter().collect()
}
