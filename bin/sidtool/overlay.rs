//! Defaults ← config file ← flags, as one mechanism: the flag groups serialize (see `args`) to a
//! tree shaped like the config file, which is deep-merged over the config's own TOML tree
//! before `Config` is read back. A flag that was not given is a `None`, which the TOML
//! serializer leaves out, so it keeps the file's (or the default) value.

use crate::args::{
    BenchCmd, BuildCollabArgs, Cli, Cmd, CollabArgs, CollabInputArgs, DeviceArgs, EmbedArgs,
    IdArgs, InputArgs, QuantArgs, VocabArgs,
};
use anyhow::{Context, Result};
use serde::Serialize;
use sidtool::config::Config;
use sidtool::device::DeviceKind;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

impl Cli {
    /// The config this command runs with: defaults ← `--config` file ← its flags.
    pub fn config(&self) -> Result<Config> {
        self.cmd.overlay()?.apply(self.config.as_deref(), self.seed)
    }
}

impl Cmd {
    /// The command's flag groups, each merged into its section.
    fn overlay(&self) -> Result<Overlay> {
        let o = Overlay::default();
        match self {
            Cmd::Build {
                input,
                embed,
                quant,
                ids,
                vocab,
                collab,
                device,
                report,
                ..
            } => o
                .input(input)?
                .quant(quant)?
                .ids(ids)?
                .embed(embed)?
                .vocab(vocab)?
                .build_collab(collab)?
                .device(device)?
                .report(*report),
            Cmd::Embed {
                input,
                embed,
                device,
                ..
            } => o.input(input)?.embed(embed)?.device(device),
            Cmd::Train {
                input,
                quant,
                collab,
                device,
                ..
            } => o
                .input(input)?
                .quant(quant)?
                .collab_input(collab)?
                .device(device),
            Cmd::Assign {
                input,
                ids,
                collab,
                device,
                ..
            } => o
                .input(input)?
                .ids(ids)?
                .collab_input(collab)?
                .device(device),
            Cmd::Stats { input, collab, .. } | Cmd::Resolve { input, collab, .. } => {
                o.input(input)?.collab_input(collab)
            }
            Cmd::Vocab { vocab, .. } => o.vocab(vocab),
            Cmd::Collab { collab, device, .. } => o.collab(collab)?.device(device),
            Cmd::Bench {
                what: BenchCmd::Embed { embed, device, .. },
            } => o.embed(embed)?.device(device),
            Cmd::ImportRecbole { .. }
            | Cmd::Export { .. }
            | Cmd::Inspect { .. }
            | Cmd::Eval { .. }
            | Cmd::Holdout { .. }
            | Cmd::Report { .. }
            | Cmd::Completions { .. }
            | Cmd::Man { .. }
            | Cmd::Bench { .. } => Ok(o),
        }
    }
}

/// The flags one command was given, ready to lay over a config.
#[derive(Default)]
struct Overlay {
    /// Flags in the shape of the config file: `{quantizer: {rqvae: {lr: …}}, …}`.
    tree: Table,
    /// Path flags go onto the typed config instead of through the tree: TOML strings are
    /// UTF-8, and a path given on the command line need not be.
    interactions: Option<PathBuf>,
    collab: Option<PathBuf>,
    llm: Option<PathBuf>,
}

impl Overlay {
    fn input(self, a: &InputArgs) -> Result<Self> {
        self.section("input", a)
    }

    fn quant(mut self, a: &QuantArgs) -> Result<Self> {
        // Listed among the RQ-VAE flags, but `[input] interactions`.
        self.interactions = a.rqvae.interactions.clone();
        self.section("quantizer", a)
    }

    fn ids(self, a: &IdArgs) -> Result<Self> {
        self.section("ids", a)
    }

    fn embed(self, a: &EmbedArgs) -> Result<Self> {
        self.section("embed", a)
    }

    fn vocab(mut self, a: &VocabArgs) -> Result<Self> {
        self.llm = a.llm.clone();
        self.section("vocab", a)
    }

