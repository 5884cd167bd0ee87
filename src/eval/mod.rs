//! How good are a table's IDs for a generative recommender? Scores any code table (sidtool's
//! or another tool's): tier 0 measures the codes themselves
//! ([`t0`]), tier 1 predicts each user's next item from ID-prefix transition counts decoded
//! through the trie ([`t1`]), and tier 2, on request, trains a small generative recommender on
//! the IDs and decodes it with a constrained beam search ([`t2`]). See docs/methods.md §9.

pub mod cold;
pub mod t0;
pub mod t1;
pub mod t2;
pub mod table;
mod trie;

pub use table::CodeTable;

use crate::error::Result;
use crate::item_id::IdIndex;
use serde::Serialize;
use std::path::Path;

/// Everything evaluated for one table.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub table: String,
    pub t0: t0::T0,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t1: Option<t1::T1>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t2: Option<t2::T2>,
}

/// Per user (dense index), the table rows of the items they consumed, ordered by time (file
/// order among equal times); interactions with items the table does not list are skipped.
pub(crate) fn histories(interactions: &Path, t: &CodeTable) -> Result<Vec<Vec<u32>>> {
    let index = IdIndex::new(&t.ids);
    let inter = crate::io::interactions::read(interactions, &index)?;
    let mut by_user: Vec<Vec<(i64, usize, u32)>> = vec![Vec::new(); inter.users as usize];
    for (k, e) in inter.events.iter().enumerate() {
        by_user[e.user as usize].push((e.time, k, e.item));
    }
    Ok(by_user
        .into_iter()
        .map(|mut v| {
            v.sort_unstable();
            v.into_iter().map(|(_, _, i)| i).collect()
        })
        .collect())
}

/// What to evaluate a table with (`sidtool eval`).
#[derive(Debug, Clone)]
pub struct Options {
    /// Item id column of every file.
    pub id_column: String,
    /// The codes column of the tables: a list of integers per item.
    pub codes_column: String,
    /// user_id, item_id, optional timestamp: co-consumption (T0) and next-item (T1).
    pub interactions: Option<std::path::PathBuf>,
    /// A catalogue with `category_column`: category coherence (T0).
    pub items: Option<std::path::PathBuf>,
    pub category_column: Option<String>,
    /// Item vectors (`embedding` column): embedding-neighbour agreement (T0).
    pub embeddings: Option<std::path::PathBuf>,
    pub embedding_column: String,
    /// Skip tier 1 even with interactions.
    pub no_t1: bool,
    /// Train and score tier 2 (needs interactions; minutes).
    pub t2: Option<t2::Config>,
    /// Hold this share of the items out of training as new items and rank each user's next
    /// new item among them (T1 and T2; [`cold`]).
    pub cold_items: Option<f64>,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            id_column: "item_id".into(),
            codes_column: "codes".into(),
            interactions: None,
            items: None,
            category_column: None,
            embeddings: None,
            embedding_column: "embedding".into(),
            no_t1: false,
            t2: None,
            cold_items: None,
            seed: crate::config::DEFAULT_SEED,
        }
    }
}

/// Refuse `out` (eval.json) when it is, or lies inside, one of the files an evaluation with
/// `o` of `tables` reads.
pub fn check_output(out: &Path, tables: &[std::path::PathBuf], o: &Options) -> Result<()> {
    let inputs: Vec<&Path> = tables
        .iter()
        .map(|t| t.as_path())
        .chain(o.interactions.as_deref())
        .chain(o.items.as_deref())
        .chain(o.embeddings.as_deref())
        .collect();
    crate::fs::inputs::check_output(out, crate::fs::inputs::OutputKind::File, &inputs)
}

/// Evaluate one code table.
pub fn evaluate(table: &Path, o: &Options) -> Result<Evaluation> {
    evaluate_with_progress(table, o, &crate::progress::Silent)
}

