//! The ID kinds a quantizer makes (the SID, and for GenSAR also the CID), and which of its
//! levels and codes belong to each.

use crate::error::Result;
use crate::ids::stats::IdStats;
use crate::ids::tokens::TokenFormat;
use crate::matrix::{Matrix, sq_dist};
use crate::quant::Quantizer;
use crate::quant::kind::IdKind;

/// The ID kinds a quantizer makes: the SID, and for GenSAR also the CID.
pub(super) fn kinds(q: &dyn Quantizer) -> &'static [IdKind] {
    if q.dual().is_some() {
        &IdKind::BOTH
    } else {
        &IdKind::BOTH[..1]
    }
}

/// Levels (indices into all of the quantizer's levels) of one ID kind.
pub(super) fn kind_levels(q: &dyn Quantizer, kind: IdKind) -> Vec<usize> {
    match q.dual() {
        Some(d) => d.kind_levels(kind),
        None => (0..q.levels()).collect(),
    }
}

/// One ID kind's codes (rows × its levels) out of all the quantizer's codes.
pub(super) fn kind_codes(q: &dyn Quantizer, codes: &[u16], kind: IdKind) -> Vec<u16> {
    match q.dual() {
        Some(d) => d.split(codes, kind),
        None => codes.to_vec(),
    }
}

/// Per ID kind: Σ‖x_k − x̂_k,m‖² for prefix lengths m = 1..levels, and Σ‖x_k‖², where x_k is
/// the part of the input that ID reconstructs (all of it for single-ID quantizers).
pub(super) fn id_sq_errors(
    q: &dyn Quantizer,
    x: &Matrix,
    codes: &[u16],
) -> Result<Vec<(Vec<f64>, f64)>> {
    let norm = |m: &Matrix| m.row_sq_norms().iter().map(|&v| v as f64).sum::<f64>();
    let Some(d) = q.dual() else {
        return Ok(vec![(q.prefix_sq_errors(x, codes)?, norm(x))]);
    };
    IdKind::BOTH
        .iter()
        .map(|&kind| {
            let (off, w) = d.input_span(kind, x.cols);
            let xs = x.columns(off, w);
            let errs = (1..=d.kind_levels(kind).len())
                .map(|m| {
                    let xh = q.decode_id(codes, kind, m)?;
                    Ok((0..xs.rows)
                        .map(|i| sq_dist(xs.row(i), xh.row(i)) as f64)
                        .sum())
                })
                .collect::<Result<Vec<f64>>>()?;
            Ok((errs, norm(&xs)))
        })
        .collect()
}

/// Per-level names in statistics as the ID's tokens spell them (`uc` for a CID level).
pub(super) fn name_levels(s: &mut IdStats, fmt: &TokenFormat) {
    for cs in [&mut s.before, &mut s.after] {
        for l in &mut cs.per_level {
            l.letter = fmt.level_name(l.level - 1);
        }
    }
}
