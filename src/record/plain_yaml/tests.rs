use proptest::prelude::*;

use super::*;
use crate::record::KeyRecord;
use crate::token::{KeyId, SecretHash};

/// What the full parser makes of `text` (`None` when it refuses it).
fn saphyr(text: &str) -> Option<Secret> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_slice_with_options::<Secret>(text.as_bytes(), options).ok()
}

/// The fast path answers only when the full parser agrees.
fn agrees(text: &str) -> bool {
    match parse(text.as_bytes()) {
        None => true,
        Some(fast) => saphyr(text).as_ref() == Some(&fast),
    }
}

const WRITTEN: &str = r#"apiVersion: v1
kind: Secret
metadata:
  annotations:
    keygate.dev/last-used: "2026-12-01T20:51:44.572748529Z"
  labels:
    app.kubernetes.io/managed-by: keygate
    keygate.dev/key-id: 02k9vcoeimrzvzqlhjty5l
  name: keygate-02k9vcoeimrzvzqlhjty5l
  namespace: keygate-system
stringData:
  id: 02k9vCOEIMrZVZQLHjtY5l
  name: bench 877
  role: view
  secret-hash: sha256:86df0935fb694f11dd960b1da1e984e929e7e3171b8e53246dc196d979e80c80
type: keygate.dev/access-key
"#;

#[test]
fn a_written_record_is_read_as_the_full_parser_reads_it() {
    let fast = parse(WRITTEN.as_bytes()).expect("the plain shape");
    assert_eq!(Some(&fast), saphyr(WRITTEN).as_ref());
    assert_eq!(fast.string_data.as_ref().unwrap()["name"], "bench 877");
}

#[test]
fn every_other_shape_is_left_to_the_full_parser() {
    let swap = |from: &str, to: &str| {
        assert!(WRITTEN.contains(from), "{from}");
        WRITTEN.replacen(from, to, 1)
    };
    let refused = [
        swap("apiVersion: v1", "apiVersion: v2"),
        swap("kind: Secret", "kind: ConfigMap"),
        swap("name: bench 877", "name: 123"),
        swap("name: bench 877", "name: 1e5"),
        swap("name: bench 877", "name: 0x1f"),
        swap("name: bench 877", "name: null"),
        swap("name: bench 877", "name: ~"),
        swap("name: bench 877", "name: yes"),
        swap("name: bench 877", "name: 'quoted'"),
        swap("name: bench 877", "name: \"esc\\\"aped\""),
        swap("name: bench 877", "name: bench # comment"),
        swap("name: bench 877", "name: a: b"),
        swap("name: bench 877", "name: |\n    multi"),
        swap("name: bench 877", "name: [a, b]"),
        swap("name: bench 877", "name: bench  877"),
        swap("name: bench 877", "name: bench 877 "),
        swap("role: view", "role: view\n  role: admin"),
        swap(
            "  namespace: keygate-system\n",
            "  namespace: keygate-system\n  uid: x\n",
        ),
        swap("type: keygate", "immutable: true\ntype: keygate"),
        swap("stringData:\n", "data:\n"),
        swap("metadata:\n", "metadata:\n  # c\n"),
        swap("kind: Secret\n", "kind: Secret\r\n"),
        swap("  name: keygate", "   name: keygate"),
        swap("  name: keygate", "\tname: keygate"),
        swap("apiVersion", "---\napiVersion"),
        swap("  labels:\n", "  labels:\n  x:\n"),
        swap("kind: Secret\n", "kind: Secret\nkind: Secret\n"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  labels:\n".to_owned(),
        "apiVersion: v1\nkind: Secret\n".to_owned(),
    ];
    for text in &refused {
        assert!(parse(text.as_bytes()).is_none(), "{text}");
    }
    // Shapes it reads, each as the full parser does.
    let read = [
        swap("name: bench 877", "name: \"bench: 877 #x\""),
        swap("name: bench 877", "name: 2fast"),
        swap("kind: Secret\n", "kind: Secret\n\n"),
        swap("apiVersion: v1", "apiVersion: \"v1\""),
    ];
    for text in &read {
        assert!(parse(text.as_bytes()).is_some(), "{text}");
        assert!(agrees(text), "{text}");
    }
}

proptest! {
    /// Records as `keygate` writes them, with names and descriptions of any shape: whatever
    /// the fast path reads, it reads as the full parser does.
    #[test]
    fn the_fast_path_never_reads_a_file_differently(
        name in prop_oneof!["[a-zA-Z0-9][a-zA-Z0-9 ._:/-]{0,30}", ".{0,20}", "[0-9a-fA-F.eExXoO_-]{1,8}"],
        description in "[ -~]{0,20}",
    ) {
        let mut rec = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), name.clone());
        rec.description = description;
        let secret = rec.to_secret("keygate-system");
        let text = serde_saphyr::to_string(&secret).unwrap();
        prop_assert!(agrees(&text), "{}", text);
    }
}
