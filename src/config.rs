//! The whole configuration: one section per stage, each owned (type, defaults and
//! `validate()`) by its stage module; this file only aggregates them, reads the TOML file
//! (`--config sidtool.toml`) and runs every section's validation before any heavy work, so a
//! bad value fails in milliseconds, not after training.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::collab::config::CollabConfig;
pub use crate::embed::config::EmbedConfig;
pub use crate::ids::config::{Dedup, IdsConfig};
pub use crate::io::input::{DEFAULT_BATCH_ROWS, InputConfig};
pub use crate::io::parquet_out::ROW_GROUP_ROWS;
pub use crate::quant::config::{
    DEFAULT_CODEBOOK_SIZES, DEFAULT_TRAIN_SAMPLE, GensarConfig, MAX_CODEBOOK_SIZE, Method,
    PrefixMasking, QuantizerConfig, RqVaeConfig,
};
pub use crate::vocab::config::{TokenSet, VocabConfig};

/// Default seed, so two runs without `--seed` agree.
pub const DEFAULT_SEED: u64 = 42;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub seed: u64,
    /// `build`: also write `report.html` (charts of this output, `sidtool report`) into the
    /// output directory, committed with the rest.
    pub report: bool,
    pub input: InputConfig,
    pub quantizer: QuantizerConfig,
    pub ids: IdsConfig,
    pub embed: EmbedConfig,
    pub vocab: VocabConfig,
    pub collab: CollabConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: DEFAULT_SEED,
            report: false,
            input: InputConfig::default(),
            quantizer: QuantizerConfig::default(),
            ids: IdsConfig::default(),
            embed: EmbedConfig::default(),
            vocab: VocabConfig::default(),
            collab: CollabConfig::default(),
        }
    }
}

impl Config {
    /// Read a TOML config file; unknown keys are errors so typos do not pass silently.
    pub fn from_toml_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Defaults ← `file` (TOML) ← `overrides`, an object shaped like the file (`{"quantizer":
    /// {"codebook_sizes": [512, 256]}, "seed": 7}`), then validated: how the Python package
    /// takes settings. Unknown keys are errors, as in the file.
    pub fn load(file: Option<&Path>, overrides: &serde_json::Value) -> Result<Config> {
        let base = match file {
            Some(p) => Config::from_toml_file(p)?,
            None => Config::default(),
        };
        let c = with_overrides(&base, overrides)?;
        c.validate()?;
        Ok(c)
    }

    /// Check everything that can be checked without reading data: each section's own
    /// validation, then what spans sections (token letters for every quantizer level).
    pub fn validate(&self) -> Result<()> {
        self.quantizer.validate()?;
        self.input.validate()?;
        self.embed.validate()?;
        self.collab.validate()?;
        self.ids.validate(self.quantizer.codebook_sizes.len())
    }
}

/// `base` with `overrides` (a JSON object shaped like `base`'s serialization) merged over it
/// key by key; objects merge recursively, anything else replaces.
pub fn with_overrides<T>(base: &T, overrides: &serde_json::Value) -> Result<T>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (slot, v) => *slot = v.clone(),
        }
    }
    if !overrides.is_object() && !overrides.is_null() {
        return Err(Error::Config(format!(
            "settings must be an object of sections, got {overrides}"
        )));
    }
    let mut v = serde_json::to_value(base).expect("configs serialise");
    if !overrides.is_null() {
        merge(&mut v, overrides);
    }
    serde_json::from_value(v).map_err(|e| Error::Config(format!("settings: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_by_key_and_reject_typos() {
        let o = serde_json::json!({"seed": 7, "quantizer": {"codebook_sizes": [64, 32]}});
        let c = Config::load(None, &o).unwrap();
        assert_eq!(
            (c.seed, &c.quantizer.codebook_sizes[..]),
            (7, &[64, 32][..])
        );
        // Untouched keys of a touched section keep their defaults.
        assert_eq!(c.quantizer.max_iter, QuantizerConfig::default().max_iter);
        let e = Config::load(
            None,
            &serde_json::json!({"quantizer": {"codebok_sizes": [4]}}),
        );
        assert!(e.unwrap_err().to_string().contains("codebok_sizes"));
        let e = Config::load(
            None,
            &serde_json::json!({"quantizer": {"codebook_sizes": []}}),
        );
        assert!(e.is_err(), "validated");
        assert!(Config::load(None, &serde_json::json!([1])).is_err());
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c: Config = toml::from_str(
            "seed = 7\n[quantizer]\ncodebook_sizes = [1024, 512, 256]\nbalanced = true\n[ids]\ndedup = \"reassign\"\n[collab]\ndim = 32\n",
        )
        .unwrap();
        assert_eq!(c.collab.dim, 32);
        assert_eq!(c.collab.window, 5, "unset keys keep their defaults");
        assert!(toml::from_str::<Config>("[collab]\ndims = 3\n").is_err());
        assert_eq!(c.seed, 7);
        assert_eq!(c.quantizer.codebook_sizes, vec![1024, 512, 256]);
        assert_eq!(c.ids.dedup, Dedup::Reassign);
        assert_eq!(c.input.id_column, "item_id");
        assert!(toml::from_str::<Config>("[quantizer]\ncodebok_sizes = [2]\n").is_err());
        let back: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validation_rejects_oversized_codebooks() {
        let mut c = Config::default();
        c.quantizer.codebook_sizes = vec![70_000];
        assert!(c.validate().unwrap_err().to_string().contains("UInt16"));
    }

    #[test]
    fn validation_rejects_unusable_collab_settings() {
        let mut c = Config::default();
        c.collab.dim = 0;
        assert!(c.validate().unwrap_err().to_string().contains("dim"));
        let mut c = Config::default();
        c.collab.column = "item_id".into();
        assert!(c.validate().unwrap_err().to_string().contains("column"));
        Config::default().validate().unwrap();
    }
}
