//! The bytes a seal signs: one unambiguous encoding of a record, bound to the Secret it is
//! stored in (its name and uid) and to the writer's sequence number.
//!
//! Every field is a tag, then its value length-prefixed, in a fixed order, so no two different
//! records (or a record and a field moved into another) encode alike. The encoding reads the
//! *parsed* record, so `data` and `stringData` forms, whitespace around values and list
//! spacing do not matter; what a decision would read does.

use crate::record::{Expiry, KeyRecord};

/// Changes whenever the encoding does: a seal made for another layout never verifies.
const DOMAIN: &[u8] = b"keygate.dev/record-seal/v1";

/// The Secret a record is stored in, as far as the seal is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// `metadata.name` (`keygate-<id lowercased>`).
    pub name: &'a str,
    /// `metadata.uid`: a copy under another name, or a restore (which gets a new uid), differs.
    pub uid: &'a str,
    /// The writer's sequence number, higher on every write.
    pub seq: u64,
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn bytes(&mut self, tag: &str, v: &[u8]) {
        self.0.extend_from_slice(tag.as_bytes());
        self.0.push(b'=');
        self.0.extend_from_slice(&(v.len() as u64).to_be_bytes());
        self.0.extend_from_slice(v);
    }

    fn str(&mut self, tag: &str, v: &str) {
        self.bytes(tag, v.as_bytes());
    }

    /// Absent and empty differ: absent is a marker no string value can produce.
    fn opt(&mut self, tag: &str, v: Option<&str>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.str(tag, v);
            }
            None => {
                self.0.push(0);
                self.bytes(tag, b"");
            }
        }
    }

    fn list(&mut self, tag: &str, v: &[String]) {
        self.0.extend_from_slice(&(v.len() as u64).to_be_bytes());
        for item in v {
            self.str(tag, item);
        }
    }

    fn flag(&mut self, tag: &str, v: bool) {
        self.bytes(tag, if v { b"1" } else { b"0" });
    }
}

fn expiry(e: &Expiry) -> String {
    match e {
        Expiry::At(t) => t.to_string(),
        Expiry::Invalid => "invalid".to_owned(),
    }
}