/// [`evaluate`], reporting the progress of tier 2's training and decoding.
pub fn evaluate_with_progress(
    table: &Path,
    o: &Options,
    progress: &dyn crate::progress::Progress,
) -> Result<Evaluation> {
    if let Some(c) = &o.t2 {
        // Refused before the minutes of T0 and T1, not after them.
        c.validate()?;
        crate::device::open(c.device)?;
        if o.interactions.is_none() {
            return Err(crate::error::Error::Config(
                "t2 needs --interactions".into(),
            ));
        }
    }
    if let Some(share) = o.cold_items {
        cold::validate(share)?;
        if o.interactions.is_none() || (o.no_t1 && o.t2.is_none()) {
            return Err(crate::error::Error::Config(
                "--cold-items needs --interactions and a next-item tier (not --no-next-item \
                 without --t2)"
                    .into(),
            ));
        }
    }
    let t = CodeTable::read(table, &o.id_column, &o.codes_column)?;
    let histories = o
        .interactions
        .as_deref()
        .map(|p| histories(p, &t))
        .transpose()?;
    let categories = match (&o.items, &o.category_column) {
        (Some(items), Some(col)) => Some(categories(items, &o.id_column, col, &t)?),
        _ => None,
    };
    let embeddings = o
        .embeddings
        .as_deref()
        .map(|p| embeddings(p, &o.id_column, &o.embedding_column, &t))
        .transpose()?;
    let side = t0::Side {
        histories: histories.as_deref(),
        categories: categories.as_deref(),
        embeddings: embeddings.as_ref(),
        seed: o.seed,
    };
    // The next-item tiers must never train on a new item, nor on a query's aftermath.
    let cold = match (&histories, o.cold_items) {
        (Some(h), Some(share)) => Some(cold::Cold::split(&t, h, share, o.seed)?),
        _ => None,
    };
    let next = cold.as_ref().map(|c| &c.warm).or(histories.as_ref());
    Ok(Evaluation {
        table: table.display().to_string(),
        t0: t0::evaluate(&t, &side),
        t1: match (next, o.no_t1) {
            (Some(h), false) => {
                let mut t1 = t1::evaluate(&t, h, cold.as_ref());
                if let (Some(c), Some(tc), Some(v)) = (&cold, t1.cold.as_mut(), &embeddings) {
                    tc.content = Some(t1::expected_ranking(&cold::content_ranks(c, v)));
                }
                Some(t1)
            }
            _ => None,
        },
        t2: match (next, &o.t2) {
            (Some(h), Some(c)) => Some(t2::evaluate(&t, h, cold.as_ref(), c, o.seed, progress)?),
            _ => None,
        },
    })
}

/// Per table row, the item's value of `column` (its string form; null or absent: None).
fn categories(
    items: &Path,
    id_column: &str,
    column: &str,
    t: &CodeTable,
) -> Result<Vec<Option<String>>> {
    use crate::error::Error;
    let builder = crate::io::embeddings::open_parquet(items)?;
    let schema = builder.schema().clone();
    crate::item_id::id_column_index(&schema, items, id_column)?;
    if schema.column_with_name(column).is_none() {
        return Err(Error::input(
            items,
            Some(column),
            None,
            "no such column (the category column)",
        ));
    }
    let index = IdIndex::new(&t.ids);
    let mut out = vec![None; t.len()];
    let mut first_row = 0u64;
    for b in builder.reader(None, None)? {
        let b = b.map_err(|e| Error::arrow(items, e))?;
        let ids = crate::item_id::ItemIds::from_column(
            b.column_by_name(id_column).expect("checked").as_ref(),
            items,
            id_column,
            first_row,
        )?;
        let col = arrow_cast::cast(
            b.column_by_name(column).expect("checked"),
            &arrow_schema::DataType::Utf8,
        )
        .map_err(|e| {
            Error::input(
                items,
                Some(column),
                None,
                format!("cannot be read as text: {e}"),
            )
        })?;
        let col = arrow_array::cast::AsArray::as_string::<i32>(&col);
        for i in 0..ids.len() {
            if let Some(r) = index.get(ids.key(i))
                && arrow_array::Array::is_valid(col, i)
            {
                out[r as usize] = Some(col.value(i).to_string());
            }
        }
        first_row += b.num_rows() as u64;
    }
    Ok(out)
}

/// Per table row, the item's vector; every item of the table needs one.
fn embeddings(
    path: &Path,
    id_column: &str,
    column: &str,
    t: &CodeTable,
) -> Result<crate::matrix::Matrix> {
    use crate::error::Error;
    let index = IdIndex::new(&t.ids);
    let reader = crate::io::embeddings::EmbeddingReader::open(
        path,
        id_column,
        column,
        crate::io::input::DEFAULT_BATCH_ROWS,
    )?;
    let mut rows: Vec<Option<Vec<f32>>> = vec![None; t.len()];
    for b in reader {
        let b = b?;
        for i in 0..b.ids.len() {
            if let Some(r) = index.get(b.ids.key(i)) {
                rows[r as usize] = Some(b.vectors.row(i).to_vec());
            }
        }
    }
    let dim = rows.iter().flatten().map(|r| r.len()).next().unwrap_or(0);
    let mut data = Vec::with_capacity(t.len() * dim);
    for (i, r) in rows.into_iter().enumerate() {
        let r = r.ok_or_else(|| {
            Error::input(
                path,
                Some(id_column),
                None,
                format!(
                    "has no vector for item {} of {}",
                    t.ids.display(i),
                    t.path.display()
                ),
            )
        })?;
        data.extend(r);
    }
    Ok(crate::matrix::Matrix::new(data, t.len(), dim))
}
