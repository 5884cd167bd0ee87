//! Inference on a candle device (`assign --device cuda`/`metal`, and the generic training
//! path's evaluations): the encoders, the level-by-level nearest-codeword search and the
//! decoders as device tensor ops, with the CPU path's codes.
//!
//! The tuned CPU path's codes are the exact nearest codewords of latents computed by its own
//! GEMMs. A device computes the latents and distances with other roundings, so it can only
//! disagree where a row's nearest and second-nearest codeword are nearly equidistant. A latent
//! off by δ moves the difference of the squared distances to two codewords c₁, c₂ by at most
//! 2‖δ‖‖c₁ − c₂‖; the GEMM itself rounds each distance by at most `gemm_slack` (the k-means
//! search's bound). Each level's search therefore flags every row whose runner-up is within
//! 2·[`LATENT_REL_ERROR`]·‖z‖·‖c₁ − c₂‖ plus twice that slack of its nearest codeword (z the
//! row's latent), and only those rows come back to the host, where the CPU path encodes them
//! itself. Codes are then identical to the CPU path's unless the device's latent differs from
//! the CPU's by more than that share of ‖z‖.

use super::dense::Dense;
use super::generic::{Layer, mlp_layers};
use super::model::RqVae;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use crate::quant::kmeans::device::upload;
use candle_core::{D, DType, Device, Tensor};

/// Most rows per block of device inference (a 65 536 × 1024 block of f32 inputs is 256 MiB).
const ENCODE_ROWS: usize = 65_536;
/// Most values per (rows × K) distance block (64 MiB in f32; the search holds a few).
const DISTANCE_BLOCK: usize = 1 << 24;

/// How far (relative to ‖z‖) a device's latent may be from the CPU path's before a code could
/// differ unnoticed (see the module doc). f32 GEMMs typically round a dot product of D terms by
/// about √D·2⁻²⁴ of its terms' magnitude (2·10⁻⁶ at D = 1024); this leaves a factor of 50 for
/// several layers and for cancellation in them.
pub(super) const LATENT_REL_ERROR: f32 = 1e-4;

/// An RQ-VAE's weights on a device, beside the host model they came from.
pub(super) struct DeviceModel<'m> {
    host: &'m RqVae,
    device: Device,
    enc: Vec<Vec<Layer>>,
    dec: Vec<Vec<Layer>>,
    /// Per level: codewords (K × span width), ‖c‖² (1 × K), max ‖c‖², and each codeword's
    /// first copy (1 × K, u32; see [`first_copies`]).
    codebooks: Vec<(Tensor, Tensor, f32, Tensor)>,
    /// Rows per block of inference: [`ENCODE_ROWS`], fewer for large codebooks.
    block_rows: usize,
}

/// For each codeword, the lowest index of a codeword equal to it (itself, unless it repeats an
/// earlier one). The CPU path breaks a tie between equal codewords by the lower index; the
/// device does the same through this map instead of sending such rows back. (Dead-code resets
/// can make codewords equal: two dead codes may receive the same residual.)
fn first_copies(c: &Matrix) -> Vec<u32> {
    let mut seen: std::collections::HashMap<Vec<u32>, u32> = Default::default();
    (0..c.rows)
        .map(|j| {
            // +0 and −0 are equal codewords; the bits of the rest identify them.
            let key = c.row(j).iter().map(|v| (v + 0.0).to_bits()).collect();
            *seen.entry(key).or_insert(j as u32)
        })
        .collect()
}

fn upload_mlp(layers: &[Dense], device: &Device) -> Result<Vec<Layer>> {
    layers
        .iter()
        .map(|d| {
            Ok((
                upload(&d.w, device)?,
                Tensor::from_slice(&d.b, d.b.len(), device)?,
            ))
        })
        .collect()
}

fn run(layers: &[Layer], x: &Tensor) -> Result<Tensor> {
    mlp_layers(layers.iter().map(|(w, b)| (w, b)), x)
}

