//! First pass over an atomic file: check every line and infer each column's Arrow type; also
//! the line reader and value parsing the writing pass shares.

use super::{ColumnReport, FieldType, READ_BUFFER, SEQ_SEPARATOR, Table, TableReport};
use crate::error::{Error, Result};
use crate::io::interactions::TIME_COLUMN;
use arrow_schema::{DataType, Field};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the first pass learnt about one column.
#[derive(Debug, Clone)]
pub(super) struct ColumnScan {
    pub(super) name: String,
    pub(super) kind: FieldType,
    pub(super) nulls: u64,
    /// `token`: every value is an integer in canonical form.
    pub(super) all_int: bool,
    /// `float`: every value is a whole number.
    pub(super) all_integral: bool,
}

/// A checked atomic file: its columns and row count.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) path: PathBuf,
    pub(super) header: Vec<String>,
    pub(super) cols: Vec<ColumnScan>,
    /// Indices of the id columns, in [`Table::ids`] order.
    pub(super) ids: Vec<usize>,
    pub(super) rows: u64,
}

impl Scan {
    /// Arrow types: `token` → Int64 when every value is an integer, else Utf8; `token_seq` →
    /// Utf8 (the space-separated text, ready for a text template); `float` → Float64, or Int64
    /// for a whole-number `timestamp`; `float_seq` → List<Float64>. All-empty columns are text.
    pub(super) fn types(&self) -> Vec<DataType> {
        self.cols
            .iter()
            .map(|c| {
                let any = c.nulls < self.rows;
                match c.kind {
                    FieldType::Token if c.all_int && any => DataType::Int64,
                    FieldType::Token | FieldType::TokenSeq => DataType::Utf8,
                    FieldType::Float if c.name == TIME_COLUMN && c.all_integral && any => {
                        DataType::Int64
                    }
                    FieldType::Float => DataType::Float64,
                    FieldType::FloatSeq => {
                        DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
                    }
                }
            })
            .collect()
    }

    pub(super) fn report(&self, types: &[DataType], dest: PathBuf) -> TableReport {
        TableReport {
            source: self.path.clone(),
            dest,
            rows: self.rows,
            columns: self
                .cols
                .iter()
                .zip(types)
                .map(|(c, t)| ColumnReport {
                    name: c.name.clone(),
                    recbole_type: c.kind,
                    data_type: t.clone(),
                    nulls: c.nulls,
                })
                .collect(),
        }
    }
}

/// A text file read line by line into one reused buffer.
pub(super) struct Lines {
    pub(super) path: PathBuf,
    pub(super) inner: BufReader<std::fs::File>,
    pub(super) buf: Vec<u8>,
    pub(super) line: u64,
}

impl Lines {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Lines {
            path: path.to_path_buf(),
            inner: BufReader::with_capacity(READ_BUFFER, f),
            buf: Vec::new(),
            line: 0,
        })
    }

    /// The next line's 1-based number and text without `\n` or `\r\n`; None at end of file.
    pub(super) fn next(&mut self) -> Result<Option<(u64, &str)>> {
        self.buf.clear();
        let n = self
            .inner
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let mut bytes = self.buf.as_slice();
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Error::at_line(
                &self.path,
                self.line,
                None,
                format!("is not UTF-8 (bad byte at offset {})", e.valid_up_to()),
            )
        })?;
        // A byte-order mark, as Windows editors write them.
        let text = match self.line {
            1 => text.strip_prefix('\u{feff}').unwrap_or(text),
            _ => text,
        };
        Ok(Some((self.line, text)))
    }
}

/// The header's `name:type` entries (the name may itself contain colons).
pub(super) fn parse_header(path: &Path, line: &str) -> Result<Vec<(String, FieldType)>> {
    let mut out: Vec<(String, FieldType)> = Vec::new();
    for entry in line.split('\t') {
        let bad = |msg: String| Error::at_line(path, 1, None, msg);
        let Some((name, ty)) = entry.rsplit_once(':') else {
            return Err(bad(format!(
                "header entry {entry:?} is not `name:type`; a RecBole atomic file starts \
                 with a line such as `item_id:token<TAB>title:token_seq`"
            )));
        };
        let Some(kind) = FieldType::ALL.into_iter().find(|k| k.name() == ty) else {
            let known: Vec<&str> = FieldType::ALL.iter().map(|k| k.name()).collect();
            return Err(Error::at_line(
                path,
                1,
                Some(name),
                format!("unknown type {ty:?}; RecBole's are {}", known.join(", ")),
            ));
        };
        if name.is_empty() {
            return Err(bad(format!("header entry {entry:?} has no field name")));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(Error::at_line(
                path,
                1,
                Some(name),
                "appears twice in the header",
            ));
        }
        out.push((name.to_string(), kind));
    }
    Ok(out)
}

