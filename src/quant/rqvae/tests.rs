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

// ---- the device-generic path (candle ops and autograd) against the tuned CPU path ----------
//
// The generic path runs here on candle's CPU backend, as it would on a GPU. Both paths start
// from the same weights and draw the same batches, masks and pairs; they differ in rounding
// (candle's matmul and f32 sums against the fused ops' GEMMs and f64 sums) and in how the
// nearest codeword is picked (the distance GEMM's argmin against the exact search), which
// can only matter between codewords whose distances agree to rounding.

mod generic {
    use super::super::trainer::{Backend, Trainer};
    use super::*;
    use crate::quant::config::GensarConfig;
    use crate::quant::gensar::DualSpec;
    use candle_core::{Device, Tensor, Var};

    /// Pairs of rows in the same cluster of `clustered(n, _, clusters, _)`.
    fn pairs(n: usize, clusters: usize, count: usize) -> Vec<(u32, u32)> {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
            if a != b && a % clusters == b % clusters {
                out.push((a as u32, b as u32));
            }
        }
        out
    }

    /// RQ-VAE with PLUM's masking and the contrastive loss on.
    fn rqvae_cfg(epochs: usize) -> QuantizerConfig {
        let mut c = cfg(&[16, 8, 8], epochs);
        c.rqvae.batch_size = 128;
        c.rqvae.prefix_masking = PrefixMasking::Uniform;
        c.rqvae.full_prefix_prob = 0.3;
        c.rqvae.contrastive_weight = 0.5;
        c
    }

    /// GenSAR (2 shared, 1 semantic, 1 collaborative level) on 10 + 6 input columns, with
    /// masking and the contrastive loss on.
    fn gensar_cfg(epochs: usize) -> (QuantizerConfig, Option<DualSpec>) {
        let mut g = rqvae_cfg(epochs);
        g.method = Method::Gensar;
        g.codebook_sizes = vec![8, 8, 8, 8];
        g.gensar = GensarConfig {
            shared_levels: 2,
            semantic_levels: 1,
            collab_levels: 1,
        };
        let spec = DualSpec::new(10, &g.gensar);
        (g, Some(spec))
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// Fails naming how many codes differ (the vectors are too long to print).
    fn same_codes(a: &[u16], b: &[u16], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let differ = a.iter().zip(b).filter(|(p, q)| p != q).count();
        assert_eq!(differ, 0, "{what}: {differ} of {} codes differ", a.len());
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(1e-12)
    }

    /// One step from the same weights, codebooks, batch, masks and pairs: the same loss, the
    /// same codes and the same gradients for every variable, to rounding. This checks the
    /// generic path's loss (reconstruction through masked prefixes, codebook and commitment
    /// terms, contrastive term) term for term, without a trajectory in between.
    #[test]
    fn one_step_gives_the_tuned_loss_codes_and_gradients() {
        let x = clustered(600, 16, 12, 3);
        let pairs = pairs(600, 12, 400);
        let (g, spec) = gensar_cfg(1);
        for (c, dual) in [(rqvae_cfg(1), None), (g, spec)] {
            let mut t = Trainer::new(&x, &c, dual.clone(), 3, Backend::Tuned).unwrap();
            let mut d = Trainer::new(&x, &c, dual, 3, Backend::Generic(Device::Cpu)).unwrap();
            t.pairs = pairs.clone();
            d.pairs = pairs.clone();
            let order: Vec<usize> = (0..x.rows).rev().collect();
            t.init_codebooks(&order).unwrap();
            d.init_codebooks(&order).unwrap();
            // The device k-means init gives the CPU's codebooks to rounding ...
            for (a, b) in t.codebooks.iter().zip(&d.codebooks) {
                let (a, b) = (flat(a.as_tensor()), flat(b.as_tensor()));
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "codebook init differs by {worst}");
            }
            // ... and from here on both start from the same bits.
            d.codebooks = t
                .codebooks
                .iter()
                .map(|v| Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap())
                .collect();
            for (a, b) in t.enc.iter().chain(&t.dec).zip(d.enc.iter().chain(&d.dec)) {
                assert_eq!(flat(a.params.as_tensor()), flat(b.params.as_tensor()));
            }
            let batch = &order[100..228];
            let step = |tr: &mut Trainer| {
                let masks: Vec<Option<Tensor>> = tr
                    .draw_masks(batch.len())
                    .into_iter()
                    .zip(&tr.arch.kinds)
                    .map(|(m, k)| {
                        m.map(|m| {
                            Tensor::from_vec(m, (batch.len(), k.levels.len()), &Device::Cpu)
                                .unwrap()
                        })
                    })
                    .collect();
                assert!(masks.iter().all(|m| m.is_some()), "masking is on");
                let (loss, recon, codes, _) =
                    tr.step_loss(&tr.rows(batch).unwrap(), &masks).unwrap();
                let con = tr.contrastive_loss(128).unwrap();
                let loss = (loss + (&con * tr.cfg.contrastive_weight).unwrap()).unwrap();
                let grads = loss.backward().unwrap();
                let mut vars: Vec<Var> = tr
                    .enc
                    .iter()
                    .chain(&tr.dec)
                    .map(|m| m.params.clone())
                    .collect();
                vars.extend(tr.codebooks.iter().cloned());
                let grads: Vec<Vec<f32>> = vars
                    .iter()
                    .map(|v| flat(grads.get(v.as_tensor()).unwrap()))
                    .collect();
                let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap() as f64;
                let codes: Vec<Vec<u32>> = codes.iter().map(|c| c.to_vec1().unwrap()).collect();
                (scalar(&loss), scalar(&recon), scalar(&con), codes, grads)
            };
            let (lt, rt, ct, codes_t, gt) = step(&mut t);
            let (ld, rd, cd, codes_d, gd) = step(&mut d);
            assert_eq!(codes_t, codes_d);
            for (what, a, b) in [
                ("loss", lt, ld),
                ("reconstruction", rt, rd),
                ("contrastive", ct, cd),
            ] {
                assert!(rel(a, b) < 1e-5, "{what}: tuned {a}, generic {b}");
            }
            assert!(ct > 0.1, "the contrastive term is live: {ct}");
            for (i, (a, b)) in gt.iter().zip(&gd).enumerate() {
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(scale > 0.0, "variable {i} gets a gradient");
                assert!(
                    worst <= 1e-4 * scale,
                    "variable {i}: gradients differ by {worst} (largest {scale})"
                );
            }
        }
    }

    /// The generic path draws a whole epoch's masks and pairs up front: the same numbers, in
    /// the same places, as the tuned path's step-by-step draws (a step's masks decoder by
    /// decoder, then its pairs), and the RNG ends in the same state.
    #[test]
    fn epoch_draws_are_the_tuned_steps_draws() {
        use super::super::generic::EpochDraws;
        let x = clustered(300, 16, 12, 3);
        let pairs = pairs(300, 12, 100);
        let (g, spec) = gensar_cfg(1);
        for (c, dual) in [(rqvae_cfg(1), None), (g, spec)] {
            let new = || {
                let mut t = Trainer::new(&x, &c, dual.clone(), 3, Backend::Tuned).unwrap();
                t.pairs = pairs.clone();
                t
            };
            let (mut a, mut b) = (new(), new());
            let order: Vec<usize> = (0..x.rows).rev().collect();
            let batches: Vec<&[usize]> = order.chunks(128).collect();
            let up_front = a.draw_epoch(&batches, 128);
            let mut steps = EpochDraws {
                masks: vec![None; b.arch.kinds.len()],
                anchors: Vec::new(),
                partners: Vec::new(),
            };
            for batch in &batches {
                for (all, m) in steps.masks.iter_mut().zip(b.draw_masks(batch.len())) {
                    all.get_or_insert_with(Vec::new).extend(m.unwrap());
                }
                let (p, q) = b.draw_pairs(128);
                steps.anchors.extend(p.iter().map(|&i| i as u32));
                steps.partners.extend(q.iter().map(|&i| i as u32));
            }
            assert_eq!(
                up_front.anchors.len(),
                3 * 100,
                "every step draws min(bs, pairs)"
            );
            assert_eq!(up_front, steps);
            assert_eq!(a.rng.random::<u64>(), b.rng.random::<u64>());
        }
    }

    /// Training end to end, with masking and the contrastive loss, for RQ-VAE and GenSAR: the
    /// per-epoch losses and reconstruction errors agree with the tuned path's, and so do the
    /// codes of the trained models.
    ///
    /// Tolerances (relative): 1e-4 at epoch 1, 1e-2 at every epoch; codes equal for ≥ 95% of
    /// rows. Until the two paths first pick different codes for some row they agree to about
    /// 1e-7 (measured here: RQ-VAE at most 1.7e-8 in the loss and 3.9e-8 in the reconstruction
    /// error over all 6 epochs, every code equal). They pick differently only where a row's
    /// two nearest codewords are equidistant to rounding (seen while writing this test: squared
    /// distances 6.0906415 and 6.090642, 7e-8 apart relative to ‖r‖², in GenSAR's third
    /// epoch); from there the runs drift apart a little (measured here: GenSAR at most 9.4e-4
    /// in the loss and 2.6e-4 in the reconstruction error, epoch 1 within 5.2e-9; 1489 of 1500
    /// rows with the same codes).
    #[test]
    fn training_agrees_with_the_tuned_path() {
        let x = clustered(1500, 16, 12, 3);
        let pairs = pairs(1500, 12, 800);
        let (g, spec) = gensar_cfg(6);
        for (what, c, dual) in [("rq-vae", rqvae_cfg(6), None), ("gensar", g, spec)] {
            let fit = |b| RqVae::fit_on(&x, &c, dual.clone(), 3, &pairs, &Silent, b).unwrap();
            let (t, d) = (fit(Backend::Tuned), fit(Backend::Generic(Device::Cpu)));
            let (et, ed) = (&t.saved().evaluations, &d.saved().evaluations);
            assert_eq!(et.len(), 6);
            assert_eq!(ed.len(), 6);
            let worst = et.iter().zip(ed).fold((0f64, 0f64), |(l, r), (a, b)| {
                (
                    l.max(rel(a.loss, b.loss)),
                    r.max(rel(a.recon_mse, b.recon_mse)),
                )
            });
            eprintln!(
                "{what}: largest relative difference per epoch: loss {:.1e}, recon_mse {:.1e}; epoch 1: {:.1e}, {:.1e}",
                worst.0,
                worst.1,
                rel(et[0].loss, ed[0].loss),
                rel(et[0].recon_mse, ed[0].recon_mse)
            );
            for (a, b) in et.iter().zip(ed) {
                let tol = if a.epoch == 1 { 1e-4 } else { 1e-2 };
                for (name, p, q) in [
                    ("loss", a.loss, b.loss),
                    ("recon_mse", a.recon_mse, b.recon_mse),
                ] {
                    assert!(
                        rel(p, q) <= tol,
                        "{what} epoch {}: {name} tuned {p}, generic {q}",
                        a.epoch
                    );
                }
            }
            assert!(
                et[5].recon_mse < 0.5 * et[0].recon_mse,
                "{what} learns: {et:?}"
            );
            let l = c.codebook_sizes.len();
            let (ct, cd) = (t.encode(&x).unwrap(), d.encode(&x).unwrap());
            let same = ct
                .chunks(l)
                .zip(cd.chunks(l))
                .filter(|(p, q)| p == q)
                .count();
            eprintln!("{what}: {same} of {} rows have the same codes", x.rows);
            assert!(
                same as f64 >= 0.95 * x.rows as f64,
                "{what}: {same} of {} rows have the same codes",
                x.rows
            );
            // The generic path's model saves and loads like any other.
            let dir = tempfile::tempdir().unwrap();
            d.save(dir.path()).unwrap();
            let back = crate::quant::load(dir.path()).unwrap();
            same_codes(&back.encode(&x).unwrap(), &cd, "reloaded");
            assert_eq!(back.fingerprint(), d.fingerprint());
        }
    }

    /// Encoding through the generic path (device encoders, distance GEMMs, argmin) gives the
    /// CPU path's codes for trained RQ-VAE and GenSAR models, on synthetic rows and on the
    /// test catalogue's vectors, both with the close calls settled on the host and with the
    /// device deciding all but what its GEMM's rounding could tip (no latent error assumed);
    /// the device evaluation equals the CPU
    /// evaluation (codes-derived figures exactly, the reconstruction error to rounding).
    #[test]
    fn generic_encoding_gives_the_cpu_codes() {
        use super::super::device::LATENT_REL_ERROR;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/items.parquet");
        let (_, items) =
            crate::io::embeddings::read_all(&path, "item_id", "embedding", 8192).unwrap();
        let x = clustered(1500, 16, 12, 3);
        let (g, spec) = gensar_cfg(3);
        let mut on_items = cfg(&[16, 8, 8], 3);
        on_items.rqvae.batch_size = 64;
        let models = [
            (
                &x,
                RqVae::fit_on(&x, &rqvae_cfg(3), None, 3, &[], &Silent, Backend::Tuned).unwrap(),
            ),
            (
                &x,
                RqVae::fit_on(&x, &g, spec, 3, &[], &Silent, Backend::Tuned).unwrap(),
            ),
            (
                &items,
                RqVae::fit_on(&items, &on_items, None, 3, &[], &Silent, Backend::Tuned).unwrap(),
            ),
        ];
        for (x, m) in &models {
            let cpu = m.encode(x).unwrap();
            for rel_error in [LATENT_REL_ERROR, 0.0] {
                let generic = m.encode_generic_with(x, &Device::Cpu, rel_error).unwrap();
                same_codes(&generic, &cpu, &format!("latent error {rel_error}"));
            }
            same_codes(&m.encode_on(x, &Device::Cpu).unwrap(), &cpu, "encode_on");
            let xd = crate::quant::kmeans::device::upload(x, &Device::Cpu).unwrap();
            let a = super::super::eval::evaluate(m, x, 1, 0.5).unwrap();
            let b = super::super::eval::evaluate_on(m, x, &xd, 1, 0.5).unwrap();
            assert!(
                rel(a.recon_mse, b.recon_mse) < 1e-5,
                "{} vs {}",
                a.recon_mse,
                b.recon_mse
            );
            assert_eq!(
                (
                    a.collision_rate,
                    a.cid_collision_rate,
                    &a.utilisation,
                    &a.entropy_bits
                ),
                (
                    b.collision_rate,
                    b.cid_collision_rate,
                    &b.utilisation,
                    &b.entropy_bits
                )
            );
        }
    }

    /// The close calls a device's rounding could tip are found and settled on the host: with
    /// latents off by a relative 5e-5 (within [`LATENT_REL_ERROR`]), the device alone gives
    /// some other codes, and with the settling the CPU path's codes.
    #[test]
    fn close_calls_are_settled_on_the_host() {
        use super::super::device::{DeviceModel, LATENT_REL_ERROR};
        let x = clustered(20_000, 32, 64, 2);
        let m = RqVae::fit_on(
            &x,
            &cfg(&[64, 64, 64], 4),
            None,
            3,
            &[],
            &Silent,
            Backend::Tuned,
        )
        .unwrap();
        let cpu = m.encode(&x).unwrap();
        // In blocks of 1000 rows, so that the settled rows' places cross blocks.
        let off = || {
            DeviceModel::new(&m, &Device::Cpu)
                .unwrap()
                .with_block_rows(1000)
                .scaled_latents(1.0 + 5e-5)
                .unwrap()
        };
        let alone = off().encode(&x, None, 0.0).unwrap();
        let differ = alone.iter().zip(&cpu).filter(|(a, b)| a != b).count();
        eprintln!(
            "codes changed by a 5e-5 latent error: {differ} of {}",
            cpu.len()
        );
        assert!(differ > 0, "the test needs rows that the error tips");
        same_codes(
            &off().encode(&x, None, LATENT_REL_ERROR).unwrap(),
            &cpu,
            "settled",
        );
    }

    /// The generic path stops a diverging run with the tuned path's error: the same epoch,
    /// step and cause.
    #[test]
    fn divergence_is_reported_as_on_the_tuned_path() {
        let x = clustered(600, 16, 10, 2);
        let mut c = cfg(&[8, 4], 5);
        c.rqvae.lr = 1e30;
        let (mut g, spec) = gensar_cfg(5);
        g.codebook_sizes = vec![4, 4, 4, 4];
        g.rqvae.lr = 1e30;
        g.rqvae.beta = 1e30;
        for (c, dual) in [(c, None), (g, spec)] {
            let err = |b| {
                RqVae::fit_on(&x, &c, dual.clone(), 1, &[], &Silent, b)
                    .err()
                    .expect("diverges")
                    .to_string()
            };
            let (t, d) = (err(Backend::Tuned), err(Backend::Generic(Device::Cpu)));
            assert!(d.contains("diverged at epoch 1, step"), "{d}");
            assert_eq!(t, d);
        }
    }

    /// `device = "cuda"` in a build without CUDA is refused with the build's reason.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_refused() {
        let x = clustered(300, 16, 10, 2);
        let mut c = cfg(&[8, 4], 1);
        c.device = crate::device::DeviceKind::Cuda;
        let e = RqVae::fit(&x, &c, 1, &Silent)
            .err()
            .expect("no CUDA")
            .to_string();
        assert!(e.contains("without CUDA support"), "{e}");
    }
}
