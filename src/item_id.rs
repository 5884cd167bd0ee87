//! Item identifiers as they came in: integers or strings, kept in their own type so output
//! tables carry the same ids the catalogue used.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
};
use arrow_schema::DataType;
use std::cmp::Ordering;
use std::collections::HashMap;
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
    pub(crate) fn cmp(&self, a: usize, b: usize) -> Ordering {
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

    pub(crate) fn same_kind(&self, other: &ItemIds) -> bool {
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

    pub(crate) fn to_arrow(&self, start: usize, end: usize) -> ArrayRef {
        match self {
            ItemIds::Int(v) => Arc::new(Int64Array::from(v[start..end].to_vec())),
            ItemIds::Str(v) => Arc::new(StringArray::from_iter_values(v[start..end].iter())),
        }
    }

    /// Index of the first id that occurs twice, with the index of its first occurrence.
    pub(crate) fn first_duplicate(&self) -> Option<(usize, usize)> {
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
    pub(crate) fn from_arrow(a: &dyn Array) -> Option<ItemIds> {
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
    pub(crate) fn from_column(
        a: &dyn Array,
        path: &std::path::Path,
        column: &str,
        first_row: u64,
    ) -> crate::error::Result<ItemIds> {
        if let Some(r) = first_null(a) {
            return Err(crate::error::Error::input(
                path,
                Some(column),
                Some(first_row + r as u64),
                "item id is null",
            ));
        }
        Ok(ItemIds::from_arrow(a).expect("id column type checked when the file was opened"))
    }

    pub(crate) fn supported(t: &DataType) -> bool {
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

/// An Arrow id column read in place: [`IdColumn::key`] borrows each id from the batch, so
/// joining a large file on item id allocates nothing per row (unlike [`ItemIds::from_arrow`]).
#[derive(Debug, Clone, Copy)]
pub enum IdColumn<'a> {
    Int64(&'a Int64Array),
    Int32(&'a Int32Array),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
}

impl<'a> IdColumn<'a> {
    /// `None` for a type [`ItemIds::supported`] refuses.
    pub fn new(a: &'a dyn Array) -> Option<Self> {
        Some(match a.data_type() {
            DataType::Int64 => IdColumn::Int64(a.as_primitive::<Int64Type>()),
            DataType::Int32 => IdColumn::Int32(a.as_primitive::<Int32Type>()),
            DataType::Utf8 => IdColumn::Utf8(a.as_string::<i32>()),
            DataType::LargeUtf8 => IdColumn::LargeUtf8(a.as_string::<i64>()),
            DataType::Utf8View => IdColumn::Utf8View(a.as_string_view()),
            _ => return None,
        })
    }

    /// The id at row `i` (the caller has refused nulls).
    #[inline]
    pub fn key(&self, i: usize) -> IdKey<'a> {
        match self {
            IdColumn::Int64(a) => IdKey::Int(a.value(i)),
            IdColumn::Int32(a) => IdKey::Int(a.value(i) as i64),
            IdColumn::Utf8(a) => IdKey::Str(a.value(i)),
            IdColumn::LargeUtf8(a) => IdKey::Str(a.value(i)),
            IdColumn::Utf8View(a) => IdKey::Str(a.value(i)),
        }
    }
}

/// Item id → row of an [`ItemIds`], borrowing the ids. An integer key never matches string ids
/// nor the reverse (`5` is not `"5"`), as everywhere else in sidtool.
#[derive(Debug, Clone)]
pub enum IdIndex<'a> {
    Int(HashMap<i64, u32>),
    Str(HashMap<&'a str, u32>),
}

impl<'a> IdIndex<'a> {
    /// Index every row; for a repeated id the first row wins (callers check uniqueness with
    /// [`ItemIds::first_duplicate`] where it matters).
    pub fn new(ids: &'a ItemIds) -> Self {
        assert!(
            ids.len() <= u32::MAX as usize,
            "row indices are stored as u32"
        );
        match ids {
            ItemIds::Int(v) => {
                let mut m = HashMap::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    m.entry(x).or_insert(i as u32);
                }
                IdIndex::Int(m)
            }
            ItemIds::Str(v) => {
                let mut m = HashMap::with_capacity(v.len());
                for (i, x) in v.iter().enumerate() {
                    m.entry(x.as_str()).or_insert(i as u32);
                }
                IdIndex::Str(m)
            }
        }
    }

    #[inline]
    pub fn get(&self, key: IdKey<'_>) -> Option<u32> {
        match (self, key) {
            (IdIndex::Int(m), IdKey::Int(k)) => m.get(&k).copied(),
            (IdIndex::Str(m), IdKey::Str(k)) => m.get(k).copied(),
            _ => None,
        }
    }

    /// Whether ids of Arrow type `t` are of the indexed kind (integers or strings).
    pub(crate) fn same_kind(&self, t: &DataType) -> bool {
        match self {
            IdIndex::Int(_) => matches!(t, DataType::Int64 | DataType::Int32),
            IdIndex::Str(_) => {
                matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            }
        }
    }

    /// "integers" or "strings", for messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            IdIndex::Int(_) => "integers",
            IdIndex::Str(_) => "strings",
        }
    }
}

/// Index of column `id_col` in `schema` (of the file `path`), checked to hold a supported id
/// type; the error names the file, the column and what the file has instead.
pub(crate) fn id_column_index(
    schema: &arrow_schema::Schema,
    path: &std::path::Path,
    id_col: &str,
) -> crate::error::Result<usize> {
    use crate::error::Error;
    let Some((idx, field)) = schema.column_with_name(id_col) else {
        let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(Error::input(
            path,
            Some(id_col),
            None,
            format!(
                "no such column (the item id column, set with --id-column); the file has: {}",
                have.join(", ")
            ),
        ));
    };
    if !ItemIds::supported(field.data_type()) {
        return Err(Error::input(
            path,
            Some(id_col),
            None,
            format!(
                "has type {}; item ids must be Utf8, LargeUtf8, Utf8View, Int64 or Int32",
                field.data_type()
            ),
        ));
    }
    Ok(idx)
}

/// Index of the first null in `a`, if any.
pub(crate) fn first_null(a: &dyn Array) -> Option<usize> {
    a.nulls()
        .filter(|n| n.null_count() > 0)
        .and_then(|n| (0..a.len()).find(|&i| n.is_null(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_columns_join_without_copies_and_keep_kinds_apart() {
        let ids = ItemIds::Str(vec!["a".into(), "b".into(), "a".into()]);
        let idx = IdIndex::new(&ids);
        assert_eq!(idx.get(IdKey::Str("a")), Some(0), "first row wins");
        assert_eq!(idx.get(IdKey::Str("b")), Some(1));
        assert_eq!(idx.get(IdKey::Int(0)), None);
        let col = LargeStringArray::from(vec!["b", "z"]);
        let c = IdColumn::new(&col).unwrap();
        assert_eq!(idx.get(c.key(0)), Some(1));
        assert_eq!(idx.get(c.key(1)), None);
        let ints = ItemIds::Int(vec![7, 9]);
        let idx = IdIndex::new(&ints);
        let col = Int32Array::from(vec![9, 7]);
        let c = IdColumn::new(&col).unwrap();
        assert_eq!((idx.get(c.key(0)), idx.get(c.key(1))), (Some(1), Some(0)));
        assert!(idx.same_kind(&DataType::Int32) && !idx.same_kind(&DataType::Utf8));
    }
}
