//! The dir store: one Secret document per file (`*.yaml`, `*.yml`, `*.json`) in a directory.
//!
//! A full scan loads everything at start; inotify (via `notify`) then reports each changed file,
//! which is re-read on its own. Files are matched to keys by their `metadata.name`, so a file may
//! be called anything; two files naming the same key make that key invalid (fail closed) until
//! one goes away. Hidden files are ignored (atomic writers use them as temporaries), except the
//! `..data` swap of a Kubernetes Secret or ConfigMap volume, which triggers a full rescan.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};

use super::{Entry, Index, Parsed, StoreStopped};
use crate::record::file::{self, is_record_file};
use crate::record::{KeyRecord, RecordError};
use crate::token::IdKey;

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot use {path} as the key directory (--store dir:PATH): {error}")]
    Dir { path: PathBuf, error: io::Error },
    #[error("cannot watch {path} for changes: {error}")]
    Watch { path: PathBuf, error: notify::Error },
    #[error(
        "the key directory {path} was removed or moved away; restart keygate once it is back (it is created empty if missing)"
    )]
    Gone { path: PathBuf },
    #[error(transparent)]
    Untrusted(#[from] crate::fsutil::TrustError),
    #[error("the watcher of {path} stopped reporting changes")]
    WatchEnded { path: PathBuf },
}

/// Reads a record file into the key it defines: `(key ID, record)`.
/// `None` when the file is gone or is not a keygate record at all (logged).
fn load_file(path: &Path) -> Option<(IdKey, Parsed)> {
    let secret = match file::read(path) {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring file in the key directory");
            return None;
        }
    };
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let Some(id) = IdKey::from_record_name(name) else {
        tracing::warn!(file = %path.display(), name, "ignoring file: metadata.name is not keygate-<id lowercased>");
        return None;
    };
    Some((id, KeyRecord::from_secret(&secret)))
}

/// Which file defines which key, so a deleted file can be mapped back to its key. One map
/// from file name to ID (the ID inline): at a million keys the reverse map, only needed for
/// the rare key defined by several files, is kept for those keys alone.
#[derive(Default)]
struct Files {
    by_file: HashMap<Box<OsStr>, IdKey>,
    /// Keys defined by more than one file, with those files (each key here is refused).
    dups: HashMap<IdKey, Vec<Box<OsStr>>>,
}

impl Files {
    /// Every file that defines `id`: a scan, only done when a second file appears.
    fn owners(&self, id: IdKey) -> Vec<Box<OsStr>> {
        let mut v: Vec<_> = self
            .by_file
            .iter()
            .filter(|(_, i)| **i == id)
            .map(|(f, _)| f.clone())
            .collect();
        v.sort();
        v
    }
}

fn duplicate(id: IdKey, owners: &[Box<OsStr>]) -> Parsed {
    let files: Vec<_> = owners.iter().map(|f| f.to_string_lossy()).collect();
    Err(RecordError::Duplicate {
        id: id.to_string(),
        files: files.join(", "),
    })
}

/// The dir store's loop state.
pub struct DirStore {
    dir: PathBuf,
    index: Index,
    files: Files,
}

impl DirStore {
    /// Creates the directory if needed (so `keygate serve` runs on a fresh machine), else
    /// checks that it is ours alone: whoever can write in it can mint identities.
    pub fn new(dir: PathBuf, index: Index) -> Result<Self, DirError> {
        crate::fsutil::private_dir(&dir, "--store dir:PATH")?;
        Ok(DirStore {
            dir,
            index,
            files: Files::default(),
        })
    }

