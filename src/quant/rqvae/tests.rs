//! RQ-VAE training and inference tests.

use super::model::*;
use crate::matrix::Matrix;
use crate::quant::Quantizer;
use crate::quant::config::{Method, PrefixMasking, QuantizerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::progress::Silent;

/// `clusters` well-separated Gaussian clusters in `d` dims.
fn clustered(n: usize, d: usize, clusters: usize, seed: u64) -> Matrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..d).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        let c = &centres[i % clusters];
        data.extend(c.iter().map(|v| v + rng.random_range(-0.15..0.15)));
    }
    Matrix::new(data, n, d)
}

fn cfg(sizes: &[usize], epochs: usize) -> QuantizerConfig {
    let mut c = QuantizerConfig {
        method: Method::RqVae,
        codebook_sizes: sizes.to_vec(),
        ..QuantizerConfig::default()
    };
    c.rqvae.hidden = vec![64, 32];
    c.rqvae.latent_dim = 8;
    c.rqvae.epochs = epochs;
    c.rqvae.batch_size = 256;
    c.rqvae.eval_every = 1;
    c.rqvae.patience = 1000;
    c.rqvae.warmup_steps = 10;
    c
}

#[test]
fn loss_decreases_and_reload_encodes_identically() {
    let x = clustered(2000, 16, 20, 1);
    let q = RqVae::fit(&x, &cfg(&[16, 8], 15), 7, &Silent).unwrap();
    let ev = &q.saved().evaluations;
    assert!(
        ev.last().unwrap().recon_mse < ev[0].recon_mse * 0.8,
        "{ev:?}"
    );
    assert!(ev.last().unwrap().loss < ev[0].loss, "{ev:?}");
    let dir = tempfile::tempdir().unwrap();
    q.save(dir.path()).unwrap();
    let back = RqVae::load(dir.path()).unwrap();
    assert_eq!(back.encode(&x).unwrap(), q.encode(&x).unwrap());
    assert_eq!(back.fingerprint(), q.fingerprint());
    // Same seed, same model; another seed, another model.
    let again = RqVae::fit(&x, &cfg(&[16, 8], 15), 7, &Silent).unwrap();
    assert_eq!(again.fingerprint(), q.fingerprint());
    let other = RqVae::fit(&x, &cfg(&[16, 8], 15), 8, &Silent).unwrap();
    assert_ne!(other.fingerprint(), q.fingerprint());
}

#[test]
fn codebooks_stay_in_use() {
    let x = clustered(20_000, 32, 64, 2);
    let q = RqVae::fit(&x, &cfg(&[64, 64, 64], 6), 3, &Silent).unwrap();
    let codes = q.encode(&x).unwrap();
    for level in 0..3 {
        let mut used = [false; 64];
        codes.chunks(3).for_each(|r| used[r[level] as usize] = true);
        let u = used.iter().filter(|&&b| b).count();
        assert!(
            u as f64 >= 0.9 * 64.0,
            "level {level}: {u} of 64 codes used"
        );
    }
}

#[test]
fn prefix_masking_makes_the_first_level_a_better_description() {
    let x = clustered(3000, 16, 30, 4);
    let mut off = cfg(&[8, 8, 8], 20);
    off.rqvae.prefix_masking = PrefixMasking::None;
    let mut on = off.clone();
    on.rqvae.prefix_masking = PrefixMasking::Uniform;
    let err1 = |c: &QuantizerConfig| {
        let q = RqVae::fit(&x, c, 5, &Silent).unwrap();
        let codes = q.encode(&x).unwrap();
        q.prefix_sq_errors(&x, &codes).unwrap()[0]
    };
    let (e_off, e_on) = (err1(&off), err1(&on));
    assert!(
        e_on < e_off,
        "level-1 error with masking {e_on} vs without {e_off}"
    );
}

#[test]
fn cooccurrence_pulls_paired_items_into_one_first_level_code() {
    // Content: 6 strong clusters (i mod 6); groups: 6 more, crossed with content
    // (i / 6 mod 6), each a weak offset that k-means on content alone does not split by.
    // The interactions (pairs inside a group) say which offsets matter.
    let n = 720;
    let d = 16;
    let group = |i: usize| (i / 6) % 6;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let centre = |rng: &mut ChaCha8Rng, s: f32| -> Vec<f32> {
        (0..d).map(|_| rng.random_range(-s..s)).collect()
    };
    let content: Vec<Vec<f32>> = (0..6).map(|_| centre(&mut rng, 1.0)).collect();
    let offsets: Vec<Vec<f32>> = (0..6).map(|_| centre(&mut rng, 0.25)).collect();
    let mut data = Vec::with_capacity(n * d);
    for i in 0..n {
        for k in 0..d {
            data.push(content[i % 6][k] + offsets[group(i)][k] + rng.random_range(-0.05..0.05));
        }
    }
    let x = Matrix::new(data, n, d);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut pairs = Vec::new();
    while pairs.len() < 3000 {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b && group(a) == group(b) {
            pairs.push((a.min(b) as u32, a.max(b) as u32));
        }
    }
    let mut c = cfg(&[6, 6], 60);
    c.rqvae.batch_size = 128;
    c.rqvae.contrastive_weight = 1.0;
    let shared = |pairs_used: &[(u32, u32)]| {
        let q = RqVae::fit_with_pairs(&x, &c, 5, pairs_used, &Silent).unwrap();
        let codes = q.encode(&x).unwrap();
        let same = pairs
            .iter()
            .filter(|&&(a, b)| codes[a as usize * 2] == codes[b as usize * 2])
            .count();
        same as f64 / pairs.len() as f64
    };
    let (off, on) = (shared(&[]), shared(&pairs));
    eprintln!("pairs sharing level 1: {on:.3} with the contrastive loss, {off:.3} without");
    assert!(
        on > off + 0.3,
        "pairs sharing level 1: {on:.3} with the loss, {off:.3} without"
    );
}

#[test]
fn diverging_training_stops_with_an_error_naming_epoch_and_remedy() {
    let x = clustered(600, 16, 10, 2);
    // Finite, so it passes validation, but every update overflows the weights.
    let mut c = cfg(&[8, 4], 5);
    c.rqvae.lr = 1e30;
    c.validate().unwrap();
    let e = RqVae::fit(&x, &c, 1, &Silent)
        .err()
        .expect("diverges")
        .to_string();
    assert!(
        e.contains("diverged at epoch 1, step")
            && e.contains("--lr")
            && e.contains("nothing was saved"),
        "{e}"
    );
    // GenSAR trains on the same engine.
    let mut g = cfg(&[4, 4, 4, 4], 5);
    g.method = Method::Gensar;
    g.gensar = crate::quant::config::GensarConfig {
        shared_levels: 2,
        semantic_levels: 1,
        collab_levels: 1,
    };
    g.rqvae.beta = 1e30;
    g.rqvae.lr = 1e30;
    g.validate().unwrap();
    let e = crate::quant::train_dual(&x, 8, &g, 1, &[], &Silent)
        .err()
        .expect("diverges")
        .to_string();
    assert!(e.contains("gensar training diverged at epoch 1"), "{e}");
}
