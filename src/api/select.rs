//! `fieldSelector` and `labelSelector` on list, as far as kubectl uses them: `metadata.name`
//! (kubectl's delete waits with `fieldSelector=metadata.name=NAME`), and label requirements
//! `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.

use std::collections::BTreeMap;

use super::status::ApiError;
use super::types::AccessKey;

enum Test {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    Absent,
}

impl Test {
    fn matches(&self, value: Option<&str>) -> bool {
        match self {
            Test::Eq(v) => value == Some(v.as_str()),
            Test::Ne(v) => value != Some(v.as_str()),
            Test::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Test::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
            Test::Exists => value.is_some(),
            Test::Absent => value.is_none(),
        }
    }
}

/// Splits on commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

fn set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

fn parse_term(t: &str) -> Option<(String, Test)> {
    if let Some(k) = t.strip_prefix('!') {
        return Some((k.trim().to_owned(), Test::Absent));
    }
    for (op, make) in [
        ("!=", Test::Ne as fn(String) -> Test),
        ("==", Test::Eq),
        ("=", Test::Eq),
    ] {
        if let Some((k, v)) = t.split_once(op) {
            return Some((k.trim().to_owned(), make(v.trim().to_owned())));
        }
    }
    if let Some((k, vs)) = t.split_once(" notin ") {
        return Some((k.trim().to_owned(), Test::NotIn(set(vs)?)));
    }
    if let Some((k, vs)) = t.split_once(" in ") {
        return Some((k.trim().to_owned(), Test::In(set(vs)?)));
    }
    (!t.contains(char::is_whitespace)).then(|| (t.to_owned(), Test::Exists))
}

/// A parsed selector: every requirement must hold.
pub struct Selector(Vec<(String, Test)>);

impl Selector {
    fn parse(s: &str, which: &str) -> Result<Self, ApiError> {
        terms(s)
            .into_iter()
            .map(|t| {
                parse_term(t).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{which} {s:?}: cannot read {t:?}; use key=value, key!=value, key, !key, \
                         key in (a,b) or key notin (a,b), joined with commas"
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map(Selector)
    }

    pub fn labels(s: &str) -> Result<Self, ApiError> {
        Self::parse(s, "labelSelector")
    }

    /// A field selector; only `metadata.name` is known (others are refused as
    /// kube-apiserver refuses unknown fields).
    pub fn fields(s: &str) -> Result<Self, ApiError> {
        let sel = Self::parse(s, "fieldSelector")?;
        if let Some((k, _)) = sel.0.iter().find(|(k, _)| k != "metadata.name") {
            return Err(ApiError::bad_request(format!(
                "fieldSelector: field {k:?} is not supported for accesskeys; only metadata.name is"
            )));
        }
        Ok(sel)
    }

    fn matches_map(&self, map: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .all(|(k, t)| t.matches(map.get(k).map(String::as_str)))
    }

    pub fn matches_labels(&self, key: &AccessKey) -> bool {
        self.matches_map(key.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
    }

    pub fn matches_fields(&self, key: &AccessKey) -> bool {
        let fields = BTreeMap::from([(
            "metadata.name".to_owned(),
            key.metadata.name.clone().unwrap_or_default(),
        )]);
        self.matches_map(&fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &[(&str, &str)]) -> AccessKey {
        let mut k = AccessKey::default();
        k.metadata.name = Some(name.into());
        k.metadata.labels = Some(
            labels
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        );
        k
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let a = key("a", &[("team", "x"), ("env", "prod")]);
        let b = key("b", &[("team", "y")]);
        let t = |s: &str| Selector::labels(s).unwrap();
        assert!(t("team=x").matches_labels(&a) && !t("team=x").matches_labels(&b));
        assert!(t("team in (x, y),!env").matches_labels(&b));
        assert!(!t("team in (x, y),!env").matches_labels(&a));
        assert!(t("env").matches_labels(&a) && t("team notin (x)").matches_labels(&b));
        assert!(t("env!=prod").matches_labels(&b));
        let f = Selector::fields("metadata.name=a").unwrap();
        assert!(f.matches_fields(&a) && !f.matches_fields(&b));
        assert!(Selector::fields("spec.role=view").is_err());
        assert!(Selector::labels("a in x").is_err());
    }
}