/// An integer token that survives the round trip through Int64: no sign other than `-`, no
/// leading zeros (a zip code such as `02460` keeps the whole column as text).
pub(super) fn canonical_int(v: &str) -> Option<i64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && v != "-0";
    if canonical { v.parse().ok() } else { None }
}

pub(super) fn parse_float(v: &str) -> Option<f64> {
    v.trim().parse().ok()
}

/// A `float` value that is a whole number (`978300760`, `978300760.0`). Integers are parsed as
/// such first: nanosecond timestamps exceed f64's 53-bit mantissa.
pub(super) fn integral(v: &str) -> Option<i64> {
    let t = v.trim();
    t.parse::<i64>().ok().or_else(|| {
        let x: f64 = t.parse().ok()?;
        (x.fract() == 0.0 && x.abs() < 9.2e18).then_some(x as i64)
    })
}

pub(super) fn seq(v: &str) -> impl Iterator<Item = &str> {
    v.split(SEQ_SEPARATOR).filter(|p| !p.is_empty())
}

pub(super) fn not_a_float(col: &ColumnScan, v: &str) -> String {
    format!(
        "cannot parse {v:?} as a number (the header declares `{}:{}`)",
        col.name,
        col.kind.name()
    )
}

/// Every line must have as many fields as the header.
pub(super) fn check_width(path: &Path, line_no: u64, line: &str, width: usize) -> Result<()> {
    let got = line.bytes().filter(|&b| b == b'\t').count() + 1;
    if got == width {
        return Ok(());
    }
    let preview: String = line.chars().take(80).collect();
    Err(Error::at_line(
        path,
        line_no,
        None,
        format!("has {got} tab-separated fields where the header declares {width}: {preview:?}"),
    ))
}

/// First pass: check every line, count rows and nulls, and learn what the values look like.
pub(super) fn scan(path: &Path, table: Table) -> Result<Scan> {
    let mut lines = Lines::open(path)?;
    let Some((_, header)) = lines.next()? else {
        return Err(Error::input(
            path,
            None,
            None,
            "is empty; a RecBole atomic file starts with a `name:type` header line",
        ));
    };
    let fields = parse_header(path, header)?;
    let header: Vec<String> = header.split('\t').map(str::to_string).collect();
    let mut ids = Vec::new();
    for id in table.ids() {
        match fields.iter().position(|(n, _)| n == id) {
            Some(i) if fields[i].1 == FieldType::Token => ids.push(i),
            Some(i) => {
                return Err(Error::at_line(
                    path,
                    1,
                    Some(id),
                    format!("is declared `{}`; ids must be `token`", fields[i].1.name()),
                ));
            }
            None => {
                return Err(Error::at_line(
                    path,
                    1,
                    None,
                    format!(
                        "has no `{id}:token` field (sidtool needs it); the header has: {}",
                        header.join(", ")
                    ),
                ));
            }
        }
    }
    let mut cols: Vec<ColumnScan> = fields
        .into_iter()
        .map(|(name, kind)| ColumnScan {
            name,
            kind,
            nulls: 0,
            all_int: true,
            all_integral: true,
        })
        .collect();
    // Item ids must be unique in the catalogue: line of first sight, for the error message.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let unique = (table == Table::Items).then_some(ids[0]);
    let mut rows = 0u64;
    while let Some((no, line)) = lines.next()? {
        // Blank lines carry no record (pandas, which RecBole reads with, skips them too).
        if line.is_empty() {
            continue;
        }
        check_width(path, no, line, cols.len())?;
        for (i, v) in line.split('\t').enumerate() {
            let c = &mut cols[i];
            let err = |c: &ColumnScan, msg: String| Error::at_line(path, no, Some(&c.name), msg);
            if v.is_empty() {
                if ids.contains(&i) {
                    return Err(err(c, "is empty; every row needs an id".into()));
                }
                c.nulls += 1;
                continue;
            }
            match c.kind {
                FieldType::Token => c.all_int &= canonical_int(v).is_some(),
                FieldType::TokenSeq => {}
                FieldType::Float => {
                    if parse_float(v).is_none() {
                        return Err(err(c, not_a_float(c, v)));
                    }
                    c.all_integral &= integral(v).is_some();
                }
                FieldType::FloatSeq => {
                    if let Some(bad) = seq(v).find(|p| parse_float(p).is_none()) {
                        return Err(err(c, not_a_float(c, bad)));
                    }
                }
            }
            if unique == Some(i) {
                match seen.entry(v.to_string()) {
                    Entry::Occupied(first) => {
                        return Err(err(
                            c,
                            format!(
                                "item id {v:?} appears twice (first on line {}); item ids must \
                             be unique",
                                first.get()
                            ),
                        ));
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(no);
                    }
                }
            }
        }
        rows += 1;
    }
    Ok(Scan {
        path: path.to_path_buf(),
        header,
        cols,
        ids,
        rows,
    })
}