/// The signed bytes for `record` stored under `at`.
pub fn encode(at: Binding<'_>, record: &KeyRecord) -> Vec<u8> {
    let mut e = Encoder(Vec::with_capacity(512));
    e.str("domain", std::str::from_utf8(DOMAIN).unwrap_or_default());
    e.str("secret-name", at.name);
    e.str("secret-uid", at.uid);
    e.str("seq", &at.seq.to_string());
    e.str("id", record.id.as_str());
    e.str("secret-hash", &record.secret_hash.to_string());
    e.opt(
        "previous-secret-hash",
        record
            .previous
            .as_ref()
            .map(|p| p.hash.to_string())
            .as_deref(),
    );
    e.opt(
        "previous-secret-expiration",
        record
            .previous
            .as_ref()
            .map(|p| expiry(&p.expires))
            .as_deref(),
    );
    e.opt("role", record.role.map(|r| r.as_str()));
    e.list("groups", &record.groups);
    e.list("namespaces", &record.namespaces);
    e.opt(
        "expiration",
        record.expiration.as_ref().map(expiry).as_deref(),
    );
    e.flag("disabled", record.disabled);
    e.opt("disabled-by", record.disabled_by.map(|d| d.as_str()));
    e.str("created-by", &record.created_by);
    e.str("owner", &record.owner);
    e.opt("parent", record.parent.as_ref().map(|p| p.as_str()));
    // JSON of plain structs and ordered maps: deterministic.
    e.opt(
        "creator",
        record
            .creator
            .as_ref()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .as_deref(),
    );
    e.flag("inherit-creator", record.inherit_creator);
    e.str(
        "scope-rules",
        &serde_json::to_string(&record.rules).unwrap_or_default(),
    );
    // Not read by decisions, but sealed too: a Secret-writer cannot even relabel a key.
    e.str("name", &record.name);
    e.str("description", &record.description);
    e.0
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::record::{Creator, DisabledBy, PreviousSecret, Role, ScopeRule};
    use crate::token::{KeyId, SecretHash};

    pub(crate) fn full_record() -> KeyRecord {
        let mut r = KeyRecord::new(
            "nFYyVdtg8K1aDujwk3YFh1".parse().unwrap(),
            SecretHash::of(b"s"),
            "ci",
        );
        r.description = "deploys".into();
        r.role = Some(Role::View);
        r.groups = vec!["team-a".into()];
        r.namespaces = vec!["apps".into()];
        r.expiration = Some(Expiry::At("2030-01-01T00:00:00Z".parse().unwrap()));
        r.previous = Some(PreviousSecret {
            hash: SecretHash::of(b"old"),
            expires: Expiry::At("2029-01-01T00:00:00Z".parse().unwrap()),
        });
        r.created_by = "alice".into();
        r.disabled = true;
        r.disabled_by = Some(DisabledBy::Owner);
        r.owner = "alice".into();
        r.parent = Some("AAAAAAAAAAAAAAAAAAAAAb".parse().unwrap());
        r.creator = Some(Creator {
            username: "alice".into(),
            groups: vec!["devs".into()],
            ..Creator::default()
        });
        r.rules = vec![ScopeRule {
            verbs: vec!["get".into()],
            resources: vec!["pods".into()],
            ..ScopeRule::default()
        }];
        r
    }

    const AT: Binding<'static> = Binding {
        name: "keygate-nfyyvdtg8k1adujwk3yfh1",
        uid: "u-1",
        seq: 7,
    };

    /// Each edit changes one thing a decision (or a listing) reads.
    /// A change to a record, named for the failure message.
    pub(crate) type Edit = (&'static str, Box<dyn Fn(&mut KeyRecord)>);

    pub(crate) fn edits() -> Vec<Edit> {
        vec![
            (
                "id case",
                Box::new(|r: &mut KeyRecord| r.id = "NFYyVdtg8K1aDujwk3YFh1".parse().unwrap()),
            ),
            (
                "secret hash",
                Box::new(|r: &mut KeyRecord| r.secret_hash = SecretHash::of(b"t")),
            ),
            (
                "previous hash",
                Box::new(|r: &mut KeyRecord| {
                    r.previous.as_mut().unwrap().hash = SecretHash::of(b"x")
                }),
            ),
            (
                "previous expiry",
                Box::new(|r: &mut KeyRecord| {
                    r.previous.as_mut().unwrap().expires = Expiry::Invalid
                }),
            ),
            (
                "no previous",
                Box::new(|r: &mut KeyRecord| r.previous = None),
            ),
            (
                "role",
                Box::new(|r: &mut KeyRecord| r.role = Some(Role::Admin)),
            ),
            ("no role", Box::new(|r: &mut KeyRecord| r.role = None)),
            (
                "groups",
                Box::new(|r: &mut KeyRecord| r.groups.push("ops".into())),
            ),
            (
                "group moved to namespaces",
                Box::new(|r: &mut KeyRecord| {
                    r.groups.clear();
                    r.namespaces.push("team-a".into());
                }),
            ),
            (
                "namespaces",
                Box::new(|r: &mut KeyRecord| r.namespaces.clear()),
            ),
            (
                "expiration",
                Box::new(|r: &mut KeyRecord| r.expiration = None),
            ),
            (
                "expiration later",
                Box::new(|r: &mut KeyRecord| {
                    r.expiration = Some(Expiry::At("2031-01-01T00:00:00Z".parse().unwrap()))
                }),
            ),
            (
                "enabled",
                Box::new(|r: &mut KeyRecord| {
                    r.disabled = false;
                    r.disabled_by = None;
                }),
            ),
            (
                "disabled by",
                Box::new(|r: &mut KeyRecord| r.disabled_by = Some(DisabledBy::KeyAdmin)),
            ),
            (
                "created by",
                Box::new(|r: &mut KeyRecord| r.created_by = "mallory".into()),
            ),
            (
                "owner",
                Box::new(|r: &mut KeyRecord| r.owner = "mallory".into()),
            ),
            ("parent", Box::new(|r: &mut KeyRecord| r.parent = None)),
            (
                "creator",
                Box::new(|r: &mut KeyRecord| {
                    r.creator
                        .as_mut()
                        .unwrap()
                        .groups
                        .push("system:masters".into())
                }),
            ),
            (
                "inherit creator",
                Box::new(|r: &mut KeyRecord| r.inherit_creator = true),
            ),
            (
                "scope rules",
                Box::new(|r: &mut KeyRecord| r.rules[0].verbs.push("delete".into())),
            ),
            (
                "name",
                Box::new(|r: &mut KeyRecord| r.name = "other".into()),
            ),
            (
                "description",
                Box::new(|r: &mut KeyRecord| r.description.clear()),
            ),
        ]
    }

    #[test]
    fn any_field_changed_changes_the_encoding() {
        let base = encode(AT, &full_record());
        assert_eq!(base, encode(AT, &full_record()), "deterministic");
        for (what, edit) in edits() {
            let mut r = full_record();
            edit(&mut r);
            assert_ne!(encode(AT, &r), base, "{what}");
        }
        for at in [
            Binding {
                name: "keygate-other",
                ..AT
            },
            Binding { uid: "u-2", ..AT },
            Binding { seq: 8, ..AT },
        ] {
            assert_ne!(encode(at, &full_record()), base, "{at:?}");
        }
    }

    #[test]
    fn absent_and_empty_differ_and_values_cannot_run_into_each_other() {
        let mut a = full_record();
        a.groups = vec!["ab".into()];
        let mut b = full_record();
        b.groups = vec!["a".into(), "b".into()];
        assert_ne!(encode(AT, &a), encode(AT, &b));
        let mut c = full_record();
        c.creator = Some(Creator::default());
        let mut d = full_record();
        d.creator = None;
        assert_ne!(encode(AT, &c), encode(AT, &d));
        let id = KeyId::generate();
        let plain = KeyRecord::new(id.clone(), SecretHash::of(b"s"), "");
        let mut named = plain.clone();
        named.description = "x".into();
        assert_ne!(encode(AT, &plain), encode(AT, &named));
    }
}
