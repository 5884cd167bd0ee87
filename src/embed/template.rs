//! Item text from item columns: `"Title: {title}; Category: {category}"`.
//!
//! A null or empty field is dropped together with its label, so an item without a category
//! reads `Title: Foo` rather than `Title: Foo; Category: `. The literal text before a field is
//! split into a separator (leading `;`, `,`, `.`, `|` and whitespace) and a label (the rest);
//! a kept field is written as separator + label + value, except that the first kept field
//! drops its separator. A label ending in an opening bracket or quote also takes the matching
//! closer that follows the field (`({year})`). `{{` and `}}` are literal braces.

use crate::error::{Error, Result};

/// The docs/methods.md §1 default.
pub(crate) const DEFAULT_TEMPLATE: &str =
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
        '«' => '»',
        _ => return None,
    })
}

/// Brackets `s` leaves open (in order), and whether it closes one it did not open.
fn brackets(s: &str) -> (Vec<char>, bool) {
    let mut open = Vec::new();
    for c in s.chars() {
        if closer_of(c).is_some() {
            open.push(c);
        } else if let Some(o) = ['(', '[', '{', '«']
            .into_iter()
            .find(|&o| closer_of(o) == Some(c))
        {
            if open.last() == Some(&o) {
                open.pop();
            } else {
                return (open, true);
            }
        }
    }
    (open, false)
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
            // Brackets opened in a field's label must close right after the field, so that
            // dropping the field drops both; a quote that ends the label pairs the same way.
            let (opens, stray) = brackets(&label);
            if stray {
                return Err(bad(&format!(
                    "`{label}` closes a bracket opened before an earlier field; brackets must \
                     wrap one field, as in `{{title}} ({{year}})`"
                )));
            }
            let need: String = opens.iter().rev().filter_map(|&c| closer_of(c)).collect();
            if !need.is_empty() {
                if !next.starts_with(&need) {
                    return Err(bad(&format!(
                        "the bracket in `{label}` must close right after {{{field}}}, as in \
                         `{{title}} ({{year}})`; brackets around several fields are not supported"
                    )));
                }
                closer.push_str(&need);
                next.drain(..need.len());
            } else if let Some(q) = label.chars().last().filter(|c| *c == '"' || *c == '\'')
                && next.starts_with(q)
            {
                closer.push(q);
                next.drain(..q.len_utf8());
            }
            pieces.push(Piece {
                sep,
                label,
                field: field.clone(),
                closer,
            });
            carry = next;
        }
        if brackets(&carry).1 || !brackets(&carry).0.is_empty() {
            return Err(bad(&format!(
                "unbalanced bracket in `{carry}` after the last field; brackets must wrap one \
                 field, as in `{{title}} ({{year}})`"
            )));
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
        let t = "{title} (released {year})";
        assert_eq!(
            render(t, &[("title", "Heat"), ("year", "1995")]),
            "Heat (released 1995)"
        );
        assert_eq!(render(t, &[("title", "Heat")]), "Heat");
        // A bracket around several fields cannot be dropped cleanly: refused up front.
        assert!(Template::parse("{title} ({year}, {country})").is_err());
        assert!(Template::parse("({title}) x)").is_err());
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
