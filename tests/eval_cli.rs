//! `sidtool eval` end to end: a sidtool table and a foreign table of random codes (another
//! tool's format: a List<Int64> codes column, no footer) scored side by side on the shipped
//! catalogue, with synthetic interactions in which users stay inside one category.

mod common;

use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, StringArray};
use common::*;
use std::path::Path;
use std::sync::Arc;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (item ids, categories) of the shipped catalogue.
fn catalogue() -> (Vec<String>, Vec<String>) {
    let f = std::fs::File::open(testdata("items.parquet")).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let (mut ids, mut cats) = (Vec::new(), Vec::new());
    for b in r {
        let b = b.unwrap();
        let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (i, c) = (col("item_id"), col("category"));
        for k in 0..b.num_rows() {
            ids.push(i.value(k).to_string());
            cats.push(c.value(k).to_string());
        }
    }
    (ids, cats)
}

/// A small deterministic generator (no dependency on rand's stream in tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A sidtool table built from the shipped catalogue, a foreign table of random codes in the
/// same code space, and interactions in which each user stays inside one category.
struct Fixture {
    sids: std::path::PathBuf,
    random: std::path::PathBuf,
    interactions: std::path::PathBuf,
}

fn fixture(dir: &Path) -> Fixture {
    let out = dir.join("out");
    ok(&[
        "build",
        s(&testdata("items.parquet")),
        "--config",
        s(&testdata("sidtool.toml")),
        "--out",
        s(&out),
        "-q",
    ]);
    let (ids, cats) = catalogue();
    let mut rng = Lcg(7);
    // 300 users, each consuming 12 items of one category in order.
    let (mut users, mut items, mut times) = (Vec::new(), Vec::new(), Vec::new());
    let names: Vec<&String> = {
        let mut v: Vec<&String> = cats.iter().collect();
        v.sort();
        v.dedup();
        v
    };
    for u in 0..300 {
        let c = names[u % names.len()];
        let pool: Vec<usize> = (0..ids.len()).filter(|&i| &cats[i] == c).collect();
        for k in 0..12 {
            users.push(format!("u{u}"));
            items.push(ids[pool[rng.next(pool.len())]].clone());
            times.push((u * 100 + k) as i64);
        }
    }
    let interactions = dir.join("interactions.parquet");
    write_interactions(&interactions, users, items, Some(times));
    // Random codes in the same code space (32, 16, 16), written as another tool would.
    let mut codes = ListBuilder::new(Int64Builder::new());
    for _ in 0..ids.len() {
        for k in [32, 16, 16] {
            codes.values().append_value(rng.next(k) as i64);
        }
        codes.append(true);
    }
    let random = dir.join("random.parquet");
    write_batch(
        &random,
        vec![
            (
                "item_id",
                Arc::new(StringArray::from(ids.clone())) as ArrayRef,
            ),
            ("codes", Arc::new(codes.finish()) as ArrayRef),
        ],
    );
    Fixture {
        sids: out.join("sids.parquet"),
        random,
        interactions,
    }
}

