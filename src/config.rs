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

#[cfg(test)]
mod tests {
    use super::*;

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
