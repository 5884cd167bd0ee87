//! The model's topology: which input columns each encoder reads, which latent columns each
//! codebook level quantizes, and what each decoder maps between (see the module doc of
//! `rqvae`).

use crate::quant::gensar::DualSpec;
use crate::quant::kind::IdKind;

/// A column range: (offset, width).
pub(super) type Span = (usize, usize);

/// One decoder and the ID it reconstructs from.
#[derive(Debug, Clone)]
pub(super) struct Kind {
    /// Levels of this ID, in order (indices into all levels).
    pub(super) levels: Vec<usize>,
    /// Latent columns the decoder reads.
    pub(super) latent: Span,
    /// Input columns it reconstructs.
    pub(super) input: Span,
}

/// Where every part of the model sits (see the module doc).
#[derive(Debug, Clone)]
pub(super) struct Arch {
    /// Input columns of each encoder; their latents are concatenated in this order.
    pub(super) enc_in: Vec<Span>,
    pub(super) latent: usize,
    /// Latent columns of each level.
    pub(super) level_span: Vec<Span>,
    pub(super) kinds: Vec<Kind>,
}

impl Arch {
    pub(super) fn of(dim: usize, latent: usize, levels: usize, dual: Option<&DualSpec>) -> Arch {
        match dual {
            None => Arch {
                enc_in: vec![(0, dim)],
                latent,
                level_span: vec![(0, latent); levels],
                kinds: vec![Kind {
                    levels: (0..levels).collect(),
                    latent: (0, latent),
                    input: (0, dim),
                }],
            },
            Some(d) => {
                let sem = (0, d.semantic_dim);
                let col = (d.semantic_dim, dim - d.semantic_dim);
                let mut level_span = vec![(0, 2 * latent); d.shared_levels];
                level_span.extend(std::iter::repeat_n((0, latent), d.semantic_levels));
                level_span.extend(std::iter::repeat_n((latent, latent), d.collab_levels));
                Arch {
                    enc_in: vec![sem, col],
                    latent,
                    level_span,
                    kinds: vec![
                        Kind {
                            levels: d.kind_levels(IdKind::Sid),
                            latent: (0, latent),
                            input: sem,
                        },
                        Kind {
                            levels: d.kind_levels(IdKind::Cid),
                            latent: (latent, latent),
                            input: col,
                        },
                    ],
                }
            }
        }
    }

    /// Width of the concatenated latent.
    pub(super) fn width(&self) -> usize {
        self.latent * self.enc_in.len()
    }

    /// Names of the encoder and decoder MLPs in model.safetensors (plain RQ-VAE keeps the
    /// unqualified names of format version 1).
    pub(super) fn mlp_names(&self) -> (Vec<String>, Vec<String>) {
        if self.enc_in.len() == 1 {
            (vec!["encoder".into()], vec!["decoder".into()])
        } else {
            (
                vec!["encoder.semantic".into(), "encoder.collab".into()],
                vec!["decoder.semantic".into(), "decoder.collab".into()],
            )
        }
    }
}

/// Layer widths in → … → out of an encoder (the decoder is the reverse).
pub(super) fn widths(dim: usize, hidden: &[usize], latent: usize) -> Vec<usize> {
    let mut w = vec![dim];
    w.extend_from_slice(hidden);
    w.push(latent);
    w
}
