//! `${name}` templates, parsed once into literal and variable parts so that
//! rendering a request only copies bytes into a reused buffer.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters kept as they are in query strings and form bodies
/// (`application/x-www-form-urlencoded`'s unreserved set).
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// Characters escaped in a path: what cannot appear in a request target.
const PATH: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// How substituted values are escaped for where they land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// As they are (headers, raw bodies).
    None,
    /// Inside a JSON string literal.
    Json,
    /// A query or form value (percent-encoded).
    Form,
    /// A path (characters that cannot be in a request target are encoded).
    Path,
}

/// The variable slots of one user type: names in slot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots(pub Vec<String>);

impl Slots {
    /// The slot of `name`, if defined.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|n| n == name)
    }
}

/// A virtual user's variable values, by slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(pub Vec<Option<String>>);

impl Vars {
    /// The value in `slot`, if set.
    pub fn get(&self, slot: usize) -> Option<&str> {
        self.0.get(slot).and_then(|v| v.as_deref())
    }

    /// Sets `slot`.
    pub fn set(&mut self, slot: usize, value: String) {
        if let Some(v) = self.0.get_mut(slot) {
            *v = Some(value);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(usize),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${name}` names no variable known at that point.
    #[error("unknown variable ${{{name}}} ({})", defined(.known))]
    Unknown {
        /// The name used.
        name: String,
        /// The names defined there.
        known: Vec<String>,
    },
    /// `${` without its `}`, or an empty name.
    #[error("unclosed or empty ${{...}} at byte {0} (write $${{ for a literal ${{)")]
    Malformed(usize),
}

fn defined(known: &[String]) -> String {
    if known.is_empty() { "no variables are defined here".into() } else { format!("defined: {}", known.join(", ")) }
}

impl Template {
    /// Parses `text`, resolving names against `slots`.
    pub fn parse(text: &str, slots: &Slots) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let mut at = 0;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                lit.push_str("${");
                at += i + 3;
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let end = tail.find('}').filter(|&e| e > 0).ok_or(TemplateError::Malformed(at + i))?;
                let name = tail[..end].trim();
                let slot = slots
                    .find(name)
                    .ok_or_else(|| TemplateError::Unknown { name: name.to_owned(), known: slots.0.clone() })?;
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(slot));
                at += i + 2 + end + 1;
                rest = &tail[end + 1..];
            } else {
                lit.push('$');
                at += i + 1;
                rest = &after[1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Appends the template with `vars` substituted to `out`; an unset
    /// variable renders as nothing.
    pub fn render(&self, vars: &Vars, escape: Escape, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(slot) => {
                    let v = vars.get(*slot).unwrap_or("");
                    match escape {
                        Escape::None => out.push_str(v),
                        Escape::Json => json_escape(v, out),
                        Escape::Form => {
                            let _ = write!(out, "{}", utf8_percent_encode(v, FORM));
                        }
                        Escape::Path => {
                            let _ = write!(out, "{}", utf8_percent_encode(v, PATH));
                        }
                    }
                }
            }
        }
    }

    /// The variable slots it uses.
    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(slot) => Some(*slot),
            Part::Lit(_) => None,
        })
    }

    /// The template rendered into a new string.
    pub fn to_string_with(&self, vars: &Vars, escape: Escape) -> String {
        let mut s = String::new();
        self.render(vars, escape, &mut s);
        s
    }
}

/// Percent-encodes a literal query or form key or value.
pub fn form_encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string()
}

/// Appends `v` escaped for the inside of a JSON string literal, without
/// allocating (rendering runs once per request).
fn json_escape(v: &str, out: &mut String) {
    let mut start = 0;
    for (i, c) in v.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if u32::from(c) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&v[start..i]);
        if escaped.is_empty() {
            // Other control characters: \u00XX (writing to a String cannot fail).
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escaped);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&v[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Slots {
        Slots(vec!["token".into(), "id".into()])
    }

    #[test]
    fn renders_and_escapes() {
        let t = Template::parse("/items/${id}?t=${ token }&cost=$5&lit=$${id}", &slots()).unwrap();
        let vars = Vars(vec![Some("a b\"c".into()), Some("7".into())]);
        assert_eq!(t.to_string_with(&vars, Escape::None), "/items/7?t=a b\"c&cost=$5&lit=${id}");
        assert_eq!(t.to_string_with(&vars, Escape::Json), "/items/7?t=a b\\\"c&cost=$5&lit=${id}");
        assert_eq!(t.to_string_with(&vars, Escape::Form), "/items/7?t=a%20b%22c&cost=$5&lit=${id}");
        assert_eq!(t.to_string_with(&Vars(vec![None, None]), Escape::None), "/items/?t=&cost=$5&lit=${id}");
    }

    #[test]
    fn json_escaping_matches_serde_json() {
        for v in ["plain", "a\"b\\c", "line\nbreak\r\t", "\u{1}\u{1f}\u{7f}", "é ✓ 🚀", ""] {
            let mut out = String::from("[");
            json_escape(v, &mut out);
            out.push(']');
            let quoted = serde_json::to_string(v).unwrap();
            assert_eq!(out, format!("[{}]", &quoted[1..quoted.len() - 1]), "{v:?}");
        }
    }

    #[test]
    fn unknown_and_malformed() {
        let e = Template::parse("Bearer ${tokn}", &slots()).unwrap_err();
        assert_eq!(e.to_string(), "unknown variable ${tokn} (defined: token, id)");
        assert_eq!(Template::parse("x ${", &slots()).unwrap_err(), TemplateError::Malformed(2));
        assert_eq!(Template::parse("${}", &slots()).unwrap_err(), TemplateError::Malformed(0));
        let e = Template::parse("${a}", &Slots::default()).unwrap_err();
        assert!(e.to_string().contains("no variables are defined here"), "{e}");
    }
}