    /// `sidtool collab`.
    fn collab(self, a: &CollabArgs) -> Result<Self> {
        // `--id-column` names the id column of the --items file: `[input] id_column`.
        self.section(
            "input",
            &IdColumn {
                id_column: &a.id_column,
            },
        )?
        .section("collab", a)
    }

    /// GenSAR's collaborative input in `train`, `assign` and `stats`.
    fn collab_input(mut self, a: &CollabInputArgs) -> Result<Self> {
        // `--collab FILE` is `[input] collab`.
        self.collab = a.collab.clone();
        self.section("collab", a)
    }

    /// GenSAR's collaborative input and its computation in `build`.
    fn build_collab(mut self, a: &BuildCollabArgs) -> Result<Self> {
        // `--collab FILE` is `[input] collab`.
        self.collab = a.collab.clone();
        self.section("collab", a)
    }

    /// `--device`: every stage's device, so one flag moves the whole command.
    fn device(self, a: &DeviceArgs) -> Result<Self> {
        #[derive(Serialize)]
        struct Device {
            device: Option<DeviceKind>,
        }
        let d = Device { device: a.device };
        self.section("embed", &d)?
            .section("quantizer", &d)?
            .section("collab", &d)
    }

    /// `build --report`: the top-level `report` key (only when given, so a file's
    /// `report = true` stays on).
    fn report(mut self, on: bool) -> Result<Self> {
        if on {
            self.tree.insert("report".into(), Value::Boolean(true));
        }
        Ok(self)
    }

    /// Merge one flag group's tree into `[key]`.
    fn section<T: Serialize>(mut self, key: &str, flags: &T) -> Result<Self> {
        let Value::Table(t) = Value::try_from(flags).context("flag value out of range")? else {
            unreachable!("flag groups are structs")
        };
        merge(
            &mut self.tree,
            Table::from_iter([(key.into(), Value::Table(t))]),
        );
        Ok(self)
    }

    /// Defaults ← `file` ← these flags (and `--seed`), then validated before any work starts.
    fn apply(self, file: Option<&Path>, seed: Option<u64>) -> Result<Config> {
        let base = match file {
            Some(p) => Config::from_toml_file(p)?,
            None => Config::default(),
        };
        let Value::Table(mut tree) = Value::try_from(&base)? else {
            unreachable!("Config is a struct")
        };
        merge(&mut tree, self.tree);
        let mut c: Config = Value::Table(tree).try_into()?;
        // A u64 seed may exceed TOML's i64 integers, so it is set on the typed config.
        if let Some(s) = seed {
            c.seed = s;
        }
        for (slot, flag) in [
            (&mut c.input.interactions, self.interactions),
            (&mut c.input.collab, self.collab),
            (&mut c.vocab.llm, self.llm),
        ] {
            if flag.is_some() {
                *slot = flag;
            }
        }
        // After the flags: `--method gensar --codebook-sizes 256` broadcasts to every level.
        c.quantizer.broadcast_sizes();
        c.validate()?;
        Ok(c)
    }
}

/// `[input] id_column` from `sidtool collab --id-column`.
#[derive(Serialize)]
struct IdColumn<'a> {
    id_column: &'a Option<String>,
}

