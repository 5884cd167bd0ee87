//! Inference on a candle device (`assign --device cuda`/`metal`, and the generic training
//! path's evaluations): the encoders, the level-by-level nearest-codeword search and the
//! decoders as device tensor ops, with the CPU path's codes.
//!
//! The tuned CPU path's codes are the exact nearest codewords of latents computed by its own
//! GEMMs. A device computes the latents and distances with other roundings, so it can only
//! disagree on a row whose nearest and second-nearest codeword are nearly equidistant. Each
//! level's search therefore also flags every row whose runner-up is within a margin
//! ([`SETTLE_MARGIN`] of ‖r‖² + max‖c‖², far above any f32 rounding of the encoder and the
//! GEMM); only those rows come back to the host, where the CPU path encodes them itself.
//! Codes are then identical to the CPU path's unless a device rounds a latent by more than
//! that margin.

use super::dense::Dense;
use super::generic::{Layer, mlp_layers};
use super::model::RqVae;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use crate::quant::kmeans::device::upload;
use candle_core::{D, DType, Device, Tensor};

/// Rows per block of device inference (a 65 536 × 1024 block of f32 inputs is 256 MiB).
pub(super) const ENCODE_ROWS: usize = 65_536;

/// A row whose runner-up codeword is within this share of ‖r‖² + max‖c‖² of its nearest one
/// is encoded on the host (see the module doc). f32 GEMMs round a distance by about
/// (D + 2)·2⁻²⁴ of that scale (about 6·10⁻⁵ at D = 1024, in the worst case); the margin leaves
/// room for the encoder's own rounding on top.
pub(super) const SETTLE_MARGIN: f32 = 1e-3;

/// An RQ-VAE's weights on a device, beside the host model they came from.
pub(super) struct DeviceModel<'m> {
    host: &'m RqVae,
    device: Device,
    enc: Vec<Vec<Layer>>,
    dec: Vec<Vec<Layer>>,
    /// Per level: codewords (K × span width), ‖c‖² (1 × K), max ‖c‖², and 0..K (1 × K).
    codebooks: Vec<(Tensor, Tensor, f32, Tensor)>,
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
                    Tensor::arange(0u32, k as u32, device)?.unsqueeze(0)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(DeviceModel {
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
    /// close call (> 0) under `margin` (see the module doc).
    fn quantize(&self, z: &Tensor, margin: f32) -> Result<(Tensor, Tensor)> {
        let rows = z.dim(0)?;
        let width = self.host.arch.width();
        let mut r = z.clone();
        let mut codes = Vec::with_capacity(self.codebooks.len());
        let mut close = Tensor::zeros(rows, DType::F32, &self.device)?;
        for (level, (c, norms, max_norm, all)) in self.codebooks.iter().enumerate() {
            let span = self.host.arch.level_span[level];
            let rs = r.narrow(1, span.0, span.1)?.contiguous()?;
            // ‖c‖² − 2 r·c: the squared distance less ‖r‖².
            let v = rs
                .matmul(&c.t()?)?
                .affine(-2.0, 0.0)?
                .broadcast_add(norms)?;
            let idx = v.argmin_keepdim(D::Minus1)?;
            let best = v.min_keepdim(D::Minus1)?;
            let inf = Tensor::full(f32::INFINITY, v.shape(), &self.device)?;
            let second = idx
                .broadcast_eq(all)?
                .where_cond(&inf, &v)?
                .min_keepdim(D::Minus1)?;
            let slack = rs.sqr()?.sum_keepdim(D::Minus1)?.affine(
                margin as f64,
                (margin * max_norm + f32::MIN_POSITIVE) as f64,
            )?;
            let flag = (second - best)?.le(&slack)?.to_dtype(DType::F32)?;
            close = close.maximum(&flag.squeeze(1)?)?;
            let e = c.index_select(&idx.squeeze(1)?, 0)?;
            r = (r - super::trainer::place(&e, span, width)?)?;
            codes.push(idx);
        }
        Ok((Tensor::cat(&codes, 1)?, close))
    }

    /// Codes of every row of `x` (rows × L), the CPU path's (see the module doc). `xd`: the
    /// same rows already on the device, if they are; `margin`: [`SETTLE_MARGIN`] (0 leaves
    /// only exact ties to the host; tests use it to check the device's own choices).
    pub(super) fn encode(&self, x: &Matrix, xd: Option<&Tensor>, margin: f32) -> Result<Vec<u16>> {
        let l = self.codebooks.len();
        let mut codes = Vec::with_capacity(x.rows * l);
        let mut settle: Vec<usize> = Vec::new();
        for start in (0..x.rows).step_by(ENCODE_ROWS) {
            let len = ENCODE_ROWS.min(x.rows - start);
            let block = match xd {
                Some(t) => t.narrow(0, start, len)?,
                None => Tensor::from_slice(
                    &x.data[start * x.cols..(start + len) * x.cols],
                    (len, x.cols),
                    &self.device,
                )?,
            };
            let (c, close) = self.quantize(&self.latent(&block)?, margin)?;
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
        DeviceModel::new(self, device)?.encode(x, None, SETTLE_MARGIN)
    }

    /// [`RqVae::encode_generic`] with another settling margin (tests).
    #[cfg(test)]
    pub(super) fn encode_generic_with(
        &self,
        x: &Matrix,
        device: &Device,
        margin: f32,
    ) -> Result<Vec<u16>> {
        DeviceModel::new(self, device)?.encode(x, None, margin)
    }
}
