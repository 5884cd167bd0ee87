//! Integer code lists as other tools and engines write them: FixedSizeList, List or LargeList
//! of any integer type (Spark has no unsigned types and writes `array<int>`), read into plain
//! codes with every row checked.

use crate::error::{Error, Result};
use crate::item_id::first_null;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use std::path::Path;

/// Append every row's codes of a list column (FixedSizeList, List or LargeList of any integer
/// type), checking that every row has the same length and every code lies in `0..=max`.
pub(crate) fn read_lists(
    col: &ArrayRef,
    path: &Path,
    name: &str,
    first_row: u64,
    max: u32,
    width: &mut Option<usize>,
    out: &mut Vec<u32>,
) -> Result<()> {
    let bad = |row: Option<u64>, msg: String| Error::input(path, Some(name), row, msg);
    if let Some(r) = first_null(col.as_ref()) {
        return Err(bad(Some(first_row + r as u64), "codes are null".into()));
    }
    let (offsets, values): (Vec<usize>, ArrayRef) = match col.data_type() {
        DataType::FixedSizeList(_, w) => {
            let l = col.as_fixed_size_list();
            let w = *w as usize;
            let start = l.value_offset_at(0);
            (
                (0..=l.len()).map(|i| start + i * w).collect(),
                l.values().clone(),
            )
        }
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            (
                l.value_offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
            )
        }
        DataType::LargeList(_) => {
            let l = col.as_list::<i64>();
            (
                l.value_offsets().iter().map(|&o| o as usize).collect(),
                l.values().clone(),
            )
        }
        other => {
            return Err(bad(
                None,
                format!("has type {other}, expected a list of integer codes"),
            ));
        }
    };
    let vals = integers(&values).ok_or_else(|| {
        bad(
            None,
            format!(
                "holds {} values, expected integer codes",
                values.data_type()
            ),
        )
    })?;
    for (r, w) in offsets.windows(2).enumerate() {
        let row = first_row + r as u64;
        let n = w[1] - w[0];
        match *width {
            None => *width = Some(n),
            Some(k) if k != n => {
                return Err(bad(
                    Some(row),
                    format!(
                        "has {n} codes where earlier rows have {k}: every ID needs the same number of levels"
                    ),
                ));
            }
            _ => {}
        }
        for &v in &vals[w[0]..w[1]] {
            if v < 0 || v > max as i64 {
                return Err(bad(
                    Some(row),
                    format!("code {v} is not an integer in 0..={max}"),
                ));
            }
            out.push(v as u32);
        }
    }
    Ok(())
}

/// Any integer array's values as i64 (nulls refused by the caller's list-level check; a null
/// inside a list reads as 0 and is refused here).
pub(crate) fn integers(a: &ArrayRef) -> Option<Vec<i64>> {
    if a.null_count() > 0 {
        return None;
    }
    macro_rules! vals {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .values()
                .iter()
                .map(|&v| v as i64)
                .collect()
        };
    }
    Some(match a.data_type() {
        DataType::UInt8 => vals!(UInt8Type),
        DataType::UInt16 => vals!(UInt16Type),
        DataType::UInt32 => vals!(UInt32Type),
        DataType::UInt64 => a
            .as_primitive::<UInt64Type>()
            .values()
            .iter()
            .map(|&v| i64::try_from(v).unwrap_or(-1))
            .collect(),
        DataType::Int8 => vals!(Int8Type),
        DataType::Int16 => vals!(Int16Type),
        DataType::Int32 => vals!(Int32Type),
        DataType::Int64 => vals!(Int64Type),
        _ => return None,
    })
}
