//! GenSAR's dual quantization (docs/methods.md §5): one model gives every item a semantic ID (SID,
//! for search) and a collaborative ID (CID, for recommendation) that share a prefix.
//!
//! The input row is the item's semantic embedding s followed by its collaborative embedding u.
//! Two encoders map s and u to d dims each; shared levels quantize the concatenation (2d); the
//! residual's first half then goes through the semantic levels and its second half through the
//! collaborative ones; two decoders reconstruct s and u. Training, inference, k-means init,
//! dead-code reset, progressive masking and the contrastive loss are RQ-VAE's
//! ([`crate::quant::rqvae`]), which runs any such layout ([`crate::quant::train_dual`] starts
//! it); this module holds what is specific to dual IDs: the level split and how codes become
//! SIDs and CIDs.

use crate::error::{Error, Result};
use crate::quant::config::GensarConfig;
use serde::{Deserialize, Serialize};

pub use crate::quant::kind::IdKind;

/// How a GenSAR model's levels and input columns split; saved in the quantizer's config.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DualSpec {
    /// Input columns 0..semantic_dim are s, the rest u.
    pub semantic_dim: usize,
    pub shared_levels: usize,
    pub semantic_levels: usize,
    pub collab_levels: usize,
}

impl DualSpec {
    /// The split `[quantizer.gensar]` asks for, for inputs whose first `semantic_dim` columns
    /// are the semantic vector.
    pub fn new(semantic_dim: usize, g: &GensarConfig) -> Self {
        DualSpec {
            semantic_dim,
            shared_levels: g.shared_levels,
            semantic_levels: g.semantic_levels,
            collab_levels: g.collab_levels,
        }
    }

    pub fn levels(&self) -> usize {
        self.shared_levels + self.semantic_levels + self.collab_levels
    }

    /// The levels (indices into all levels: shared, semantic, collaborative) one ID is made of.
    pub(crate) fn kind_levels(&self, kind: IdKind) -> Vec<usize> {
        let (s, m) = (self.shared_levels, self.semantic_levels);
        let own = match kind {
            IdKind::Sid => s..s + m,
            IdKind::Cid => s + m..self.levels(),
        };
        (0..s).chain(own).collect()
    }

    /// One ID's codes (rows × its levels) out of all codes (rows × L).
    pub fn split(&self, codes: &[u16], kind: IdKind) -> Vec<u16> {
        let l = self.levels();
        let pick = self.kind_levels(kind);
        codes
            .chunks(l)
            .flat_map(|row| pick.iter().map(move |&j| row[j]))
            .collect()
    }

    /// All codes (rows × L) from the two IDs' codes (each rows × its levels).
    pub fn join(&self, sid: &[u16], cid: &[u16]) -> Vec<u16> {
        let (ls, lc) = (
            self.shared_levels + self.semantic_levels,
            self.shared_levels + self.collab_levels,
        );
        sid.chunks(ls)
            .zip(cid.chunks(lc))
            .flat_map(|(s, c)| s.iter().chain(&c[self.shared_levels..]).copied())
            .collect()
    }

    /// The input columns (offset, width) of one ID's vector, for inputs `dim` wide.
    pub(crate) fn input_span(&self, kind: IdKind, dim: usize) -> (usize, usize) {
        match kind {
            IdKind::Sid => (0, self.semantic_dim),
            IdKind::Cid => (self.semantic_dim, dim - self.semantic_dim),
        }
    }