#[test]
fn real_ids_score_above_random_codes_and_foreign_tables_are_read() {
    let t = tempfile::tempdir().unwrap();
    let Fixture {
        sids,
        random,
        interactions: inter,
    } = fixture(t.path());
    let json = t.path().join("eval.json");
    let o = sidtool(&[
        "eval",
        s(&sids),
        s(&random),
        "--interactions",
        s(&inter),
        "--items",
        s(&testdata("items.parquet")),
        "--category-column",
        "category",
        "--embeddings",
        s(&testdata("items.parquet")),
        // Tier 2 at a budget of seconds: 30 passes over 300 windows of 10 items.
        "--t2",
        "--t2-epochs",
        "30",
        "--t2-dim",
        "64",
        "--t2-batch-size",
        "32",
        "--out",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The side-by-side table goes to stdout, for pipelines.
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(
        table.contains("next item, item Markov recall@10"),
        "{table}"
    );
    let e = read_json(&json);
    let (real, rand) = (&e[0], &e[1]);
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    // The shipped data has 8 categories: sharing a first code means sharing a category.
    let cat = |x: &serde_json::Value| f(&x["t0"]["category"][0]["lift"]);
    assert!(
        cat(real) > 5.0 && cat(rand) < 1.5,
        "{} {}",
        cat(real),
        cat(rand)
    );
    let co = |x: &serde_json::Value| f(&x["t0"]["co_consumption"][0]["lift"]);
    assert!(
        co(real) > 3.0 && co(rand) < 1.5,
        "{} {}",
        co(real),
        co(rand)
    );
    let knn = |x: &serde_json::Value| f(&x["t0"]["neighbours"]["share"][0]);
    assert!(
        knn(real) > 0.8 && knn(rand) < 0.2,
        "{} {}",
        knn(real),
        knn(rand)
    );
    let r10 = |x: &serde_json::Value, m: &str| f(&x["t1"][m]["recall@10"]);
    assert!(
        r10(real, "sid") > r10(rand, "sid") + 0.05,
        "real {} random {}",
        r10(real, "sid"),
        r10(rand, "sid")
    );
    // Knowing only the previous item's first code, real IDs still point at its category.
    let m1 = |x: &serde_json::Value| f(&x["t1"]["by_context"][1]["recall@10"]);
    assert!(m1(real) > m1(rand) + 0.05, "{} {}", m1(real), m1(rand));
    // The baselines do not depend on the codes.
    assert_eq!(r10(real, "item_markov"), r10(rand, "item_markov"));
    assert!(r10(real, "sid") > r10(real, "popularity"));
    assert_eq!(
        real["t0"]["levels"][0]["codebook_size"], 32,
        "sidtool's footer gives K"
    );
    assert!(rand["t0"]["levels"][0].get("codebook_size").is_none());
    assert_eq!(real["t1"]["users"], 300);

    // Tier 2: the next item is any item of the user's category. With real IDs the transformer
    // learns that the first code follows the category (about 10 of 50 candidates in the top
    // 10); with random codes a category's items are scattered over the trie and it must
    // memorise them; popularity knows nothing of the user (10 of 400).
    assert!(
        table.contains("next item, T2 transformer recall@10"),
        "{table}"
    );
    let t2 = |x: &serde_json::Value| f(&x["t2"]["sid"]["recall@10"]);
    eprintln!(
        "T2 recall@10: real {} random {}, popularity {}",
        t2(real),
        t2(rand),
        r10(real, "popularity")
    );
    assert!(
        t2(real) > 2.0 * r10(real, "popularity") + 0.05,
        "{}",
        t2(real)
    );
    assert!(t2(real) > t2(rand) + 0.05, "{} {}", t2(real), t2(rand));
    assert_eq!(real["t2"]["users"], 300);
    assert!(f(&real["t2"]["train_loss"]) < f(&real["t2"]["first_loss"]));
    assert_eq!(real["t2"]["config"]["epochs"], 30);
}

#[test]
fn new_items_are_placed_by_their_prefixes_and_random_codes_stay_at_the_floor() {
    let t = tempfile::tempdir().unwrap();
    let fx = fixture(t.path());
    let json = t.path().join("eval.json");
    let o = sidtool(&[
        "eval",
        s(&fx.sids),
        s(&fx.random),
        "--interactions",
        s(&fx.interactions),
        "--cold-items",
        "0.25",
        "--embeddings",
        s(&testdata("items.parquet")),
        "--t2",
        "--t2-epochs",
        "10",
        "--t2-dim",
        "64",
        "--t2-batch-size",
        "32",
        "--out",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(table.contains("new items, IDs recall@10"), "{table}");
    assert!(
        table.contains("new items, uniform guess recall@10"),
        "{table}"
    );
    let e = read_json(&json);
    let (real, rand) = (&e[0], &e[1]);
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    for tier in ["t1", "t2"] {
        let (a, b) = (&real[tier]["cold"], &rand[tier]["cold"]);
        // The same items are new in both tables: the draw depends on the ids and the seed.
        assert_eq!(a["new_items"], b["new_items"]);
        assert_eq!(a["users"], b["users"]);
        let items = a["new_items"].as_u64().unwrap() as f64;
        assert!((80.0..120.0).contains(&items), "{items} of 400 new");
        assert!((f(&a["uniform"]["recall@10"]) - 10.0 / items).abs() < 1e-12);
        // A user's next new item is in the user's category, which real IDs' first code
        // names (about 12 new items a category); random codes give nothing to go on.
        let (r, q) = (f(&a["sid"]["recall@10"]), f(&b["sid"]["recall@10"]));
        eprintln!(
            "{tier} new items recall@10: real {r} random {q} uniform {}",
            10.0 / items
        );
        assert!(r > 0.4, "{tier}: {r}");
        assert!(q < 3.0 * 10.0 / items, "{tier}: {q}");
    }
    // The content baseline (the item vectors alone) sees the category too, whatever the codes.
    let content = |x: &serde_json::Value| f(&x["t1"]["cold"]["content"]["recall@10"]);
    assert_eq!(content(real), content(rand));
    assert!(content(real) > 0.4, "{}", content(real));
    assert!(e[0]["t2"]["cold"].get("content").is_none(), "tier 1 only");
    let err = fails(&[
        "eval",
        s(&fx.sids),
        "--interactions",
        s(&fx.interactions),
        "--cold-items",
        "1.5",
    ]);
    assert!(err.contains("between 0 and 1"), "{err}");

    // `holdout` drops exactly the rows of the items eval holds out: scored against its file,
    // no user has a new item left, and every other row and column is kept.
    let warm = t.path().join("warm.parquet");
    ok(&[
        "holdout",
        s(&fx.interactions),
        "--cold-items",
        "0.25",
        "--out",
        s(&warm),
        "-q",
    ]);
    let err = fails(&[
        "eval",
        s(&fx.sids),
        "--interactions",
        s(&warm),
        "--cold-items",
        "0.25",
    ]);
    assert!(err.contains("no user has one after a warm item"), "{err}");
    // Every row of a removed item is gone, every other row is kept, and what is removed is
    // what eval draws as new (those of the new items that anyone interacted with).
    let item_ids = |p: &Path| -> Vec<String> {
        let f = std::fs::File::open(p).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        r.flat_map(|b| {
            let b = b.unwrap();
            let c = b
                .column_by_name("item_id")
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..b.num_rows())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
    };
    let count = |ids: &[String]| {
        let mut m = std::collections::BTreeMap::<String, usize>::new();
        for i in ids {
            *m.entry(i.clone()).or_default() += 1;
        }
        m
    };
    let (all, kept) = (count(&item_ids(&fx.interactions)), count(&item_ids(&warm)));
    for (id, n) in &kept {
        assert_eq!(all[id], *n, "{id}: every row of a kept item is kept");
    }
    let removed = all.len() - kept.len();
    let new_items = e[0]["t1"]["cold"]["new_items"].as_u64().unwrap() as usize;
    assert!(
        removed <= new_items && removed * 10 >= new_items * 9,
        "{removed} removed, {new_items} new"
    );
    assert!(!kept.is_empty());
    let schema = |p: &Path| {
        let f = std::fs::File::open(p).unwrap();
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(schema(&warm), schema(&fx.interactions), "every column kept");
    // The input is never the output, and a file without user ids is not interactions.
    let before = std::fs::read(&fx.interactions).unwrap();
    let err = fails(&[
        "holdout",
        s(&fx.interactions),
        "--cold-items",
        "0.25",
        "--out",
        s(&fx.interactions),
    ]);
    assert!(err.contains("input"), "{err}");
    assert_eq!(std::fs::read(&fx.interactions).unwrap(), before);
    let err = fails(&[
        "holdout",
        s(&testdata("items.parquet")),
        "--cold-items",
        "0.25",
        "--out",
        s(&t.path().join("x.parquet")),
    ]);
    assert!(
        err.contains("user_id") && err.contains("no such column"),
        "{err}"
    );
    assert!(!t.path().join("x.parquet").exists());
    // Another seed draws other items.
    let other = t.path().join("warm2.parquet");
    ok(&[
        "--seed",
        "5",
        "holdout",
        s(&fx.interactions),
        "--cold-items",
        "0.25",
        "--out",
        s(&other),
        "-q",
    ]);
    assert_ne!(count(&item_ids(&other)), kept, "another seed, another draw");
}

#[test]
fn t2_needs_interactions_and_a_device_this_binary_has() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    build_small(&out);
    let sids = out.join("sids.parquet");
    let o = sidtool(&["eval", s(&sids), "--t2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--interactions"),
        "{err}"
    );
    let (ids, _) = catalogue();
    let inter = t.path().join("interactions.parquet");
    let users: Vec<String> = (0..40).map(|k| format!("u{}", k / 8)).collect();
    let items: Vec<String> = (0..40).map(|k| ids[k].clone()).collect();
    write_interactions(&inter, users, items, None);
    let err = fails(&[
        "eval",
        s(&sids),
        "--interactions",
        s(&inter),
        "--t2",
        "--t2-beam",
        "5",
    ]);
    assert!(err.contains("beam 5"), "{err}");
    if !cfg!(feature = "cuda") {
        let err = fails(&[
            "eval",
            s(&sids),
            "--interactions",
            s(&inter),
            "--t2",
            "--device",
            "cuda",
        ]);
        assert!(err.contains("--features cuda"), "{err}");
    }
}

#[test]
fn ragged_or_missing_codes_are_refused_with_the_row() {
    let t = tempfile::tempdir().unwrap();
    let mut codes = ListBuilder::new(Int64Builder::new());
    for (i, n) in [3, 3, 2].into_iter().enumerate() {
        for k in 0..n {
            codes.values().append_value((i + k) as i64);
        }
        codes.append(true);
    }
    let p = t.path().join("ragged.parquet");
    write_batch(
        &p,
        vec![
            ("item_id", str_ids(3)),
            ("codes", Arc::new(codes.finish()) as ArrayRef),
        ],
    );
    let err = fails(&["eval", s(&p)]);
    assert!(
        err.contains("row 2") && err.contains("2 codes where earlier rows have 3"),
        "{err}"
    );
    // eval.json is never written over an input.
    let before = std::fs::read(&p).unwrap();
    let err = fails(&["eval", s(&p), "--out", s(&p)]);
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let err = fails(&["eval", s(&p), "--codes-column", "sid"]);
    assert!(
        err.contains("sid") && err.contains("no such column"),
        "{err}"
    );
}
