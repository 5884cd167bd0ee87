//! Evaluation during training: reconstruction error, collision rate, utilisation, entropy.

use super::device::{DeviceModel, LATENT_REL_ERROR};
use super::model::*;
use super::store::*;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use candle_core::Tensor;
use std::collections::HashMap;

/// Share of rows whose code tuple over `levels` another row also has.
pub(super) fn collision_rate(codes: &[u16], l: usize, levels: &[usize]) -> f64 {
    let rows = codes.len() / l.max(1);
    let mut groups: HashMap<Vec<u16>, usize> = HashMap::new();
    for row in codes.chunks(l) {
        *groups
            .entry(levels.iter().map(|&j| row[j]).collect())
            .or_default() += 1;
    }
    let colliding: usize = groups.values().filter(|&&c| c > 1).sum();
    colliding as f64 / rows.max(1) as f64
}

/// Reconstruction error, pre-dedup collision rate, utilisation and entropy over all rows.
pub(super) fn evaluate(m: &RqVae, x: &Matrix, epoch: usize, loss: f64) -> Result<Evaluation> {
    let codes = m.encode(x)?;
    let mut recon_mse = 0.0;
    for (kind, k) in m.arch.kinds.iter().enumerate() {
        let xh = m.decode_kind(&codes, kind, k.levels.len())?;
        let xs = x.columns(k.input.0, k.input.1);
        recon_mse += xs
            .data
            .iter()
            .zip(&xh.data)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / xs.data.len().max(1) as f64;
    }
    Ok(summarise(m, &codes, x.rows, recon_mse, epoch, loss))
}

/// [`evaluate`] on the device holding `xd` (the rows of `x`, uploaded): encoding and
/// reconstruction there, block by block; the codes are the CPU path's (`rqvae/device.rs`),
/// the reconstruction error agrees with the CPU's to rounding.
pub(super) fn evaluate_on(
    m: &RqVae,
    x: &Matrix,
    xd: &Tensor,
    epoch: usize,
    loss: f64,
) -> Result<Evaluation> {
    let dm = DeviceModel::new(m, xd.device())?;
    let codes = dm.encode(x, Some(xd), LATENT_REL_ERROR)?;
    let l = m.levels();
    let mut recon_mse = 0.0;
    let block_rows = dm.block_rows();
    for (kind, k) in m.arch.kinds.iter().enumerate() {
        let mut sq = 0.0;
        for start in (0..x.rows).step_by(block_rows) {
            let len = block_rows.min(x.rows - start);
            let c = &codes[start * l..(start + len) * l];
            sq += dm.sq_error(c, kind, &xd.narrow(0, start, len)?)?;
        }
        recon_mse += sq / (x.rows * k.input.1).max(1) as f64;
    }
    Ok(summarise(m, &codes, x.rows, recon_mse, epoch, loss))
}

/// The evaluation of `rows` rows' codes with their reconstruction error.
fn summarise(
    m: &RqVae,
    codes: &[u16],
    rows: usize,
    recon_mse: f64,
    epoch: usize,
    loss: f64,
) -> Evaluation {
    let l = m.levels();
    let rates: Vec<f64> = m
        .arch
        .kinds
        .iter()
        .map(|k| collision_rate(codes, l, &k.levels))
        .collect();
    let mut utilisation = Vec::new();
    let mut entropy_bits = Vec::new();
    for (level, &k) in m.codebook_sizes().iter().enumerate() {
        let mut counts = vec![0usize; k];
        codes.chunks(l).for_each(|r| counts[r[level] as usize] += 1);
        utilisation.push(counts.iter().filter(|&&c| c > 0).count() as f64 / k as f64);
        let n = rows as f64;
        entropy_bits.push(
            counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = c as f64 / n;
                    -p * p.log2()
                })
                .sum(),
        );
    }
    Evaluation {
        epoch,
        loss,
        recon_mse,
        collision_rate: rates[0],
        cid_collision_rate: rates.get(1).copied(),
        utilisation,
        entropy_bits,
    }
}
