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

/// Events for the store's loop, as the watcher would send them.
fn events() -> (
    mpsc::UnboundedSender<notify::Result<notify::Event>>,
    mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
) {
    mpsc::unbounded_channel()
}

#[test]
fn the_loop_ends_with_an_error_when_the_watcher_goes_away() {
    let (_tmp, s, index) = store();
    let (tx, rx) = events();
    drop(tx);
    let why = s.run_blocking(rx);
    assert!(matches!(why, DirError::WatchEnded { .. }), "{why}");
    assert!(index.is_ready(), "the first scan still ran");
}

#[test]
fn the_loop_ends_when_the_directory_itself_is_removed_or_renamed() {
    use notify::event::{ModifyKind, RemoveKind, RenameMode};
    for kind in [
        notify::EventKind::Remove(RemoveKind::Folder),
        notify::EventKind::Modify(ModifyKind::Name(RenameMode::From)),
    ] {
        let (tmp, s, _index) = store();
        let (tx, rx) = events();
        // A chmod of the directory is not its end.
        let chmod = notify::EventKind::Modify(ModifyKind::Metadata(
            notify::event::MetadataKind::Permissions,
        ));
        tx.send(Ok(notify::Event::new(chmod).add_path(tmp.path().to_owned())))
            .unwrap();
        tx.send(Ok(notify::Event::new(kind).add_path(tmp.path().to_owned())))
            .unwrap();
        let why = s.run_blocking(rx);
        assert!(matches!(why, DirError::Gone { .. }), "{why}");
        assert!(why.to_string().contains(&tmp.path().display().to_string()));
        drop(tx);
    }
}

/// The real thing: inotify reports the directory's removal and the thread says so.
#[test]
fn a_removed_directory_is_reported_by_the_running_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let index = Index::new(IdentityPolicy::default());
    let mut feed = spawn(dir.clone(), index.clone()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !index.is_ready() {
        assert!(std::time::Instant::now() < deadline, "store not ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(feed.stopped.try_recv().is_err(), "running");
    std::fs::remove_dir_all(&dir).unwrap();
    let why = loop {
        match feed.stopped.try_recv() {
            Ok(why) => break why,
            Err(_) => {
                assert!(std::time::Instant::now() < deadline, "no report");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    assert!(
        matches!(why, StoreStopped::Dir(DirError::Gone { .. })),
        "{why}"
    );
}