    /// Loads every record file and replaces the index with them. Files are read and parsed
    /// on every core: at a million files this is most of the time to ready.
    pub fn full_scan(&mut self) -> Result<(), DirError> {
        let dir_err = |error| DirError::Dir {
            path: self.dir.clone(),
            error,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(dir_err)? {
            let name = entry.map_err(dir_err)?.file_name();
            if is_record_file(&name) {
                names.push(name.into_boxed_os_str());
            }
        }
        let mut loaded = self.load_all(names);
        // Sorted by ID, the files of one key are adjacent: duplicates without a reverse map.
        loaded.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let mut entries = Vec::with_capacity(loaded.len());
        let mut dups = HashMap::new();
        for group in loaded.chunk_by(|a, b| a.1 == b.1) {
            let id = group[0].1;
            if let [(_, _, entry)] = group {
                entries.push((id, entry.clone()));
            } else {
                let owners: Vec<_> = group.iter().map(|(f, _, _)| f.clone()).collect();
                entries.push((id, self.index.entry_for(&id, duplicate(id, &owners))));
                dups.insert(id, owners);
            }
        }
        let files = Files {
            by_file: loaded.into_iter().map(|(f, id, _)| (f, id)).collect(),
            dups,
        };
        self.files = files;
        let keys = entries.len();
        self.index.replace_entries(entries);
        tracing::info!(dir = %self.dir.display(), keys, "key directory loaded");
        Ok(())
    }

    /// Reads and prepares the given files on several threads per core. Names are moved, not
    /// copied, into the result: a million freed copies would be holes in the heap for good.
    fn load_all(&self, mut names: Vec<Box<OsStr>>) -> Vec<(Box<OsStr>, IdKey, Entry)> {
        // Parsing a plain record is a few µs (`record::plain_yaml`); what is left is waiting for
        // the disk when the files are not in the page cache. Four threads per core (at most 32)
        // keep several reads in flight.
        let threads = std::thread::available_parallelism().map_or(4, |n| (n.get() * 4).min(32));
        let chunk = names.len().div_ceil(threads).max(1);
        let mut parts = Vec::new();
        while names.len() > chunk {
            parts.push(names.split_off(names.len() - chunk));
        }
        let load = |names: Vec<Box<OsStr>>| -> Vec<(Box<OsStr>, IdKey, Entry)> {
            names
                .into_iter()
                .filter_map(|name| {
                    let (id, parsed) = load_file(&self.dir.join(&*name))?;
                    let entry = self.index.entry_for(&id, parsed);
                    Some((name, id, entry))
                })
                .collect()
        };
        std::thread::scope(|s| {
            let workers: Vec<_> = parts
                .into_iter()
                .map(|part| s.spawn(move || load(part)))
                .collect();
            let mut all = load(names);
            for w in workers {
                // A panic while parsing one file is a bug; surface it rather than lose keys.
                all.extend(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            all
        })
    }

    /// Re-reads one file after a change notification.
    pub fn refresh_file(&mut self, file: &OsStr) {
        let loaded = load_file(&self.dir.join(file));
        let old = self.files.by_file.get(file).copied();
        if old.is_some() && old != loaded.as_ref().map(|(id, _)| *id) {
            self.detach(file);
        }
        if let Some((id, parsed)) = loaded {
            self.attach(file, id, parsed);
        }
    }

    /// Records that `file` defines `id` (just read as `parsed`) and updates the index.
    fn attach(&mut self, file: &OsStr, id: IdKey, parsed: Parsed) {
        let before = self.files.by_file.insert(file.into(), id);
        if let Some(owners) = self.files.dups.get_mut(&id) {
            if !owners.iter().any(|f| **f == *file) {
                owners.push(file.into());
            }
            self.index.upsert(id, duplicate(id, owners));
        } else if before == Some(id) || self.index.get(&id).is_none() {
            // This file already was the key's only definition, or nothing defines it yet (the
            // dir store is the index's only writer, so an entry means some file defines it).
            self.index.upsert(id, parsed);
        } else {
            let owners = self.files.owners(id);
            self.index.upsert(id, duplicate(id, &owners));
            self.files.dups.insert(id, owners);
        }
    }

    /// Forgets `file` and brings the key it defined in line with the files left.
    fn detach(&mut self, file: &OsStr) {
        let Some(id) = self.files.by_file.remove(file) else {
            return;
        };
        let Some(owners) = self.files.dups.get_mut(&id) else {
            self.index.remove(&id);
            return;
        };
        owners.retain(|f| **f != *file);
        if owners.len() > 1 {
            self.index.upsert(id, duplicate(id, owners));
            return;
        }
        let only = self.files.dups.remove(&id).unwrap_or_default();
        match only.first().and_then(|f| load_file(&self.dir.join(&**f))) {
            Some((read, parsed)) if read == id => self.index.upsert(id, parsed),
            // The last file changed meanwhile; its own event brings it in.
            _ => self.index.remove(&id),
        }
    }

    /// Loads, then follows changes until it cannot any more, and returns why: the watcher
    /// ended (its channel closed) or the directory itself went away. Both leave the index
    /// frozen, so the caller must treat the return as a failure. Runs on a blocking thread:
    /// file I/O and parsing of up to millions of records stay off the async workers.
    pub fn run_blocking(
        mut self,
        mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    ) -> DirError {
        let scan = |store: &mut DirStore| {
            if let Err(e) = store.full_scan() {
                tracing::error!(error = %e, "key directory scan failed; keeping the keys loaded before");
            }
        };
        scan(&mut self);
        while let Some(first) = events.blocking_recv() {
            // Coalesce a burst (an editor's write, a bulk copy) into one pass.
            let mut batch = vec![first];
            let deadline = std::time::Instant::now() + Duration::from_millis(20);
            while std::time::Instant::now() < deadline {
                match events.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            let mut changed: Vec<OsString> = Vec::new();
            let mut rescan = false;
            for ev in batch {
                match ev {
                    Ok(ev) if ev.need_rescan() => rescan = true,
                    // Reads (ours included: every refresh opens the file) change nothing;
                    // reacting to them would re-read in a loop.
                    Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
                    // The watched directory itself was deleted or renamed: inotify has dropped
                    // the watch (or follows the directory under a name we do not read), so no
                    // further change would be seen. (A chmod of it is Modify(Metadata): fine.)
                    Ok(ev)
                        if matches!(
                            ev.kind,
                            notify::EventKind::Remove(_)
                                | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                        ) && ev.paths.contains(&self.dir) =>
                    {
                        return DirError::Gone { path: self.dir };
                    }
                    Ok(ev) => {
                        for p in ev.paths {
                            match p.file_name() {
                                Some(n) if n.to_string_lossy().starts_with("..") => rescan = true,
                                Some(n) if is_record_file(n) && p.parent() == Some(&self.dir) => {
                                    changed.push(n.to_owned())
                                }
                                Some(_) => {}
                                None => rescan = true,
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "key directory watch error; rescanning");
                        rescan = true;
                    }
                }
            }
            if rescan {
                scan(&mut self);
            } else {
                changed.sort();
                changed.dedup();
                for f in changed {
                    self.refresh_file(&f);
                }
                self.index.mark_synced();
            }
        }
        DirError::WatchEnded { path: self.dir }
    }
}

/// A running dir store.
pub struct DirFeed {
    /// Must be kept alive for as long as changes should be followed.
    pub watcher: notify::RecommendedWatcher,
    /// Resolves with the reason if the store's thread ends or panics.
    pub stopped: oneshot::Receiver<StoreStopped>,
}

/// Starts the dir store: watches `dir`, loads it, and keeps the index in sync on a thread of its
/// own, which reports through [`DirFeed::stopped`] if it ever ends.
pub fn spawn(dir: PathBuf, index: Index) -> Result<DirFeed, DirError> {
    let store = DirStore::new(dir.clone(), index)?;
    // Canonical path: inotify reports paths under the directory as it was given to it.
    let dir = std::fs::canonicalize(&dir).map_err(|error| DirError::Dir {
        path: dir.clone(),
        error,
    })?;
    let store = DirStore {
        dir: dir.clone(),
        ..store
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Opens and reads (our own scan's included: a million of them at start) change
        // nothing; dropped here so they are never queued.
        if ev
            .as_ref()
            .is_ok_and(|e| matches!(e.kind, notify::EventKind::Access(_)))
        {
            return;
        }
        let _ = tx.send(ev);
    })
    .map_err(|error| DirError::Watch {
        path: dir.clone(),
        error,
    })?;
    // Watch before the first scan so nothing written in between is missed.
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|error| DirError::Watch {
            path: dir.clone(),
            error,
        })?;
    let (report, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("keygate-dir-store".into())
        .spawn(move || {
            // A panic (a bug) must not end the thread unnoticed: the index would keep serving
            // keys that were revoked since.
            let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.run_blocking(rx)
            })) {
                Ok(e) => StoreStopped::Dir(e),
                Err(payload) => StoreStopped::panicked("dir", &*payload),
            };
            // Nobody listens once serving has shut down.
            let _ = report.send(why);
        })
        .map_err(|error| DirError::Dir { path: dir, error })?;
    Ok(DirFeed { watcher, stopped })
}

#[cfg(test)]
mod tests;
