//! Item text from item columns: `"Title: {title}; Category: {category}"`.
//!
//! A null or empty field is dropped together with its label, so an item without a category
//! reads `Title: Foo` rather than `Title: Foo; Category: `. The literal text before a field is
//! split into a separator (leading `;`, `,`, `.`, `|` and whitespace) and a label (the rest);
//! a kept field is written as separator + label + value, except that the first kept field
//! drops its separator. A label ending in an opening bracket or quote also takes the matching
//! closer that follows the field (`({year})`). `{{` and `}}` are literal braces.

use crate::error::{Error, Result};

/// The METHODS.md §1 default.
pub const DEFAULT_TEMPLATE: &str =
    "Title: {title}; Category: {category}; Description: {description}";

#[derive(Debug, Clone, PartialEq)]
struct Piece {
    sep: String,
    label: String,
    field: String,
    closer: String,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
    tail: String,
}

fn closer_of(c: char) -> Option<char> {
    Some(match c {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '"' => '"',
        '\'' => '\'',
        '«' => '»',
        _ => return None,
    })
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let bad = |m: &str| Error::Config(format!("template {src:?}: {m}"));
        // Split into literal runs and field names.
        let mut literals = vec![String::new()];
        let mut fields = Vec::new();
        let mut chars = src.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literals.last_mut().unwrap().push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literals.last_mut().unwrap().push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err(bad("unclosed `{`")),
                            Some(ch) => name.push(ch),
                        }
                    }
                    let name = name.trim().to_string();
                    if name.is_empty() {
                        return Err(bad("empty field name `{}`"));
                    }
                    fields.push(name);
                    literals.push(String::new());
                }
                '}' => return Err(bad("unmatched `}` (write `}}` for a literal brace)")),
                _ => literals.last_mut().unwrap().push(c),
            }
        }
        if fields.is_empty() {
            return Err(bad("names no column; use {column} placeholders"));
        }
        let mut pieces = Vec::new();
        let mut carry = literals[0].clone();
        for (i, field) in fields.iter().enumerate() {
            let split = carry
                .char_indices()
                .find(|&(_, ch)| !(ch.is_whitespace() || ";,.|".contains(ch)))
                .map(|(j, _)| j)
                .unwrap_or(carry.len());
            // The first field's leading literal is a label, not a separator.
            let (sep, label) = if i == 0 {
                (String::new(), carry.clone())
            } else {
                (carry[..split].to_string(), carry[split..].to_string())
            };
            let mut next = literals[i + 1].clone();
            let mut closer = String::new();
            if let Some(open) = label.chars().last()
                && let Some(close) = closer_of(open)
                && next.starts_with(close)
            {
                closer.push(close);
                next.drain(..close.len_utf8());
            }
            pieces.push(Piece {
                sep,
                label,
                field: field.clone(),
                closer,
            });
            carry = next;
        }
        Ok(Template {
            source: src.to_string(),
            pieces,
            tail: carry,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Column names the template reads, in order, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.pieces {
            if !out.contains(&p.field.as_str()) {
                out.push(&p.field);
            }
        }
        out
    }

    /// The text for one item; `value(field)` is `None` for a null or absent field.
    pub fn render<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> String {
        let mut out = String::new();
        let mut first = true;
        for p in &self.pieces {
            let Some(v) = value(&p.field).map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            if !first {
                out.push_str(&p.sep);
            }
            first = false;
            out.push_str(&p.label);
            out.push_str(v);
            out.push_str(&p.closer);
        }
        if !first {
            out.push_str(&self.tail);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn render(t: &str, kv: &[(&str, &str)]) -> String {
        let m: HashMap<&str, &str> = kv.iter().copied().collect();
        Template::parse(t).unwrap().render(|f| m.get(f).copied())
    }

    #[test]
    fn default_template_drops_null_fields_with_their_labels() {
        let all = [
            ("title", "Mat"),
            ("category", "Yoga"),
            ("description", "Soft"),
        ];
        assert_eq!(
            render(DEFAULT_TEMPLATE, &all),
            "Title: Mat; Category: Yoga; Description: Soft"
        );
        assert_eq!(
            render(
                DEFAULT_TEMPLATE,
                &[("title", "Mat"), ("description", "Soft")]
            ),
            "Title: Mat; Description: Soft"
        );
        assert_eq!(
            render(
                DEFAULT_TEMPLATE,
                &[("category", "Yoga"), ("description", " ")]
            ),
            "Category: Yoga"
        );
        assert_eq!(render(DEFAULT_TEMPLATE, &[]), "");
    }

    #[test]
    fn brackets_go_with_their_field() {
        let t = "{title} ({year}). Genres: {genres}";
        assert_eq!(
            render(
                t,
                &[("title", "Heat"), ("year", "1995"), ("genres", "Crime")]
            ),
            "Heat (1995). Genres: Crime"
        );
        assert_eq!(
            render(t, &[("title", "Heat"), ("genres", "Crime")]),
            "Heat. Genres: Crime"
        );
        assert_eq!(render(t, &[("title", "Heat")]), "Heat");
    }

    #[test]
    fn parse_errors_and_literal_braces() {
        assert!(Template::parse("no fields").is_err());
        assert!(Template::parse("{title").is_err());
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("x}").is_err());
        assert_eq!(render("{{{a}}}", &[("a", "v")]), "{v}");
        assert_eq!(
            Template::parse("{a} {b} {a}").unwrap().fields(),
            vec!["a", "b"]
        );
    }
}
