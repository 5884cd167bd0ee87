//! `compute` end to end on planted interaction files.

use super::*;
use crate::progress::Silent;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// `groups` taste groups of `per_group` items (ids "g{group}-{k}"); each user browses its
/// group's items, with probability `noise` any item instead; plus `idle` catalogue items
/// nobody touches ("idle-{k}") and interactions with ids not in the catalogue.
struct Planted {
    items: ItemIds,
    group: Vec<Option<usize>>,
    file: tempfile::TempDir,
}

fn planted(groups: usize, per_group: usize, users: usize, idle: usize, noise: f64) -> Planted {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut ids = Vec::new();
    let mut group = Vec::new();
    for g in 0..groups {
        for k in 0..per_group {
            ids.push(format!("g{g}-{k}"));
            group.push(Some(g));
        }
    }
    for k in 0..idle {
        // Interleaved with the active items, so zero rows are not just a tail.
        let at = rng.random_range(0..=ids.len());
        ids.insert(at, format!("idle-{k}"));
        group.insert(at, None);
    }
    let (mut u, mut it, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for user in 0..users {
        let g = user % groups;
        for t in 0..20 {
            let item = if rng.random::<f64>() < noise {
                format!(
                    "g{}-{}",
                    rng.random_range(0..groups),
                    rng.random_range(0..per_group)
                )
            } else {
                format!("g{g}-{}", rng.random_range(0..per_group))
            };
            u.push(format!("user{user}"));
            it.push(item);
            // Shuffled file order; the timestamp restores the history.
            ts.push((t * 7919 + user * 13) as i64 % 1000);
        }
        u.push(format!("user{user}"));
        it.push("not-in-catalogue".into());
        ts.push(0);
    }
    let file = tempfile::tempdir().unwrap();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(StringArray::from(u))),
        ("item_id", Arc::new(StringArray::from(it))),
        ("timestamp", Arc::new(Int64Array::from(ts))),
    ];
    write_parquet(&file.path().join("interactions.parquet"), cols);
    Planted {
        items: ItemIds::Str(ids),
        group,
        file,
    }
}

fn write_parquet(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|c| c.1).collect()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

impl Planted {
    fn path(&self) -> std::path::PathBuf {
        self.file.path().join("interactions.parquet")
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum()
}

#[test]
fn planted_groups_are_recovered_and_idle_items_are_zero() {
    let p = planted(4, 30, 200, 6, 0.1);
    let cfg = CollabConfig {
        dim: 16,
        ..CollabConfig::default()
    };
    let c = compute(&p.path(), &p.items, &cfg, 7, &Silent).unwrap();
    assert_eq!((c.vectors.rows, c.vectors.cols), (126, 16));
    assert_eq!(c.without_interactions, 6);
    assert_eq!(c.unknown_events, 200);
    assert_eq!(c.events, 200 * 21);
    assert_eq!(c.users, 200);
    assert!(
        c.nonzeros > 0 && c.nonzeros.is_multiple_of(2),
        "symmetric: {}",
        c.nonzeros
    );
    let (mut within, mut across) = ((0.0, 0), (0.0, 0));
    for i in 0..126 {
        let v = c.vectors.row(i);
        let norm = cosine(v, v);
        match p.group[i] {
            None => assert!(v.iter().all(|&x| x == 0.0), "idle item {i} must be zero"),
            Some(gi) => {
                assert!((norm - 1.0).abs() < 1e-5, "row {i} is unit length: {norm}");
                for j in 0..i {
                    let Some(gj) = p.group[j] else { continue };
                    let s = cosine(v, c.vectors.row(j));
                    let acc = if gi == gj { &mut within } else { &mut across };
                    acc.0 += s;
                    acc.1 += 1;
                }
            }
        }
    }
    let (w, a) = (within.0 / within.1 as f64, across.0 / across.1 as f64);
    assert!(
        w - a >= 0.3,
        "mean cosine within groups {w:.3} vs across {a:.3}"
    );
    let s = c.summary(1.0);
    assert_eq!((s.items, s.rank, s.dim), (126, 16, 16));
}

#[test]
fn small_catalogues_get_zero_padded_vectors() {
    // Two items that co-occur: PPMI [[0, v], [v, 0]] has two directions; ask for 8.
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("i.parquet");
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("user_id", Arc::new(Int64Array::from(vec![1, 1, 2, 2]))),
        ("item_id", Arc::new(Int64Array::from(vec![10, 20, 20, 10]))),
    ];
    write_parquet(&path, cols);
    let items = ItemIds::Int(vec![10, 20, 30]);
    let cfg = CollabConfig {
        dim: 8,
        ..CollabConfig::default()
    };
    let c = compute(&path, &items, &cfg, 1, &Silent).unwrap();
    assert_eq!(c.without_interactions, 1);
    assert_eq!(c.nonzeros, 2);
    assert_eq!(c.summary(0.0).rank, 2);
    for i in 0..2 {
        let v = c.vectors.row(i);
        assert!(v[2..].iter().all(|&x| x == 0.0));
        assert!((cosine(v, v) - 1.0).abs() < 1e-6);
    }
    assert!(c.vectors.row(2).iter().all(|&x| x == 0.0));

    // No co-occurrence at all: a clear error, with a hint when the id kinds differ.
    let strs = ItemIds::Str(vec!["10".into(), "20".into()]);
    let e = compute(&path, &strs, &cfg, 1, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("i.parquet") && e.contains("no two different catalogue items"),
        "{e}"
    );
    assert!(
        e.contains("4 name items not in the catalogue") && e.contains("Int64"),
        "{e}"
    );
}

#[test]
fn same_seed_same_bits_on_one_or_two_threads() {
    // Thousands of items and users, so the work splits into many blocks.
    let p = planted(8, 400, 2000, 50, 0.2);
    let cfg = CollabConfig {
        dim: 12,
        ..CollabConfig::default()
    };
    let run = |threads: usize, seed: u64| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| compute(&p.path(), &p.items, &cfg, seed, &Silent).unwrap())
    };
    let one = run(1, 5);
    assert_eq!(one.vectors.data, run(2, 5).vectors.data);
    assert_eq!(one.vectors.data, run(2, 5).vectors.data, "and again");
    assert_ne!(one.vectors.data, run(1, 6).vectors.data, "the seed is used");
}
