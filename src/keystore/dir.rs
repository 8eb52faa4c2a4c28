//! Key records as files: `keygate-<id lower>.yaml` in the key directory, the same Secret
//! document the dir store reads. Writes are atomic (temporary file + rename); an update first
//! re-reads the file and refuses to overwrite a record that changed since it was read.

use std::io;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{KeyStoreError, Refused, Stored, parse_stored, render};
use crate::fsutil::{self, WriteError};
use crate::record::KeyRecord;
use crate::record::file::{self, FileError, is_record_file};
use crate::token::IdKey;

#[derive(Debug, thiserror::Error)]
pub enum DirKeysError {
    #[error("cannot read the key directory {path}: {error} (check --store dir:PATH or --data-dir)")]
    List { path: PathBuf, error: io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("cannot remove {path}: {error}")]
    Remove { path: PathBuf, error: io::Error },
    #[error(
        "{0} is not a directory; pick a directory for the keys with --store dir:PATH or --data-dir"
    )]
    NotDir(PathBuf),
    #[error("cannot lock {path}: {error}")]
    Lock { path: PathBuf, error: io::Error },
}

/// The dir store, for writing.
#[derive(Debug, Clone)]
pub struct DirKeys {
    pub dir: PathBuf,
    /// Written into `metadata.namespace`, so `kubectl apply -f` of a file lands in the key namespace.
    pub namespace: String,
}

impl DirKeys {
    pub fn new(dir: PathBuf, namespace: impl Into<String>) -> Self {
        DirKeys {
            dir,
            namespace: namespace.into(),
        }
    }

    /// Takes the directory's write lock (flock on the directory itself), held until the
    /// returned handle is dropped. Every keygate writer (the CLI, the webhook's last-use writer)
    /// takes it for its read-modify-write, so none overwrites another's change.
    pub fn lock(&self) -> Result<std::fs::File, DirKeysError> {
        if self.dir.exists() && !self.dir.is_dir() {
            return Err(DirKeysError::NotDir(self.dir.clone()));
        }
        fsutil::create_dir_all(&self.dir)?;
        let err = |error| DirKeysError::Lock {
            path: self.dir.clone(),
            error,
        };
        let f = std::fs::File::open(&self.dir).map_err(err)?;
        f.lock().map_err(err)?;
        Ok(f)
    }

    fn default_path(&self, id: &IdKey) -> PathBuf {
        self.dir.join(format!("{}.yaml", id.record_name()))
    }

    /// Every record file with its Secret; files that do not parse are reported, not fatal.
    fn scan(&self) -> Result<(Vec<(PathBuf, Secret)>, Refused), DirKeysError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(error) => {
                return Err(DirKeysError::List {
                    path: self.dir.clone(),
                    error,
                });
            }
        };
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for entry in entries.flatten() {
            if !is_record_file(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            match file::read(&path) {
                Ok(s) => ok.push((path, s)),
                Err(e) => bad.push((path.display().to_string(), e.to_string())),
            }
        }
        ok.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((ok, bad))
    }

    /// The files defining key `id` (normally one).
    pub fn find(&self, id: &IdKey) -> Result<Vec<(PathBuf, Secret)>, DirKeysError> {
        let want = id.record_name();
        let default = self.default_path(id);
        if let Ok(s) = file::read(&default)
            && s.metadata.name.as_deref() == Some(want.as_str())
        {
            return Ok(vec![(default, s)]);
        }
        let (files, _) = self.scan()?;
        Ok(files
            .into_iter()
            .filter(|(_, s)| s.metadata.name.as_deref() == Some(want.as_str()))
            .collect())
    }

    pub fn list(&self) -> Result<(Vec<Stored>, Refused), DirKeysError> {
        let (files, mut bad) = self.scan()?;
        let mut ok = Vec::new();
        for (path, secret) in files {
            match KeyRecord::from_secret(&secret) {
                Ok(record) => ok.push(Stored { record, secret }),
                Err(e) => bad.push((path.display().to_string(), e.to_string())),
            }
        }
        Ok((ok, bad))
    }

    pub fn get(&self, id: &IdKey) -> Result<Stored, KeyStoreError> {
        match self.find(id)?.pop() {
            Some((_, secret)) => parse_stored(id, secret),
            None => Err(KeyStoreError::NotFound(id.to_string())),
        }
    }

    pub fn create(&self, record: &KeyRecord) -> Result<Stored, KeyStoreError> {
        let id = record.id.key();
        let _lock = self.lock()?;
        if !self.find(&id)?.is_empty() {
            return Err(KeyStoreError::Duplicate(id.to_string()));
        }
        let mut secret = render(record, &self.namespace, None);
        secret.metadata.creation_timestamp = Some(Time(jiff::Timestamp::now()));
        let path = self.default_path(&id);
        fsutil::write_atomic(
            &path,
            &file::encode(&path, &secret).map_err(DirKeysError::from)?,
            true,
        )
        .map_err(DirKeysError::from)?;
        parse_stored(&id, secret)
    }

    pub fn update(&self, old: &Stored, record: &KeyRecord) -> Result<Stored, KeyStoreError> {
        let id = old.record.id.key();
        let _lock = self.lock()?;
        let (path, current) = self
            .find(&id)?
            .pop()
            .ok_or_else(|| KeyStoreError::NotFound(id.to_string()))?;
        if current != old.secret {
            return Err(KeyStoreError::Conflict(id.to_string()));
        }
        let secret = render(record, &self.namespace, Some(&old.secret));
        fsutil::write_atomic(
            &path,
            &file::encode(&path, &secret).map_err(DirKeysError::from)?,
            true,
        )
        .map_err(DirKeysError::from)?;
        parse_stored(&id, secret)
    }

    /// Removes every file defining `id`; returns the record if it still parsed.
    pub fn delete(&self, id: &IdKey) -> Result<Option<Stored>, KeyStoreError> {
        let _lock = self.lock()?;
        let files = self.find(id)?;
        let Some((_, secret)) = files.first().cloned() else {
            return Err(KeyStoreError::NotFound(id.to_string()));
        };
        for (path, _) in &files {
            std::fs::remove_file(path).map_err(|error| DirKeysError::Remove {
                path: path.clone(),
                error,
            })?;
        }
        // A record that no longer parses can still be deleted.
        Ok(KeyRecord::from_secret(&secret)
            .ok()
            .map(|record| Stored { record, secret }))
    }
}
