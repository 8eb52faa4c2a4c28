//! A fast reader for the plain YAML a record file usually is, beside the full YAML parser.
//!
//! At a million files the dir store's time to ready was mostly serde-saphyr building a `Secret`
//! from each file (BENCHMARKS.md: about 170 µs of CPU per file). Record files are written by
//! `keygate` itself (`serde_saphyr::to_string` of a Secret) or by hand in the same simple
//! shape: nested `key: value` lines indented by two spaces. [`parse`] reads exactly that shape
//! and nothing more: a file with anything else (comments, flow style, quoting with escapes,
//! multi-line values, a value YAML would read as a number, a boolean or null, a key the fast
//! path does not know, a repeated key) gets `None`, and the caller parses it with serde-saphyr.
//! So the fast path never accepts a file differently: when it answers, serde-saphyr would
//! have built the same `Secret` (the tests check that on generated files and on each shape it
//! refuses).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

/// The `Secret` `bytes` hold, if they are in the plain shape (see the module doc).
pub fn parse(bytes: &[u8]) -> Option<Secret> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut secret = Secret::default();
    let (mut api_version, mut kind) = (false, false);
    // The open mapping: (its indent, which one).
    let mut section: Option<(usize, Section)> = None;
    let mut seen_top: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let (key, value) = split_line(&line[indent..])?;
        // Close sections the line is not inside.
        while let Some((at, s)) = section {
            if indent > at {
                break;
            }
            section = s.parent().map(|p| (at - 2, p));
        }
        let inside = section.map_or(0, |(at, _)| at + 2);
        if indent != inside {
            return None;
        }
        match (section.map(|(_, s)| s), value) {
            (None, v) => {
                if seen_top.contains(&key) {
                    return None;
                }
                seen_top.push(key);
                match (key, v) {
                    ("apiVersion", Some(v)) if v == "v1" => api_version = true,
                    ("kind", Some(v)) if v == "Secret" => kind = true,
                    ("type", Some(v)) => secret.type_ = Some(v),
                    ("metadata", None) => section = Some((0, Section::Metadata)),
                    ("stringData", None) => {
                        secret.string_data = Some(BTreeMap::new());
                        section = Some((0, Section::StringData));
                    }
                    _ => return None,
                }
            }
            (Some(Section::Metadata), v) => {
                let m = &mut secret.metadata;
                match (key, v) {
                    ("name", Some(v)) if m.name.is_none() => m.name = Some(v),
                    ("namespace", Some(v)) if m.namespace.is_none() => m.namespace = Some(v),
                    ("labels", None) if m.labels.is_none() => {
                        m.labels = Some(BTreeMap::new());
                        section = Some((inside, Section::Labels));
                    }
                    ("annotations", None) if m.annotations.is_none() => {
                        m.annotations = Some(BTreeMap::new());
                        section = Some((inside, Section::Annotations));
                    }
                    _ => return None,
                }
            }
            (Some(s), Some(v)) => {
                let map = match s {
                    Section::Labels => secret.metadata.labels.as_mut(),
                    Section::Annotations => secret.metadata.annotations.as_mut(),
                    Section::StringData => secret.string_data.as_mut(),
                    Section::Metadata => None,
                }?;
                if map.insert(key.to_owned(), v).is_some() {
                    return None;
                }
            }
            (Some(_), None) => return None,
        }
    }
    // A section with no entries is a null in YAML, not an empty mapping: left to the parser.
    let m = &secret.metadata;
    let empty = |map: Option<&BTreeMap<String, String>>| map.is_some_and(BTreeMap::is_empty);
    if !seen_top.contains(&"metadata")
        || (m.name.is_none()
            && m.namespace.is_none()
            && m.labels.is_none()
            && m.annotations.is_none())
        || empty(m.labels.as_ref())
        || empty(m.annotations.as_ref())
        || empty(secret.string_data.as_ref())
    {
        return None;
    }
    (api_version && kind).then_some(secret)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Metadata,
    Labels,
    Annotations,
    StringData,
}

impl Section {
    fn parent(self) -> Option<Section> {
        match self {
            Section::Labels | Section::Annotations => Some(Section::Metadata),
            Section::Metadata | Section::StringData => None,
        }
    }
}

/// `key: value` or `key:` (a mapping follows), with a key and a value of the plain shape.
fn split_line(line: &str) -> Option<(&str, Option<String>)> {
    let (key, rest) = line.split_once(':')?;
    // A key is a string too: the same test as a value, on fewer characters.
    if !key.bytes().all(is_key_byte) || scalar(key).is_none() {
        return None;
    }
    if rest.is_empty() {
        return Some((key, None));
    }
    let value = rest.strip_prefix(' ')?;
    Some((key, Some(scalar(value)?.to_owned())))
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')
}

/// The value of a plain or double-quoted scalar that every YAML reading takes as this very
/// string; `None` for anything else.
fn scalar(v: &str) -> Option<&str> {
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        return inner
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            .then_some(inner);
    }
    let bytes = v.as_bytes();
    let first = *bytes.first()?;
    let ok = first.is_ascii_alphabetic() || first.is_ascii_digit();
    // One pass: only plain characters, and no "  " or ": " (a space after a space or a colon).
    let mut prev = 0u8;
    let plain = bytes.iter().all(|&b| {
        let fine = (b.is_ascii_alphanumeric()
            || matches!(b, b' ' | b'.' | b'_' | b'/' | b'-' | b':'))
            && !(b == b' ' && matches!(prev, b' ' | b':'));
        prev = b;
        fine
    });
    let last = *bytes.last()?;
    if !ok || !plain || matches!(last, b' ' | b':') {
        return None;
    }
    // What YAML 1.1 or 1.2 would resolve to a null, a boolean or a number is left to the
    // full parser: any value with no letter, a word from those schemas, and anything that
    // starts with a digit and has only digits, hex digits and number punctuation. (Compared
    // without case, without building a lowercased copy: a million files, several values each.)
    const WORDS: [&str; 9] = ["null", "true", "false", "yes", "no", "on", "off", "y", "n"];
    if !bytes.iter().any(u8::is_ascii_alphabetic)
        || (v.len() <= 5 && WORDS.iter().any(|w| w.eq_ignore_ascii_case(v)))
        || (first.is_ascii_digit()
            && bytes.iter().all(|&b| {
                b.is_ascii_hexdigit() || matches!(b, b'x' | b'X' | b'o' | b'O' | b'.' | b'_' | b'-')
            }))
    {
        return None;
    }
    Some(v)
}

#[cfg(test)]
mod tests;