    /// Shape checks shared by training and loading.
    pub fn check(&self, dim: usize, levels: usize) -> Result<()> {
        if self.semantic_levels == 0 || self.collab_levels == 0 {
            return Err(Error::Config(
                "gensar needs at least one semantic and one collaborative level".into(),
            ));
        }
        if levels != self.levels() {
            return Err(Error::Config(format!(
                "gensar has {} + {} + {} levels but {levels} codebook sizes",
                self.shared_levels, self.semantic_levels, self.collab_levels
            )));
        }
        if self.semantic_dim == 0 || self.semantic_dim >= dim {
            return Err(Error::Config(format!(
                "gensar inputs are {dim} wide, which cannot hold {} semantic dimensions and a \
                 collaborative part",
                self.semantic_dim
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Matrix;

    fn spec() -> DualSpec {
        DualSpec {
            semantic_dim: 4,
            shared_levels: 2,
            semantic_levels: 1,
            collab_levels: 2,
        }
    }

    #[test]
    fn split_and_join_are_inverse() {
        let s = spec();
        // Two rows of [shared0, shared1, sem0, col0, col1].
        let all = vec![1, 2, 3, 4, 5, 10, 20, 30, 40, 50];
        let sid = s.split(&all, IdKind::Sid);
        let cid = s.split(&all, IdKind::Cid);
        assert_eq!(sid, vec![1, 2, 3, 10, 20, 30]);
        assert_eq!(cid, vec![1, 2, 4, 5, 10, 20, 40, 50]);
        assert_eq!(s.join(&sid, &cid), all);
        assert_eq!(s.kind_levels(IdKind::Cid), vec![0, 1, 3, 4]);
        assert_eq!(s.input_span(IdKind::Cid, 6), (4, 2));
    }

    /// Items whose semantic vector follows one grouping (i mod 4) and whose collaborative
    /// vector follows another, independent one (i / 4 mod 4).
    fn crossed(n: usize) -> (Matrix, Vec<usize>, Vec<usize>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut centre =
            |d: usize| -> Vec<f32> { (0..d).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let sem: Vec<Vec<f32>> = (0..4).map(|_| centre(12)).collect();
        let col: Vec<Vec<f32>> = (0..4).map(|_| centre(6)).collect();
        let (gs, gc): (Vec<usize>, Vec<usize>) = (0..n).map(|i| (i % 4, (i / 4) % 4)).unzip();
        let mut data = Vec::with_capacity(n * 18);
        for i in 0..n {
            data.extend(sem[gs[i]].iter().map(|v| v + rng.random_range(-0.1..0.1)));
            data.extend(col[gc[i]].iter().map(|v| v + rng.random_range(-0.1..0.1)));
        }
        (Matrix::new(data, n, 18), gs, gc)
    }

    /// How well the codes of `levels` predict a grouping: the share of items whose code
    /// tuple's majority group is their own.
    fn purity(codes: &[u16], l: usize, levels: &[usize], group: &[usize]) -> f64 {
        let mut counts: std::collections::HashMap<Vec<u16>, [usize; 4]> = Default::default();
        for (row, &g) in codes.chunks(l).zip(group) {
            counts
                .entry(levels.iter().map(|&j| row[j]).collect())
                .or_default()[g] += 1;
        }
        let hit: usize = counts.values().map(|c| *c.iter().max().unwrap()).sum();
        hit as f64 / group.len() as f64
    }

    #[test]
    fn semantic_codes_follow_s_and_collaborative_codes_follow_u() {
        use crate::progress::Silent;
        use crate::quant::config::QuantizerConfig;
        let (x, gs, gc) = crossed(1600);
        let mut cfg = QuantizerConfig {
            method: crate::quant::config::Method::Gensar,
            codebook_sizes: vec![8, 8, 8],
            ..QuantizerConfig::default()
        };
        cfg.gensar.shared_levels = 1;
        cfg.gensar.semantic_levels = 1;
        cfg.gensar.collab_levels = 1;
        let v = &mut cfg.rqvae;
        v.hidden = vec![32];
        v.latent_dim = 4;
        v.epochs = 60;
        v.batch_size = 256;
        v.eval_every = 5;
        v.warmup_steps = 10;
        let q = crate::quant::train_dual(&x, 12, &cfg, 1, &[], &Silent).unwrap();
        assert_eq!(q.method(), crate::quant::config::Method::Gensar);
        let codes = q.encode(&x).unwrap();
        // The SID (shared + semantic level) tells the semantic groups apart, the CID (shared +
        // collaborative level) the collaborative ones.
        let spec = q.dual().unwrap();
        let sid = spec.kind_levels(IdKind::Sid);
        let cid = spec.kind_levels(IdKind::Cid);
        assert_eq!((sid.as_slice(), cid.as_slice()), (&[0, 1][..], &[0, 2][..]));
        let ps = purity(&codes, 3, &sid, &gs);
        let pc = purity(&codes, 3, &cid, &gc);
        assert!(ps > 0.95, "SID purity over semantic groups {ps}");
        assert!(pc > 0.95, "CID purity over collaborative groups {pc}");
        // Each decoder reconstructs its own half from its own ID; the full decode is both side
        // by side.
        let s_hat = q.decode_id(&codes, IdKind::Sid, 2).unwrap();
        let u_hat = q.decode_id(&codes, IdKind::Cid, 2).unwrap();
        assert_eq!((s_hat.cols, u_hat.cols), (12, 6));
        let rel = |x: &Matrix, xh: &Matrix| {
            let e: f32 = x
                .data
                .iter()
                .zip(&xh.data)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            e / x.data.iter().map(|a| a * a).sum::<f32>()
        };
        let (es, eu) = (
            rel(&x.columns(0, 12), &s_hat),
            rel(&x.columns(12, 6), &u_hat),
        );
        assert!(es < 0.1 && eu < 0.1, "relative errors: s {es}, u {eu}");
        let all = q.decode(&codes).unwrap();
        assert_eq!(all.columns(0, 12), s_hat);
        assert_eq!(all.columns(12, 6), u_hat);
        // reassign's distances rank each row's own last code first.
        for level in [1, 2] {
            let d = q.level_distances(&x, &codes, level).unwrap();
            for (i, row) in d.chunks(8).enumerate() {
                let best = (0..8).min_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                assert_eq!(row[best], row[codes[i * 3 + level] as usize]);
            }
        }
        // Save and load give the same codes.
        let dir = tempfile::tempdir().unwrap();
        q.save(dir.path()).unwrap();
        let back = crate::quant::load(dir.path()).unwrap();
        assert_eq!(back.method(), crate::quant::config::Method::Gensar);
        assert_eq!(back.encode(&x).unwrap(), codes);
        assert_eq!(back.fingerprint(), q.fingerprint());
        assert_eq!(back.dual(), q.dual());
    }

    #[test]
    fn shape_checks() {
        assert!(spec().check(6, 5).is_ok());
        assert!(spec().check(6, 4).is_err());
        assert!(spec().check(4, 5).is_err());
        let mut no_col = spec();
        no_col.collab_levels = 0;
        assert!(no_col.check(6, 3).is_err());
    }
}
