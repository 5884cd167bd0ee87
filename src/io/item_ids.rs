//! Item identifiers as they came in: integers or strings, kept in their own type so output
//! tables carry the same ids the catalogue used.

use arrow_array::{Array, ArrayRef, Int64Array, StringArray};
use arrow_schema::DataType;
use std::cmp::Ordering;
use std::sync::Arc;

/// A borrowed id, hashable, for joining tables on item id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKey<'a> {
    Int(i64),
    Str(&'a str),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemIds {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl ItemIds {
    pub fn len(&self) -> usize {
        match self {
            ItemIds::Int(v) => v.len(),
            ItemIds::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Order used to break ties deterministically (numeric for integers, bytewise for strings).
    pub fn cmp(&self, a: usize, b: usize) -> Ordering {
        match self {
            ItemIds::Int(v) => v[a].cmp(&v[b]),
            ItemIds::Str(v) => v[a].cmp(&v[b]),
        }
    }

    pub fn key(&self, i: usize) -> IdKey<'_> {
        match self {
            ItemIds::Int(v) => IdKey::Int(v[i]),
            ItemIds::Str(v) => IdKey::Str(&v[i]),
        }
    }

    pub fn same_kind(&self, other: &ItemIds) -> bool {
        matches!(
            (self, other),
            (ItemIds::Int(_), ItemIds::Int(_)) | (ItemIds::Str(_), ItemIds::Str(_))
        )
    }

    pub fn display(&self, i: usize) -> String {
        match self {
            ItemIds::Int(v) => v[i].to_string(),
            ItemIds::Str(v) => format!("{:?}", v[i]),
        }
    }

    pub fn extend(&mut self, other: ItemIds) {
        match (self, other) {
            (ItemIds::Int(a), ItemIds::Int(b)) => a.extend(b),
            (ItemIds::Str(a), ItemIds::Str(b)) => a.extend(b),
            _ => panic!("item id types differ between batches of one file"),
        }
    }

    /// The ids at positions `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> ItemIds {
        match self {
            ItemIds::Int(v) => ItemIds::Int(idx.iter().map(|&i| v[i]).collect()),
            ItemIds::Str(v) => ItemIds::Str(idx.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            ItemIds::Int(_) => DataType::Int64,
            ItemIds::Str(_) => DataType::Utf8,
        }
    }

    pub fn to_arrow(&self, start: usize, end: usize) -> ArrayRef {
        match self {
            ItemIds::Int(v) => Arc::new(Int64Array::from(v[start..end].to_vec())),
            ItemIds::Str(v) => Arc::new(StringArray::from_iter_values(v[start..end].iter())),
        }
    }

    /// Index of the first id that occurs twice, with the index of its first occurrence.
    pub fn first_duplicate(&self) -> Option<(usize, usize)> {
        use std::collections::HashMap;
        fn find<T: std::hash::Hash + Eq>(v: &[T]) -> Option<(usize, usize)> {
            let mut seen: HashMap<&T, usize> = HashMap::with_capacity(v.len());
            for (i, x) in v.iter().enumerate() {
                if let Some(&j) = seen.get(x) {
                    return Some((j, i));
                }
                seen.insert(x, i);
            }
            None
        }
        match self {
            ItemIds::Int(v) => find(v),
            ItemIds::Str(v) => find(v),
        }
    }

    /// Convert an Arrow id column; `None` for an unsupported type. Nulls are reported by the
    /// caller, which knows the file and row.
    pub fn from_arrow(a: &dyn Array) -> Option<ItemIds> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Int32Type, Int64Type};
        let n = a.len();
        Some(match a.data_type() {
            DataType::Int64 => ItemIds::Int(a.as_primitive::<Int64Type>().values().to_vec()),
            DataType::Int32 => ItemIds::Int(
                a.as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|&v| v as i64)
                    .collect(),
            ),
            DataType::Utf8 => ItemIds::Str(
                (0..n)
                    .map(|i| a.as_string::<i32>().value(i).to_string())
                    .collect(),
            ),
            DataType::LargeUtf8 => ItemIds::Str(
                (0..n)
                    .map(|i| a.as_string::<i64>().value(i).to_string())
                    .collect(),
            ),
            DataType::Utf8View => ItemIds::Str(
                (0..n)
                    .map(|i| a.as_string_view().value(i).to_string())
                    .collect(),
            ),
            _ => return None,
        })
    }

    /// [`ItemIds::from_arrow`] of an id column whose type was already checked, refusing
    /// nulls with the file, column and row (`first_row` is the batch's first file row).
    pub fn from_column(
        a: &dyn Array,
        path: &std::path::Path,
        column: &str,
        first_row: u64,
    ) -> crate::error::Result<ItemIds> {
        if let Some(r) = crate::io::embeddings::first_null(a) {
            return Err(crate::error::Error::input(
                path,
                Some(column),
                Some(first_row + r as u64),
                "item id is null",
            ));
        }
        Ok(ItemIds::from_arrow(a).expect("id column type checked when the file was opened"))
    }

    pub fn supported(t: &DataType) -> bool {
        matches!(
            t,
            DataType::Int64
                | DataType::Int32
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
        )
    }
}
