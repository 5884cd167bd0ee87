//! The Qwen3 encoder against HF transformers 5.24 (testdata/tiny-qwen3/reference.json).

use serde_json::Value;
use sidtool::config::EmbedConfig;
use sidtool::embed::{Encoder, Pooling};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/tiny-qwen3");

fn reference() -> Value {
    let text = std::fs::read_to_string(format!("{MODEL}/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn encoder(pooling: Pooling) -> Encoder {
    let cfg = EmbedConfig {
        model: MODEL.into(),
        pooling: Some(pooling),
        max_length: 32,
        ..EmbedConfig::default()
    };
    Encoder::load(&cfg).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn texts(r: &Value) -> Vec<String> {
    r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn token_ids_match_transformers_exactly() {
    let r = reference();
    let enc = encoder(Pooling::Last);
    let ids = enc.tokenize(&texts(&r)).unwrap();
    for (i, single) in r["single"].as_array().unwrap().iter().enumerate() {
        let want: Vec<u32> = single["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want, "text {i}: {:?}", r["texts"][i]);
    }
}

#[test]
fn single_and_batched_embeddings_match_transformers() {
    let r = reference();
    let texts = texts(&r);
    for (pooling, key) in [(Pooling::Last, "last_token"), (Pooling::Mean, "mean")] {
        let enc = encoder(pooling);
        // Each text alone.
        for (i, t) in texts.iter().enumerate() {
            let got = enc.embed_texts(std::slice::from_ref(t)).unwrap();
            for prec in ["f32", "f64"] {
                let want = rows(&Value::Array(vec![
                    r["single"][i][format!("{key}_{prec}")].clone(),
                ]));
                let d = max_diff(&got[0], &want[0]);
                assert!(d < 1e-5, "{key} {prec} single text {i}: max |Δ| = {d:e}");
            }
        }
        // All texts in one padded batch, against transformers' left-padded batch.
        let got = enc.embed_texts(&texts).unwrap();
        let want = rows(&r["batch"][format!("{key}_f32")]);
        for i in 0..texts.len() {
            let d = max_diff(&got[i], &want[i]);
            assert!(d < 1e-5, "{key} batched text {i}: max |Δ| = {d:e}");
        }
        // Batch size does not change results.
        for (i, t) in texts.iter().enumerate() {
            let alone = enc.embed_texts(std::slice::from_ref(t)).unwrap();
            let d = max_diff(
                &alone[0],
                &got[i].iter().map(|&x| x as f64).collect::<Vec<_>>(),
            );
            assert!(d < 1e-5, "{key} text {i}: batch vs single |Δ| = {d:e}");
        }
    }
}

#[test]
fn fused_cpu_kernels_equal_the_candle_op_path() {
    let r = reference();
    let texts = texts(&r);
    for pooling in [Pooling::Last, Pooling::Mean] {
        let mut enc = encoder(pooling);
        let fused = enc.embed_texts(&texts).unwrap();
        enc.set_fused_cpu_kernels(false);
        let plain = enc.embed_texts(&texts).unwrap();
        for (a, b) in fused.iter().zip(&plain) {
            let d = max_diff(a, &b.iter().map(|&x| x as f64).collect::<Vec<_>>());
            assert!(d < 1e-6, "{pooling:?}: fused vs candle ops |Δ| = {d:e}");
        }
    }
}

#[test]
fn matryoshka_dim_is_a_renormalised_prefix() {
    let r = reference();
    let texts = texts(&r);
    let full = encoder(Pooling::Last).embed_texts(&texts).unwrap();
    let cfg = EmbedConfig {
        model: MODEL.into(),
        max_length: 32,
        dim: Some(16),
        ..EmbedConfig::default()
    };
    let short = Encoder::load(&cfg).unwrap().embed_texts(&texts).unwrap();
    for (f, s) in full.iter().zip(&short) {
        assert_eq!(s.len(), 16);
        let n: f32 = f[..16].iter().map(|x| x * x).sum::<f32>().sqrt();
        for (a, b) in s.iter().zip(&f[..16]) {
            assert!((a - b / n).abs() < 1e-6);
        }
    }
}
