use std::ffi::OsStr;

use super::*;
use crate::fixtures::secret;
use crate::identity::IdentityPolicy;
use crate::index::Entry;
use crate::token::KeyId;

fn write(dir: &Path, file: &str, id: &KeyId) {
    let path = dir.join(file);
    std::fs::write(&path, file::encode(&path, &secret(id)).unwrap()).unwrap();
}

fn store() -> (tempfile::TempDir, DirStore, Index) {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::new(IdentityPolicy::default());
    let s = DirStore::new(tmp.path().to_owned(), index.clone()).unwrap();
    (tmp, s, index)
}

#[test]
fn full_scan_loads_yaml_and_json_and_ignores_other_files() {
    let (tmp, mut s, index) = store();
    let (a, b) = (KeyId::generate(), KeyId::generate());
    write(tmp.path(), "a.yaml", &a);
    write(tmp.path(), "b.json", &b);
    std::fs::write(tmp.path().join("README.txt"), "not a key").unwrap();
    std::fs::write(tmp.path().join("broken.yaml"), "{{{").unwrap();
    write(tmp.path(), ".tmp-c.yaml", &KeyId::generate());
    s.full_scan().unwrap();
    assert!(index.is_ready());
    assert_eq!(index.len(), 2);
    assert!(matches!(index.get(&a.key()), Some(Entry::Key(_))));
    assert!(matches!(index.get(&b.key()), Some(Entry::Key(_))));
}

#[test]
fn file_changes_update_the_index() {
    let (tmp, mut s, index) = store();
    s.full_scan().unwrap();
    let a = KeyId::generate();
    write(tmp.path(), "a.yaml", &a);
    s.refresh_file(OsStr::new("a.yaml"));
    assert!(index.get(&a.key()).is_some());

    // The same file now defines another key: the old one goes.
    let b = KeyId::generate();
    write(tmp.path(), "a.yaml", &b);
    s.refresh_file(OsStr::new("a.yaml"));
    assert!(index.get(&a.key()).is_none());
    assert!(index.get(&b.key()).is_some());

    std::fs::remove_file(tmp.path().join("a.yaml")).unwrap();
    s.refresh_file(OsStr::new("a.yaml"));
    assert!(index.get(&b.key()).is_none());
}

#[test]
fn two_files_for_one_key_fail_closed_until_one_is_removed() {
    let (tmp, mut s, index) = store();
    let a = KeyId::generate();
    write(tmp.path(), "one.yaml", &a);
    write(tmp.path(), "two.yaml", &a);
    s.full_scan().unwrap();
    assert!(matches!(index.get(&a.key()), Some(Entry::Invalid(_))));
    std::fs::remove_file(tmp.path().join("two.yaml")).unwrap();
    s.refresh_file(OsStr::new("two.yaml"));
    assert!(matches!(index.get(&a.key()), Some(Entry::Key(_))));
    write(tmp.path(), "two.yaml", &a);
    s.refresh_file(OsStr::new("two.yaml"));
    assert!(matches!(index.get(&a.key()), Some(Entry::Invalid(_))));
}

#[test]
fn rescan_drops_keys_whose_files_vanished() {
    let (tmp, mut s, index) = store();
    let a = KeyId::generate();
    write(tmp.path(), "a.yaml", &a);
    s.full_scan().unwrap();
    std::fs::remove_file(tmp.path().join("a.yaml")).unwrap();
    s.full_scan().unwrap();
    assert!(index.get(&a.key()).is_none());
}

#[test]
fn a_key_in_three_files_stays_refused_until_only_one_is_left() {
    let (tmp, mut s, index) = store();
    let (a, b) = (KeyId::generate(), KeyId::generate());
    write(tmp.path(), "one.yaml", &a);
    s.full_scan().unwrap();
    // Second and third definitions arrive as change events, not in a scan.
    for f in ["two.yaml", "three.json"] {
        write(tmp.path(), f, &a);
        s.refresh_file(OsStr::new(f));
        assert!(matches!(index.get(&a.key()), Some(Entry::Invalid(_))));
    }
    std::fs::remove_file(tmp.path().join("one.yaml")).unwrap();
    s.refresh_file(OsStr::new("one.yaml"));
    assert!(matches!(index.get(&a.key()), Some(Entry::Invalid(_))));
    // A duplicate that turns into another key frees the first.
    write(tmp.path(), "two.yaml", &b);
    s.refresh_file(OsStr::new("two.yaml"));
    assert!(matches!(index.get(&a.key()), Some(Entry::Key(_))));
    assert!(matches!(index.get(&b.key()), Some(Entry::Key(_))));
    assert_eq!(index.invalid_len(), 0);
    std::fs::remove_file(tmp.path().join("three.json")).unwrap();
    s.refresh_file(OsStr::new("three.json"));
    assert!(index.get(&a.key()).is_none());
    assert_eq!(index.len(), 1);
}

#[test]
fn full_scan_of_many_files_on_several_threads_finds_every_key_and_duplicate() {
    let (tmp, mut s, index) = store();
    let ids: Vec<KeyId> = (0..200).map(|_| KeyId::generate()).collect();
    for (i, id) in ids.iter().enumerate() {
        write(tmp.path(), &format!("k{i}.yaml"), id);
    }
    write(tmp.path(), "dup.json", &ids[7]);
    s.full_scan().unwrap();
    assert_eq!(index.len(), 200);
    assert_eq!(index.invalid_len(), 1);
    assert!(matches!(index.get(&ids[7].key()), Some(Entry::Invalid(_))));
    std::fs::remove_file(tmp.path().join("dup.json")).unwrap();
    s.refresh_file(OsStr::new("dup.json"));
    assert!(
        ids.iter()
            .all(|id| matches!(index.get(&id.key()), Some(Entry::Key(_))))
    );
}
