//! Enum ↔ string through serde: an enum's one spelling is its serde name, the one config
//! files, `sids.parquet` footers and `stats.json` use, so no hand-written table can drift from it.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The serde name of a unit variant (`Method::RqKmeans` → `"rq-kmeans"`).
pub fn name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        // Only unit variants of string-named enums are passed here.
        other => unreachable!("not a unit variant: {other:?}"),
    }
}

/// The variant whose serde name is `s`.
pub fn parse<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Dedup, Method, PrefixMasking, TokenSet};

    #[test]
    fn names_are_the_artefact_spellings() {
        assert_eq!(name(&Method::RqKmeans), "rq-kmeans");
        assert_eq!(name(&Method::RqVae), "rq-vae");
        assert_eq!(name(&Method::Gensar), "gensar");
        assert_eq!(name(&Dedup::Suffix), "suffix");
        assert_eq!(name(&Dedup::Reassign), "reassign");
        assert_eq!(name(&Dedup::None), "none");
        assert_eq!(name(&PrefixMasking::Uniform), "uniform");
        assert_eq!(name(&TokenSet::Used), "used");
        for d in [Dedup::Suffix, Dedup::Reassign, Dedup::None] {
            assert_eq!(parse::<Dedup>(&name(&d)), Some(d));
        }
        assert_eq!(parse::<Dedup>("Suffix"), None);
        assert_eq!(parse::<Method>("rq_kmeans"), None);
    }
}
