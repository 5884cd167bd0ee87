//! Reading `interactions.parquet`: who interacted with what, and when (schemas/interactions.md: `user_id`,
//! `item_id`, optional `timestamp`). Streamed by record batch; item ids are mapped to rows of a
//! catalogue as they are read, so a file of 100 M interactions holds 16 bytes per kept event
//! and no string per event.

use crate::error::{Error, Result};
use crate::io::embeddings::{first_null, open_parquet};
use crate::item_id::{IdColumn, IdIndex, IdKey, ItemIds};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::DataType;
use std::collections::HashMap;
use std::path::Path;

pub(crate) const USER_COLUMN: &str = "user_id";
pub(crate) const ITEM_COLUMN: &str = "item_id";
pub(crate) const TIME_COLUMN: &str = "timestamp";

/// One interaction with a known item: dense user index (order of first appearance in the
/// file), the item's row in the catalogue, and its time (the file row when there is no
/// timestamp column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub time: i64,
}

/// What [`read`] found.
#[derive(Debug, Clone)]
pub struct Interactions {
    /// Interactions whose item is in the catalogue, in file order.
    pub events: Vec<Interaction>,
    /// Rows in the file: every interaction, known item or not.
    pub rows: u64,
    /// Interactions whose item is not in the catalogue (skipped).
    pub unknown_events: u64,
    /// Distinct users in the file (those with only unknown items included); user indices
    /// run over `0..users`.
    pub users: u64,
    /// Arrow type of the file's `item_id` column, for messages about mismatched id kinds.
    pub item_type: DataType,
}

/// Distinct user ids → dense index; a string is copied once per user, not once per row.
#[derive(Default)]
struct UserIndex {
    ints: HashMap<i64, u32>,
    strs: HashMap<Box<str>, u32>,
}

impl UserIndex {
    fn len(&self) -> usize {
        self.ints.len() + self.strs.len()
    }

    fn get_or_insert(&mut self, key: IdKey<'_>) -> u32 {
        let next = self.len() as u32;
        match key {
            IdKey::Int(v) => *self.ints.entry(v).or_insert(next),
            IdKey::Str(s) => match self.strs.get(s) {
                Some(&u) => u,
                None => {
                    self.strs.insert(s.into(), next);
                    next
                }
            },
        }
    }
}

/// Every interaction of the file whose item `items` knows, mapped to its catalogue row;
/// the others are counted. Errors name the file, column and row.
pub fn read(path: &Path, items: &IdIndex<'_>) -> Result<Interactions> {
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
    let rows = builder.num_rows() as usize;
    let mut roots = vec![ui, ii];
    if let Some((i, _)) = &time {
        roots.push(*i);
    }
    let reader = builder.reader(None, Some(&roots))?;
    let mut users = UserIndex::default();
    let mut events = Vec::with_capacity(rows);
    let mut unknown = 0u64;
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
        let times = match &time {
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
                if let Some(r) = first_null(a.as_ref()) {
                    return Err(Error::input(
                        path,
                        Some(TIME_COLUMN),
                        Some(first + r as u64),
                        "is null",
                    ));
                }
                Some(a)
            }
        };
        let times = times.as_ref().map(|a| a.as_primitive::<Int64Type>());
        let uids = IdColumn::new(u.as_ref()).expect("type checked");
        let iids = IdColumn::new(i.as_ref()).expect("type checked");
        for r in 0..batch.num_rows() {
            let user = users.get_or_insert(uids.key(r));
            let Some(item) = items.get(iids.key(r)) else {
                unknown += 1;
                continue;
            };
            let time = match times {
                Some(t) => t.value(r),
                None => (first + r as u64) as i64,
            };
            events.push(Interaction { user, item, time });
        }
        first += batch.num_rows() as u64;
    }
    Ok(Interactions {
        events,
        rows: first,
        unknown_events: unknown,
        users: users.len() as u64,
        item_type: it,
    })
}

/// "; note: its item_id column has type Utf8 but the catalogue's ids are integers …" when the
/// kinds differ (then no item can match), else "": appended to messages about unknown items.
pub(crate) fn kind_hint(inter: &Interactions, items: &IdIndex<'_>) -> String {
    if items.same_kind(&inter.item_type) {
        return String::new();
    }
    format!(
        "; note: its {ITEM_COLUMN} column has type {} but the catalogue's ids are {}, and `5` \
         and \"5\" are different ids",
        inter.item_type,
        items.kind_name()
    )
}
