//! Vectors looked up by item id in a streamed source: what `resolve --dedup reassign` needs for
//! the few items that collide, without holding the catalogue's vectors.

use super::source::Source;
use crate::error::{Error, Result};
use crate::item_id::{IdKey, ItemIds};
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use std::collections::HashMap;

/// The vectors of items `need` (indices into `ids`), in that order, read from `source` batch
/// by batch: memory holds only these rows. Every item must be there exactly once.
pub(super) fn gather_by_id(
    q: &dyn Quantizer,
    source: &Source,
    ids: &ItemIds,
    need: &[usize],
) -> Result<Matrix> {
    // As `assign` checks them: the vectors must be as wide as the quantizer's input.
    source.check_dual(q)?;
    let want: HashMap<IdKey, usize> = need
        .iter()
        .enumerate()
        .map(|(r, &i)| (ids.key(i), r))
        .collect();
    // The file row each wanted item was found in, to name both rows of a duplicate.
    let mut found: Vec<Option<u64>> = vec![None; need.len()];
    let mut out: Option<Matrix> = None;
    source.for_each(|first, bids, x| {
        if out.is_none() {
            crate::quant::check_dim(q, x.cols, source.path(), source.column())?;
        }
        if !bids.same_kind(ids) {
            return Err(Error::input(
                source.path(),
                Some(source.id_column()),
                None,
                "item ids are integers here and strings in the parts (or the reverse)",
            ));
        }
        let m = out.get_or_insert_with(|| Matrix::zeros(need.len(), x.cols));
        for i in 0..bids.len() {
            let Some(&r) = want.get(&bids.key(i)) else {
                continue;
            };
            let row = (first + i) as u64;
            if let Some(prev) = found[r] {
                return Err(Error::input(
                    source.path(),
                    Some(source.id_column()),
                    Some(row),
                    format!("item {} is listed twice (also row {prev})", bids.display(i)),
                ));
            }
            found[r] = Some(row);
            m.row_mut(r).copy_from_slice(x.row(i));
        }
        Ok(())
    })?;
    if let Some(r) = found.iter().position(Option::is_none) {
        return Err(Error::input(
            source.path(),
            Some(source.id_column()),
            None,
            format!(
                "has no vector for item {}, which the parts hold: give the vectors the parts \
                 were coded from",
                ids.display(need[r])
            ),
        ));
    }
    Ok(out.expect("an item was found, so a batch was read"))
}

/// Re-encode `x` (the vectors of items `need` of `ids`) and compare with the codes the parts
/// hold for them (`codes`, all of the quantizer's levels): reassign's distances are only right
/// for the vectors that were coded, and a wrong file would otherwise pass silently. The CPU
/// encodes here; parts coded on a device hold the CPU's codes (the device paths settle close
/// calls on the host: docs/gpu.md).
pub(super) fn check_coded(
    q: &dyn Quantizer,
    source: &Source,
    x: &Matrix,
    codes: &[u16],
    ids: &ItemIds,
    need: &[usize],
) -> Result<()> {
    let again = q.encode(x)?;
    let l = q.levels();
    for (r, &i) in need.iter().enumerate() {
        let (a, b) = (&again[r * l..(r + 1) * l], &codes[r * l..(r + 1) * l]);
        if a != b {
            return Err(Error::input(
                source.path(),
                Some(source.column()),
                None,
                format!(
                    "the quantizer codes item {}'s vector as {a:?}, but the parts hold {b:?}: \
                     give the vectors the parts were coded from",
                    ids.display(i)
                ),
            ));
        }
    }
    Ok(())
}