impl<'m> DeviceModel<'m> {
    pub(super) fn new(host: &'m RqVae, device: &Device) -> Result<Self> {
        let codebooks = host
            .codebooks
            .iter()
            .map(|cb| {
                let k = cb.len();
                let norms = cb.sq_norms();
                Ok((
                    upload(&cb.centroids, device)?,
                    Tensor::from_slice(norms, (1, k), device)?,
                    norms.iter().copied().fold(0.0, f32::max),
                    Tensor::from_vec(first_copies(&cb.centroids), (1, k), device)?,
                ))
            })
            .collect::<Result<_>>()?;
        let k = host.codebooks.iter().map(|c| c.len()).max().unwrap_or(1);
        Ok(DeviceModel {
            block_rows: (DISTANCE_BLOCK / k.max(1)).clamp(256, ENCODE_ROWS),
            host,
            device: device.clone(),
            enc: host
                .enc
                .iter()
                .map(|e| upload_mlp(e, device))
                .collect::<Result<_>>()?,
            dec: host
                .dec
                .iter()
                .map(|d| upload_mlp(d, device))
                .collect::<Result<_>>()?,
            codebooks,
        })
    }

    /// The same model with every latent scaled by `factor` (tests: a device whose latents are
    /// off by a known relative error).
    #[cfg(test)]
    pub(super) fn scaled_latents(mut self, factor: f64) -> Result<Self> {
        for e in &mut self.enc {
            let (w, b) = e.last_mut().expect("an encoder has layers");
            (*w, *b) = (w.affine(factor, 0.0)?, b.affine(factor, 0.0)?);
        }
        Ok(self)
    }

    /// Rows per block of device inference.
    pub(super) fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// The same model, inferring `rows` rows at a time (tests).
    #[cfg(test)]
    pub(super) fn with_block_rows(mut self, rows: usize) -> Self {
        self.block_rows = rows.max(1);
        self
    }

