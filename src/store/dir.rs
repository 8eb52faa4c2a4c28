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

use k8s_openapi::api::core::v1::Secret;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Index, Parsed};
use crate::record::{KeyRecord, RecordError, id_from_record_name};

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot use {path} as the key directory (--store dir:PATH): {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a Secret document: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Whether a directory entry is a record file (by name).
pub fn is_record_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Reads one record file as a Secret (JSON or YAML by extension).
pub fn read_secret(path: &Path) -> Result<Secret, DirError> {
    let bytes = std::fs::read(path).map_err(|source| DirError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parsed = if path.extension() == Some(OsStr::new("json")) {
        serde_json::from_slice::<Secret>(&bytes).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_slice::<Secret>(&bytes).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| DirError::Parse {
        path: path.to_owned(),
        reason,
    })
}

/// Reads a record file into the key it defines: `(lowercased id from the name, record)`.
/// `None` when the file is gone or is not a keygate record at all (logged).
fn load_file(path: &Path) -> Option<(String, Parsed)> {
    let secret = match read_secret(path) {
        Ok(s) => s,
        Err(DirError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring file in the key directory");
            return None;
        }
    };
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let Some(id) = id_from_record_name(name) else {
        tracing::warn!(file = %path.display(), name, "ignoring file: metadata.name is not keygate-<id lowercased>");
        return None;
    };
    Some((id.to_owned(), KeyRecord::from_secret(&secret)))
}

/// Which files define which keys, so a deleted file can be mapped back to its key.
#[derive(Default)]
struct Files {
    by_file: HashMap<OsString, String>,
    by_id: HashMap<String, Vec<OsString>>,
}

impl Files {
    fn attach(&mut self, file: &OsStr, id: &str) {
        self.by_file.insert(file.to_owned(), id.to_owned());
        let owners = self.by_id.entry(id.to_owned()).or_default();
        if !owners.iter().any(|f| f == file) {
            owners.push(file.to_owned());
        }
    }

    /// Detaches a file; returns the id it defined.
    fn detach(&mut self, file: &OsStr) -> Option<String> {
        let id = self.by_file.remove(file)?;
        if let Some(owners) = self.by_id.get_mut(&id) {
            owners.retain(|f| f != file);
            if owners.is_empty() {
                self.by_id.remove(&id);
            }
        }
        Some(id)
    }
}

fn duplicate(id: &str, owners: &[OsString]) -> Parsed {
    let files: Vec<_> = owners.iter().map(|f| f.to_string_lossy()).collect();
    Err(RecordError::Duplicate {
        id: id.to_owned(),
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
    /// Creates the directory if needed (so `keygate serve` runs on a fresh machine).
    pub fn new(dir: PathBuf, index: Index) -> Result<Self, DirError> {
        std::fs::create_dir_all(&dir).map_err(|source| DirError::Dir {
            path: dir.clone(),
            source,
        })?;
        Ok(DirStore {
            dir,
            index,
            files: Files::default(),
        })
    }

    /// Loads every record file and replaces the index with them.
    pub fn full_scan(&mut self) -> Result<(), DirError> {
        let dir_err = |source| DirError::Dir {
            path: self.dir.clone(),
            source,
        };
        let mut files = Files::default();
        let mut records: HashMap<String, Parsed> = HashMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            if !is_record_file(&name) {
                continue;
            }
            if let Some((id, parsed)) = load_file(&entry.path()) {
                files.attach(&name, &id);
                records.insert(id, parsed);
            }
        }
        for (id, owners) in &files.by_id {
            if owners.len() > 1 {
                records.insert(id.clone(), duplicate(id, owners));
            }
        }
        self.files = files;
        self.index.replace_all(records);
        tracing::info!(dir = %self.dir.display(), keys = self.files.by_id.len(), "key directory loaded");
        Ok(())
    }

    /// Re-reads one file after a change notification.
    pub fn refresh_file(&mut self, file: &OsStr) {
        let loaded = load_file(&self.dir.join(file));
        let old = self.files.by_file.get(file).cloned();
        if old.is_some()
            && old.as_deref() != loaded.as_ref().map(|(id, _)| id.as_str())
            && let Some(old) = self.files.detach(file)
        {
            self.settle(&old, None);
        }
        if let Some((id, parsed)) = loaded {
            self.files.attach(file, &id);
            self.settle(&id, Some(parsed));
        }
    }

    /// Brings the index entry for `id` in line with the files that define it. `fresh` is the
    /// record just read, when the caller has it.
    fn settle(&mut self, id: &str, fresh: Option<Parsed>) {
        match self.files.by_id.get(id).map(Vec::as_slice) {
            None | Some([]) => self.index.remove(id),
            Some([only]) => {
                let parsed = match fresh {
                    Some(p) => Some(p),
                    None => load_file(&self.dir.join(only)).map(|(_, p)| p),
                };
                match parsed {
                    Some(p) => self.index.upsert(id, p),
                    None => self.index.remove(id),
                }
            }
            Some(owners) => {
                let dup = duplicate(id, owners);
                self.index.upsert(id, dup);
            }
        }
    }

    /// Loads, then follows changes until the watcher ends. Runs on a blocking thread: file I/O
    /// and parsing of up to millions of records stay off the async workers.
    pub fn run_blocking(
        mut self,
        mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    ) {
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
    }
}

/// Starts the dir store: watches `dir`, loads it, and keeps the index in sync on a thread of its
/// own. Returns the watcher, which must be kept alive for as long as changes should be followed.
pub fn spawn(dir: PathBuf, index: Index) -> Result<notify::RecommendedWatcher, DirError> {
    let store = DirStore::new(dir.clone(), index)?;
    // Canonical path: inotify reports paths under the directory as it was given to it.
    let dir = std::fs::canonicalize(&dir).map_err(|source| DirError::Dir {
        path: dir.clone(),
        source,
    })?;
    let store = DirStore {
        dir: dir.clone(),
        ..store
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|source| DirError::Watch {
        path: dir.clone(),
        source,
    })?;
    // Watch before the first scan so nothing written in between is missed.
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| DirError::Watch {
            path: dir.clone(),
            source,
        })?;
    std::thread::Builder::new()
        .name("keygate-dir-store".into())
        .spawn(move || store.run_blocking(rx))
        .map_err(|source| DirError::Dir { path: dir, source })?;
    Ok(watcher)
}

#[cfg(test)]
mod tests;
