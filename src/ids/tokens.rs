//! SID token strings such as `<a_12><b_7><c_201>` (docs/methods.md §8).

use crate::error::{Error, Result};

/// `{level}` is replaced by the level letter (a, b, c, ...), `{code}` by the code.
pub const DEFAULT_TOKEN_FORMAT: &str = "<{level}_{code}>";
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// A parsed token pattern, split once so formatting millions of IDs is cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenFormat {
    pattern: String,
    /// Literal text before `{level}`, between `{level}` and `{code}`, and after `{code}`.
    parts: [String; 3],
    level_first: bool,
    /// Dual IDs: levels from `shared` on are named `prefix` + letter (`<sc_3>`), so a
    /// SID-only and a CID-only token at the same depth are different tokens.
    shared: usize,
    prefix: String,
}

impl TokenFormat {
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "token format {pattern:?} must contain `{{level}}` and `{{code}}` exactly once each, e.g. {DEFAULT_TOKEN_FORMAT:?}"
            ))
        };
        if pattern.matches("{level}").count() != 1 || pattern.matches("{code}").count() != 1 {
            return Err(bad());
        }
        let li = pattern.find("{level}").unwrap();
        let ci = pattern.find("{code}").unwrap();
        let level_first = li < ci;
        let (a, alen, b, blen) = if level_first {
            (li, 7, ci, 6)
        } else {
            (ci, 6, li, 7)
        };
        let parts = [
            pattern[..a].to_string(),
            pattern[a + alen..b].to_string(),
            pattern[b + blen..].to_string(),
        ];
        Ok(TokenFormat {
            pattern: pattern.to_string(),
            parts,
            level_first,
            shared: usize::MAX,
            prefix: String::new(),
        })
    }

    /// The format of one kind of dual ID: levels from `shared` on get `prefix` before their
    /// letter.
    pub(crate) fn with_prefix(mut self, shared: usize, prefix: &str) -> Self {
        self.shared = shared;
        self.prefix = prefix.to_string();
        self
    }

    /// The name `{level}` becomes at one level.
    pub(crate) fn level_name(&self, level: usize) -> String {
        let mut s = String::new();
        self.push_level(&mut s, level);
        s
    }

    fn push_level(&self, s: &mut String, level: usize) {
        if level >= self.shared {
            s.push_str(&self.prefix);
        }
        s.push(Self::letter(level));
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Fail early if there are more levels than letters.
    pub(crate) fn check_levels(&self, levels: usize) -> Result<()> {
        if levels > LETTERS.len() {
            return Err(Error::Config(format!(
                "{levels} token levels (including a possible suffix level) exceed the {} level letters",
                LETTERS.len()
            )));
        }
        Ok(())
    }

    pub fn letter(level: usize) -> char {
        LETTERS[level] as char
    }

    /// The token of one code at one level.
    pub fn token(&self, level: usize, code: u16) -> String {
        let mut s = String::new();
        self.push_token(&mut s, level, code);
        s
    }

    fn push_token(&self, s: &mut String, level: usize, code: u16) {
        use std::fmt::Write;
        s.push_str(&self.parts[0]);
        if self.level_first {
            self.push_level(s, level);
            s.push_str(&self.parts[1]);
            write!(s, "{code}").unwrap();
        } else {
            write!(s, "{code}").unwrap();
            s.push_str(&self.parts[1]);
            self.push_level(s, level);
        }
        s.push_str(&self.parts[2]);
    }

    /// The SID string of one item: its tokens concatenated.
    pub fn sid(&self, codes: &[u16]) -> String {
        let mut s = String::with_capacity(codes.len() * 8);
        for (l, &c) in codes.iter().enumerate() {
            self.push_token(&mut s, l, c);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format() {
        let f = TokenFormat::new(DEFAULT_TOKEN_FORMAT).unwrap();
        assert_eq!(f.sid(&[12, 7, 201, 0]), "<a_12><b_7><c_201><d_0>");
        assert_eq!(f.token(1, 3), "<b_3>");
    }

    #[test]
    fn dual_prefixes() {
        let f = TokenFormat::new(DEFAULT_TOKEN_FORMAT).unwrap();
        let sid = f.clone().with_prefix(2, "s");
        let cid = f.with_prefix(2, "u");
        assert_eq!(sid.sid(&[12, 7, 3, 9]), "<a_12><b_7><sc_3><sd_9>");
        assert_eq!(cid.sid(&[12, 7, 4, 1, 0]), "<a_12><b_7><uc_4><ud_1><ue_0>");
        assert_eq!(cid.level_name(1), "b");
        assert_eq!(cid.level_name(2), "uc");
    }

    #[test]
    fn custom_formats() {
        assert_eq!(
            TokenFormat::new("[{level}{code}]").unwrap().sid(&[1, 2]),
            "[a1][b2]"
        );
        assert_eq!(
            TokenFormat::new("<|sid_{code}_{level}|>")
                .unwrap()
                .sid(&[5]),
            "<|sid_5_a|>"
        );
        assert!(TokenFormat::new("<{code}>").is_err());
        assert_eq!(
            TokenFormat::new("<{code}{level}>").unwrap().sid(&[3, 4]),
            "<3a><4b>"
        );
    }
}
