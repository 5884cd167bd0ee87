//! SID token strings such as `<a_12><b_7><c_201>` (METHODS.md §8).

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
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Fail early if there are more levels than letters.
    pub fn check_levels(&self, levels: usize) -> Result<()> {
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
            s.push(Self::letter(level));
            s.push_str(&self.parts[1]);
            write!(s, "{code}").unwrap();
        } else {
            write!(s, "{code}").unwrap();
            s.push_str(&self.parts[1]);
            s.push(Self::letter(level));
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
