//! `sidtool report`: one self-contained HTML file (inline SVG charts, no network) that shows
//! one or more output directories side by side: code usage per level, collision group sizes
//! before and after resolution, prefix fan-out, reconstruction error by prefix length, the
//! RQ-VAE/GenSAR training curves, and the `sidtool eval` figures when an `eval.json` is
//! beside them.

mod charts;

use crate::error::{Error, Result};
use charts::Series;
use serde_json::Value;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The report's file name inside an output directory.
pub(crate) const REPORT_FILE: &str = "report.html";

/// What one run contributes: its name and the JSON artefacts found in its directory.
struct Run {
    name: String,
    stats: Value,
    quantizer: Option<Value>,
    eval: Option<Value>,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|cause| Error::Json {
        path: path.to_path_buf(),
        cause,
    })
}

impl Run {
    fn load(dir: &Path, name: String) -> Result<Run> {
        let stats_path = dir.join("stats.json");
        if !stats_path.is_file() {
            return Err(Error::input(
                dir,
                None,
                None,
                "has no stats.json: pass the output directory of `sidtool build`",
            ));
        }
        let optional = |p: PathBuf| -> Result<Option<Value>> {
            if p.is_file() {
                read_json(&p).map(Some)
            } else {
                Ok(None)
            }
        };
        Ok(Run {
            name,
            stats: read_json(&stats_path)?,
            quantizer: optional(dir.join("quantizer").join("config.json"))?,
            eval: optional(dir.join("eval.json"))?,
        })
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The charts of one statistics block (`sid` or `cid` of stats.json).
fn id_charts(title: &str, s: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let levels: Vec<&Value> = s["before"]["per_level"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if !levels.is_empty() {
        let labels: Vec<String> = levels
            .iter()
            // The level's number (as in stats.json) and its token letter.
            .map(|l| {
                format!(
                    "{} ({})",
                    l["level"].as_u64().unwrap_or(0),
                    l["letter"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let util: Vec<f64> = levels
            .iter()
            .map(|l| f(&l["utilisation"]).unwrap_or(0.0))
            .collect();
        let perp: Vec<f64> = levels
            .iter()
            .map(|l| {
                let k = f(&l["codebook_size"]).unwrap_or(1.0).max(1.0);
                f(&l["perplexity"]).unwrap_or(0.0) / k
            })
            .collect();
        out.push(charts::bars(
            &format!("{title}: code usage per level"),
            "share of the codebook",
            &labels,
            &[("codes used".into(), util), ("perplexity / K".into(), perp)],
        ));
    }
    let hist = |which: &str| -> Vec<(usize, f64)> {
        let mut v: Vec<(usize, f64)> = s[which]["group_size_histogram"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, f(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|x| x.0);
        v
    };
    let (before, after) = (hist("before"), hist("after"));
    if !before.is_empty() {
        let sizes: Vec<usize> = {
            let mut k: Vec<usize> = before.iter().chain(&after).map(|x| x.0).collect();
            k.sort_unstable();
            k.dedup();
            k
        };
        let count = |h: &[(usize, f64)], k: usize| h.iter().find(|x| x.0 == k).map_or(0.0, |x| x.1);
        out.push(charts::bars(
            &format!("{title}: IDs by items sharing them"),
            "IDs (log10(1 + n))",
            &sizes.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            &[
                (
                    "before resolution".into(),
                    sizes
                        .iter()
                        .map(|&k| (1.0 + count(&before, k)).log10())
                        .collect(),
                ),
                (
                    "after".into(),
                    sizes
                        .iter()
                        .map(|&k| (1.0 + count(&after, k)).log10())
                        .collect(),
                ),
            ],
        ));
    }
    let fan: Vec<(f64, f64, f64)> = s["before"]["prefix_fanout"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some((
                        f(&d["depth"])?,
                        f(&d["mean_children"])?,
                        f(&d["max_children"])?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if !fan.is_empty() {
        out.push(charts::lines(
            &format!("{title}: prefix fan-out"),
            "prefix length",
            "children per prefix",
            &[
                Series {
                    name: "mean".into(),
                    points: fan.iter().map(|x| (x.0, x.1)).collect(),
                },
                Series {
                    name: "max".into(),
                    points: fan.iter().map(|x| (x.0, x.2)).collect(),
                },
            ],
        ));
    }
    if let Some(err) = s["relative_reconstruction_error"].as_array() {
        let points: Vec<(f64, f64)> = err
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some(((i + 1) as f64, f(v)?)))
            .collect();
        out.push(charts::lines(
            &format!("{title}: reconstruction error"),
            "prefix length",
            "‖x − x̂‖² / ‖x‖²",
            &[Series {
                name: "relative error".into(),
                points,
            }],
        ));
    }
    out
}

/// Training curves from a saved RQ-VAE / GenSAR quantizer's evaluations.
fn training_charts(q: &Value) -> Vec<String> {
    let Some(evals) = q["evaluations"].as_array().filter(|e| !e.is_empty()) else {
        return Vec::new();
    };
    let epoch = |e: &Value| f(&e["epoch"]).unwrap_or(0.0);
    let mut out = vec![charts::lines(
        "training: loss and reconstruction",
        "epoch",
        "value",
        &[
            Series {
                name: "loss".into(),
                points: evals
                    .iter()
                    .filter_map(|e| Some((epoch(e), f(&e["loss"])?)))
                    .collect(),
            },
            Series {
                name: "recon MSE ×100".into(),
                points: evals
                    .iter()
                    .filter_map(|e| Some((epoch(e), 100.0 * f(&e["recon_mse"])?)))
                    .collect(),
            },
        ],
    )];
    let levels = evals[0]["utilisation"].as_array().map_or(0, |a| a.len());
    let series: Vec<Series> = (0..levels)
        .map(|l| Series {
            name: format!("level {}", l + 1),
            points: evals
                .iter()
                .filter_map(|e| Some((epoch(e), f(&e["utilisation"][l])?)))
                .collect(),
        })
        .collect();
    out.push(charts::lines(
        "training: codebook utilisation",
        "epoch",
        "codes used / K",
        &series,
    ));
    out
}

/// The headline `sidtool eval` figures, as an HTML table.
fn eval_table(e: &Value) -> String {
    let Some(e) = e.as_array().and_then(|a| a.first()) else {
        return String::new();
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    let num = |v: &Value| v.as_f64().map(|x| format!("{x:.4}"));
    let b = &e["t0"]["buckets"];
    for (k, label) in [
        ("unique_item_rate", "unique-item rate"),
        ("gini", "Gini of items per ID"),
        ("entropy_ratio", "entropy ratio"),
    ] {
        if let Some(v) = num(&b[k]) {
            rows.push((label.into(), v));
        }
    }
    for (key, label) in [
        ("co_consumption", "co-consumption lift"),
        ("category", "category lift"),
    ] {
        if let Some(a) = e["t0"][key].as_array() {
            for p in a {
                if let (Some(l), Some(v)) = (p["prefix_len"].as_u64(), num(&p["lift"])) {
                    rows.push((format!("{label}, prefix {l}"), v));
                }
            }
        }
    }
    for model in ["sid", "item_markov", "popularity"] {
        for m in ["recall@10", "ndcg@10"] {
            if let Some(v) = num(&e["t1"][model][m]) {
                rows.push((format!("next item {model} {m}"), v));
            }
        }
    }
    for m in ["recall@10", "ndcg@10"] {
        if let Some(v) = num(&e["t2"]["sid"][m]) {
            rows.push((format!("next item, T2 transformer {m}"), v));
        }
    }
    // With --cold-items: the new items, beside the floor of a uniform guess among them.
    for (tier, label) in [("t1", "IDs"), ("t2", "T2 transformer")] {
        if let Some(v) = num(&e[tier]["cold"]["sid"]["recall@10"]) {
            rows.push((format!("new items, {label} recall@10"), v));
        }
    }
    if let Some(v) = num(&e["t1"]["cold"]["content"]["recall@10"]) {
        rows.push(("new items, content baseline recall@10".into(), v));
    }
    let floor = [&e["t1"]["cold"], &e["t2"]["cold"]]
        .into_iter()
        .find_map(|c| num(&c["uniform"]["recall@10"]));
    if let Some(v) = floor {
        rows.push(("new items, uniform guess recall@10".into(), v));
    }
    let mut t = String::from("<table><tr><th>measure</th><th>value</th></tr>");
    for (k, v) in rows {
        let _ = write!(t, "<tr><td>{}</td><td>{v}</td></tr>", esc(&k));
    }
    t + "</table>"
}

/// A run's title: its directory's name.
fn title(dir: &Path) -> String {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Render the report of the output directories `dirs` (one column each, titled by the
/// directory's name).
pub fn render(dirs: &[PathBuf]) -> Result<String> {
    let named: Vec<(String, &Path)> = dirs.iter().map(|d| (title(d), d.as_path())).collect();
    render_named(&named)
}

/// [`render`] with the titles given: `build` renders its staging directory under the name of
/// the output it becomes.
pub(crate) fn render_named(runs: &[(String, &Path)]) -> Result<String> {
    let runs = runs
        .iter()
        .map(|(name, d)| Run::load(d, name.clone()))
        .collect::<Result<Vec<_>>>()?;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>sidtool report</title><style>\
         body{font-family:sans-serif;margin:16px;color:#222}\
         .runs{display:flex;gap:24px;align-items:flex-start}\
         .run{flex:0 0 auto}\
         .run h2{font-size:16px;margin:4px 0}\
         .run p{margin:2px 0;font-size:13px;color:#555}\
         svg{display:block;margin:6px 0;border:1px solid #eee}\
         table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px}\
         </style></head><body><h1>sidtool report</h1><div class=\"runs\">",
    );
    for r in &runs {
        let s = &r.stats;
        let _ = write!(
            html,
            "<div class=\"run\"><h2>{}</h2><p>method {}, dedup {}, codebooks {}, {} items</p>",
            esc(&r.name),
            esc(s["method"].as_str().unwrap_or("?")),
            esc(s["dedup"].as_str().unwrap_or("?")),
            esc(&s["codebook_sizes"].to_string()),
            s["before"]["n_items"].as_u64().unwrap_or(0)
        );
        let mut charts = id_charts("SID", s);
        if s["cid"].is_object() {
            charts.extend(id_charts("CID", &s["cid"]));
        }
        if let Some(q) = &r.quantizer {
            charts.extend(training_charts(q));
        }
        for c in charts {
            html.push_str(&c);
        }
        if let Some(e) = &r.eval {
            html.push_str("<h2>eval</h2>");
            html.push_str(&eval_table(e));
        }
        html.push_str("</div>");
    }
    html.push_str("</div></body></html>\n");
    Ok(html)
}

/// [`render`], written atomically to `out`.
pub fn write(dirs: &[PathBuf], out: &Path) -> Result<()> {
    crate::fs::atomic::write_file(out, render(dirs)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_table_shows_t2_when_the_eval_json_has_it() {
        let e = serde_json::json!([{
            "t0": {"buckets": {"gini": 0.0}},
            "t1": {"sid": {"recall@10": 0.25}},
            "t2": {"sid": {"recall@10": 0.125, "ndcg@10": 0.0625}},
        }]);
        let html = eval_table(&e);
        assert!(
            html.contains("next item sid recall@10</td><td>0.2500"),
            "{html}"
        );
        assert!(
            html.contains("T2 transformer recall@10</td><td>0.1250")
                && html.contains("T2 transformer ndcg@10</td><td>0.0625"),
            "{html}"
        );
        let without = serde_json::json!([{"t0": {}, "t1": {"sid": {"recall@10": 0.25}}}]);
        assert!(!eval_table(&without).contains("T2"));
        assert!(!eval_table(&without).contains("new items"));
        let cold = serde_json::json!([{
            "t0": {},
            "t2": {"sid": {"recall@10": 0.125},
                   "cold": {"sid": {"recall@10": 0.5}, "uniform": {"recall@10": 0.25}}},
        }]);
        let html = eval_table(&cold);
        assert!(
            html.contains("new items, T2 transformer recall@10</td><td>0.5000")
                && html.contains("new items, uniform guess recall@10</td><td>0.2500"),
            "{html}"
        );
    }
}