    /// Concatenated latents of device rows `x`.
    fn latent(&self, x: &Tensor) -> Result<Tensor> {
        let parts = self
            .enc
            .iter()
            .zip(&self.host.arch.enc_in)
            .map(|(e, &(o, w))| run(e, &x.narrow(1, o, w)?.contiguous()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }

    /// Codes of latents `z` (rows × L, u32) and, per row, whether some level's choice was a
    /// close call (> 0) for a latent error of `rel_error`·‖z‖ (see the module doc).
    fn quantize(&self, z: &Tensor, rel_error: f32) -> Result<(Tensor, Tensor)> {
        let rows = z.dim(0)?;
        let width = self.host.arch.width();
        // 2·rel_error·‖z‖ per row: times ‖c₁ − c₂‖, the reach of the latent's error.
        let reach = z
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .affine(2.0 * rel_error as f64, 0.0)?;
        let mut r = z.clone();
        let mut codes = Vec::with_capacity(self.codebooks.len());
        let mut close = Tensor::zeros((rows, 1), DType::F32, &self.device)?;
        for (level, (c, norms, max_norm, first)) in self.codebooks.iter().enumerate() {
            let span = self.host.arch.level_span[level];
            let rs = r.narrow(1, span.0, span.1)?.contiguous()?;
            // ‖c‖² − 2 r·c: the squared distance less ‖r‖².
            let v = rs
                .matmul(&c.t()?)?
                .affine(-2.0, 0.0)?
                .broadcast_add(norms)?;
            // The nearest codeword's first copy, and the runner-up among the other codewords.
            let near = v.argmin(D::Minus1)?;
            let idx = first.squeeze(0)?.index_select(&near, 0)?.unsqueeze(1)?;
            let best = v.min_keepdim(D::Minus1)?;
            let inf = Tensor::full(f32::INFINITY, v.shape(), &self.device)?;
            let v2 = first.broadcast_eq(&idx)?.where_cond(&inf, &v)?;
            let second = v2.min_keepdim(D::Minus1)?;
            let e = c.index_select(&idx.squeeze(1)?, 0)?;
            // (With one distinct codeword the runner-up is at infinity: no close call.)
            let e2 = c.index_select(&v2.argmin(D::Minus1)?, 0)?;
            let apart = (&e - e2)?.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
            // Twice the GEMM's rounding slack (`gemm_slack`) for ‖r‖² and max ‖c‖².
            let a = 2.0 * (span.1 as f32 + 2.0) * f32::EPSILON;
            let slack = rs
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .affine(a as f64, (a * max_norm + 2.0 * f32::MIN_POSITIVE) as f64)?;
            let gap = ((apart * &reach)? + slack)?;
            let flag = (second - best)?.le(&gap)?.to_dtype(DType::F32)?;
            close = close.maximum(&flag)?;
            r = (r - super::trainer::place(&e, span, width)?)?;
            codes.push(idx);
        }
        Ok((Tensor::cat(&codes, 1)?, close.squeeze(1)?))
    }

    /// Codes of every row of `x` (rows × L), the CPU path's (see the module doc). `xd`: the
    /// same rows already on the device, if they are; `rel_error`: [`LATENT_REL_ERROR`] (0
    /// leaves only what the GEMM's own rounding could decide to the host; tests use it to
    /// check the device's choices).
    pub(super) fn encode(
        &self,
        x: &Matrix,
        xd: Option<&Tensor>,
        rel_error: f32,
    ) -> Result<Vec<u16>> {
        let l = self.codebooks.len();
        let mut codes = Vec::with_capacity(x.rows * l);
        let mut settle: Vec<usize> = Vec::new();
        let block_rows = self.block_rows();
        for start in (0..x.rows).step_by(block_rows) {
            let len = block_rows.min(x.rows - start);
            let block = match xd {
                Some(t) => t.narrow(0, start, len)?,
                None => Tensor::from_slice(
                    &x.data[start * x.cols..(start + len) * x.cols],
                    (len, x.cols),
                    &self.device,
                )?,
            };
            let (c, close) = self.quantize(&self.latent(&block)?, rel_error)?;
            codes.extend(
                c.flatten_all()?
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|c| c as u16),
            );
            let close = close.to_vec1::<f32>()?;
            settle.extend((0..len).filter(|&i| close[i] > 0.0).map(|i| start + i));
        }
        if !settle.is_empty() {
            tracing::debug!(
                rows = settle.len(),
                "rq-vae encode: close calls settled on the host"
            );
            let host = self.host.encode(&x.gather(&settle))?;
            for (row, c) in settle.iter().zip(host.chunks(l)) {
                codes[row * l..(row + 1) * l].copy_from_slice(c);
            }
        }
        Ok(codes)
    }

    /// Σ over rows and columns of (x − x̂)², x̂ decoder `kind`'s reconstruction from the
    /// codes of all its levels, for device rows `x` and their codes (rows × L).
    pub(super) fn sq_error(&self, codes: &[u16], kind: usize, x: &Tensor) -> Result<f64> {
        let k = &self.host.arch.kinds[kind];
        let l = self.codebooks.len();
        let rows = x.dim(0)?;
        let width = self.host.arch.width();
        let codes: Vec<u32> = codes.iter().map(|&c| c as u32).collect();
        let codes = Tensor::from_vec(codes, (rows, l), &self.device)?;
        let mut z: Option<Tensor> = None;
        for &level in &k.levels {
            let idx = codes.narrow(1, level, 1)?.squeeze(1)?.contiguous()?;
            let e = self.codebooks[level].0.index_select(&idx, 0)?;
            let e = super::trainer::place(&e, self.host.arch.level_span[level], width)?;
            z = Some(match z {
                None => e,
                Some(acc) => (acc + e)?,
            });
        }
        let z = z.expect("an ID has at least one level");
        let xh = run(
            &self.dec[kind],
            &z.narrow(1, k.latent.0, k.latent.1)?.contiguous()?,
        )?;
        let err = (xh - x.narrow(1, k.input.0, k.input.1)?)?
            .sqr()?
            .sum(D::Minus1)?
            .to_vec1::<f32>()?;
        Ok(err.iter().map(|&e| e as f64).sum())
    }
}

impl RqVae {
    /// [`Quantizer::encode`] through the device-generic path on `device` (candle's CPU
    /// backend too): the same codes (see `rqvae/device.rs`).
    pub(crate) fn encode_generic(&self, x: &Matrix, device: &Device) -> Result<Vec<u16>> {
        DeviceModel::new(self, device)?.encode(x, None, LATENT_REL_ERROR)
    }

    /// [`RqVae::encode_generic`] for another assumed latent error (tests).
    #[cfg(test)]
    pub(super) fn encode_generic_with(
        &self,
        x: &Matrix,
        device: &Device,
        rel_error: f32,
    ) -> Result<Vec<u16>> {
        DeviceModel::new(self, device)?.encode(x, None, rel_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_copies_name_the_lowest_equal_codeword() {
        let c = Matrix::new(
            vec![1.0, 2.0, 0.0, 0.0, 1.0, 2.0, -0.0, 0.0, 3.0, 1.0],
            5,
            2,
        );
        assert_eq!(first_copies(&c), vec![0, 1, 0, 1, 4]);
    }
}
