//! Reading `interactions.parquet`: who interacted with what, and when (DESIGN.md: `user_id`,
//! `item_id`, optional `timestamp`). Streamed by record batch.

use crate::error::{Error, Result};
use crate::io::embeddings::{first_null, open_parquet};
use crate::io::item_ids::{IdKey, ItemIds};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use std::collections::HashMap;
use std::path::Path;

/// An item id owned, for lookups across files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OwnedId {
    Int(i64),
    Str(String),
}

impl OwnedId {
    pub fn of(key: IdKey<'_>) -> Self {
        match key {
            IdKey::Int(v) => OwnedId::Int(v),
            IdKey::Str(s) => OwnedId::Str(s.to_string()),
        }
    }
}

/// One interaction: dense user index, item id, time (file order when there is no timestamp).
#[derive(Debug, Clone)]
pub struct Event {
    pub user: u32,
    pub item: OwnedId,
    pub time: i64,
    pub row: u64,
}

pub const USER_COLUMN: &str = "user_id";
pub const ITEM_COLUMN: &str = "item_id";
pub const TIME_COLUMN: &str = "timestamp";

/// Every event of the file, users numbered in order of first appearance.
pub fn read(path: &Path) -> Result<(Vec<Event>, usize)> {
    let builder = open_parquet(path)?;
    let schema = builder.schema().clone();
    let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let col = |name: &str| -> Result<(usize, DataType)> {
        schema
            .column_with_name(name)
            .map(|(i, f)| (i, f.data_type().clone()))
            .ok_or_else(|| {
                Error::input(
                    path,
                    Some(name),
                    None,
                    format!(
                        "no such column (interactions need user_id and item_id); the file has: {}",
                        have.join(", ")
                    ),
                )
            })
    };
    let (ui, ut) = col(USER_COLUMN)?;
    let (ii, it) = col(ITEM_COLUMN)?;
    for (name, t) in [(USER_COLUMN, &ut), (ITEM_COLUMN, &it)] {
        if !ItemIds::supported(t) {
            return Err(Error::input(
                path,
                Some(name),
                None,
                format!("has type {t}; ids must be Utf8, LargeUtf8, Utf8View, Int64 or Int32"),
            ));
        }
    }
    let time = schema
        .column_with_name(TIME_COLUMN)
        .map(|(i, f)| (i, f.data_type().clone()));
    if let Some((_, t)) = &time
        && !matches!(
            t,
            DataType::Int64 | DataType::Int32 | DataType::Timestamp(_, _)
        )
    {
        return Err(Error::input(
            path,
            Some(TIME_COLUMN),
            None,
            format!("has type {t}; timestamps must be Int64, Int32 or Timestamp"),
        ));
    }
    let mut roots = vec![ui, ii];
    if let Some((i, _)) = &time {
        roots.push(*i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| Error::parquet(path, e))?;
    let mut users: HashMap<OwnedId, u32> = HashMap::new();
    let mut events = Vec::new();
    let mut first = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(path, e))?;
        let get = |name: &str| batch.column_by_name(name).expect("projected").clone();
        let (u, i) = (get(USER_COLUMN), get(ITEM_COLUMN));
        for (name, a) in [(USER_COLUMN, &u), (ITEM_COLUMN, &i)] {
            if let Some(r) = first_null(a.as_ref()) {
                return Err(Error::input(
                    path,
                    Some(name),
                    Some(first + r as u64),
                    "is null",
                ));
            }
        }
        let times: Option<Vec<Option<i64>>> = match &time {
            None => None,
            Some((_, t)) => {
                let a = get(TIME_COLUMN);
                let a = match t {
                    DataType::Timestamp(unit, _) => {
                        arrow_cast::cast(&a, &DataType::Timestamp(*unit, None))
                            .and_then(|a| arrow_cast::cast(&a, &DataType::Int64))
                            .map_err(|e| Error::arrow(path, e))?
                    }
                    _ => {
                        arrow_cast::cast(&a, &DataType::Int64).map_err(|e| Error::arrow(path, e))?
                    }
                };
                let a = a.as_primitive::<Int64Type>();
                Some(
                    (0..a.len())
                        .map(|r| a.is_valid(r).then(|| a.value(r)))
                        .collect(),
                )
            }
        };
        let (uids, iids) = (
            ItemIds::from_arrow(u.as_ref()).expect("type checked"),
            ItemIds::from_arrow(i.as_ref()).expect("type checked"),
        );
        for r in 0..batch.num_rows() {
            let row = first + r as u64;
            let next = users.len() as u32;
            let user = *users.entry(OwnedId::of(uids.key(r))).or_insert(next);
            let time = match &times {
                Some(t) => {
                    t[r].ok_or_else(|| Error::input(path, Some(TIME_COLUMN), Some(row), "is null"))?
                }
                None => row as i64,
            };
            events.push(Event {
                user,
                item: OwnedId::of(iids.key(r)),
                time,
                row,
            });
        }
        first += batch.num_rows() as u64;
    }
    Ok((events, users.len()))
}