/// Deep merge: tables merge key by key, anything else (numbers, strings, lists) in `over`
/// replaces what `base` holds.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::args::Cli;
    use clap::Parser;
    use sidtool::config::{Config, Dedup, Method, PrefixMasking, TokenSet};
    use std::path::PathBuf;

    /// The config `sidtool ARGS` would run with (ARGS split at whitespace).
    fn config(args: &str) -> Config {
        let cli = Cli::try_parse_from(std::iter::once("sidtool").chain(args.split_whitespace()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        cli.config().unwrap()
    }

    /// A config file, and `--config` naming it.
    fn toml_file(text: &str) -> (tempfile::NamedTempFile, String) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let flag = format!("--config {}", f.path().to_str().unwrap());
        (f, flag)
    }

    #[test]
    fn flag_over_file_over_default() {
        let (_f, file) =
            toml_file("[quantizer]\nmax_iter = 7\ntol = 0.5\n[quantizer.rqvae]\nlr = 0.01\n");
        let c = config(&format!("train e.parquet --out q {file} --max-iter 9"));
        assert_eq!(c.quantizer.max_iter, 9, "the flag wins over the file");
        assert_eq!(c.quantizer.tol, 0.5, "an unset flag keeps the file's value");
        assert_eq!(c.quantizer.rqvae.lr, 0.01, "also in a subsection");
        let d = Config::default();
        assert_eq!(c.quantizer.train_sample, d.quantizer.train_sample);
        let mut v = d.quantizer.rqvae.clone();
        v.lr = 0.01;
        assert_eq!(
            c.quantizer.rqvae, v,
            "the file's other keys keep their defaults"
        );
        assert_eq!(config("train e.parquet --out q"), d);
    }

    #[test]
    fn renamed_and_rerouted_flags_land_in_their_keys() {
        let c = config(
            "collab i --items x --out o --collab-dim 8 --collab-column v --id-column id --window 3",
        );
        assert_eq!((c.collab.dim, c.collab.column.as_str()), (8, "v"));
        assert_eq!((c.collab.window, c.input.id_column.as_str()), (3, "id"));
        let c = config(
            "build i --collab-window 3 --window 4 --collab c.pq --interactions u.pq \
             --latent-dim 16 --shared-levels 1 --collab-dim 9",
        );
        assert_eq!((c.collab.window, c.quantizer.rqvae.window), (3, 4));
        assert_eq!(c.collab.dim, 9);
        assert_eq!(c.input.collab, Some(PathBuf::from("c.pq")));
        assert_eq!(c.input.interactions, Some(PathBuf::from("u.pq")));
        assert_eq!(c.quantizer.rqvae.latent_dim, 16);
        assert_eq!(c.quantizer.gensar.shared_levels, 1);
        let c = config("assign e --quantizer q --out o --collab-column w --collab x.pq");
        assert_eq!(c.collab.column, "w");
        assert_eq!(c.input.collab, Some(PathBuf::from("x.pq")));
    }

    #[test]
    fn every_build_flag_lands() {
        let c = config(
            "build i --seed 18446744073709551615 --id-column id --embedding-column vec \
             --model m --revision r --pooling mean --dim 8 --template {t} --instruction in \
             --max-length 9 --batch-tokens 10 --dtype f16 --window-rows 11 \
             --method rq-vae --codebook-sizes 4,5 --train-sample 12 --max-iter 13 --tol 0.25 \
             --balanced --hidden 6,7 --epochs 14 --lr 0.5 --batch-size 15 --beta 0.75 \
             --prefix-masking uniform --contrastive-weight 0.125 --temperature 0.0625 \
             --semantic-levels 3 --collab-levels 4 --dedup reassign \
             --token-format <{level}{code}> --tokenizer t.json --tokens used --special \
             --markers <b>,<e> --pad-to-multiple 8 --power-iterations 5 --oversample 6 \
             --collab-column cv",
        );
        assert_eq!(c.seed, u64::MAX, "beyond TOML's integers");
        let i = &c.input;
        assert_eq!(
            (i.id_column.as_str(), i.embedding_column.as_str()),
            ("id", "vec")
        );
        let e = &c.embed;
        assert_eq!((e.model.as_str(), e.revision.as_str()), ("m", "r"));
        assert_eq!(e.pooling, Some("mean".parse().unwrap()));
        assert_eq!((e.dim, e.template.as_deref()), (Some(8), Some("{t}")));
        assert_eq!(e.instruction.as_deref(), Some("in"));
        assert_eq!(
            (e.max_length, e.batch_tokens, e.window_rows),
            (9, Some(10), 11)
        );
        assert_eq!(e.dtype, Some("f16".parse().unwrap()));
        let q = &c.quantizer;
        assert_eq!(
            (q.method, &q.codebook_sizes[..]),
            (Method::RqVae, &[4, 5][..])
        );
        assert_eq!(
            (q.train_sample, q.max_iter, q.tol, q.balanced),
            (12, 13, 0.25, true)
        );
        let v = &q.rqvae;
        assert_eq!((&v.hidden[..], v.epochs, v.lr), (&[6, 7][..], 14, 0.5));
        assert_eq!(
            (v.batch_size, v.beta, v.prefix_masking),
            (15, 0.75, PrefixMasking::Uniform)
        );
        assert_eq!((v.contrastive_weight, v.temperature), (0.125, 0.0625));
        assert_eq!((q.gensar.semantic_levels, q.gensar.collab_levels), (3, 4));
        assert_eq!(
            (c.ids.dedup, c.ids.token_format.as_str()),
            (Dedup::Reassign, "<{level}{code}>")
        );
        let w = &c.vocab;
        assert_eq!(w.llm, Some(PathBuf::from("t.json")));
        assert_eq!(
            (w.tokens, w.special, w.pad_to_multiple),
            (TokenSet::Used, true, 8)
        );
        assert_eq!(w.markers, ["<b>", "<e>"]);
        let k = &c.collab;
        assert_eq!(
            (k.power_iterations, k.oversample, k.column.as_str()),
            (5, 6, "cv")
        );
    }

    #[test]
    fn one_device_flag_moves_every_stage() {
        use sidtool::device::DeviceKind;
        let (_f, file) = toml_file("[embed]\ndevice = \"cuda\"\n[quantizer]\ndevice = \"metal\"\n");
        for cmd in [
            "build i",
            "train e --out o",
            "assign e --quantizer q --out o",
            "embed i --out o",
        ] {
            let c = config(&format!("{cmd} --device cuda"));
            let all = (c.embed.device, c.quantizer.device, c.collab.device);
            assert_eq!(
                all,
                (DeviceKind::Cuda, DeviceKind::Cuda, DeviceKind::Cuda),
                "{cmd}"
            );
            // Without the flag, each section keeps the file's own setting.
            let c = config(&format!("{cmd} {file}"));
            let all = (c.embed.device, c.quantizer.device, c.collab.device);
            assert_eq!(
                all,
                (DeviceKind::Cuda, DeviceKind::Metal, DeviceKind::Cpu),
                "{cmd}"
            );
        }
        let c = config("collab u --items i --out o --device cuda");
        assert_eq!(c.collab.device, DeviceKind::Cuda);
    }

    #[test]
    fn a_bool_flag_can_turn_a_file_setting_off() {
        let (_f, file) = toml_file("[quantizer]\nbalanced = true\n");
        assert!(config(&format!("build i {file}")).quantizer.balanced);
        assert!(
            !config(&format!("build i {file} --balanced=false"))
                .quantizer
                .balanced
        );
    }

    #[test]
    fn gensar_broadcasts_a_single_size_after_the_flags() {
        let c = config("build i --method gensar --codebook-sizes 128");
        assert_eq!(c.quantizer.codebook_sizes, vec![128; 6]);
        let (_f, file) = toml_file("[quantizer]\nmethod = \"gensar\"\n");
        let c = config(&format!("build i {file} --shared-levels 1"));
        assert_eq!(c.quantizer.codebook_sizes, vec![256; 5]);
    }

    #[test]
    fn commands_take_only_their_own_groups() {
        // `embed` has no quantizer flags, so the file's quantizer section passes through.
        let (_f, file) = toml_file("seed = 3\n[quantizer]\nmethod = \"rq-vae\"\n");
        let c = config(&format!("embed i --out o {file} --dim 4"));
        assert_eq!(
            (c.seed, c.quantizer.method, c.embed.dim),
            (3, Method::RqVae, Some(4))
        );
        assert!(
            Cli::try_parse_from(["sidtool", "embed", "i", "--out", "o", "--method", "gensar"])
                .is_err()
        );
    }

    #[test]
    fn threads_are_bounded() {
        for bad in ["0", "1025", "100000000000"] {
            let e = Cli::try_parse_from(["sidtool", "--threads", bad, "inspect", "x"])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("--threads") && e.contains("1..=1024"), "{e}");
        }
        let cli = Cli::try_parse_from(["sidtool", "--threads", "1024", "inspect", "x"]).unwrap();
        assert_eq!(cli.threads, Some(1024));
    }
}
