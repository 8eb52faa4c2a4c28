//! The record as a file: one Secret document per file, YAML or JSON by extension, read by the
//! dir store's index feeder and written by the dir key store. Both sides of the format live
//! here so they cannot drift apart.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("{path} is not a Secret document: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot serialise the record for {path}: {reason}")]
    Serialise { path: PathBuf, reason: String },
}

impl FileError {
    /// The file is not there (any more): usually a race with a delete, not a fault.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Read { error, .. } if error.kind() == io::ErrorKind::NotFound)
    }
}

fn is_json(path: &Path) -> bool {
    path.extension() == Some(OsStr::new("json"))
}

/// Whether a directory entry is a record file (by name). Hidden files are not: atomic writers
/// use them as temporaries.
pub fn is_record_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Reads one record file as a Secret (JSON or YAML by extension).
pub fn read(path: &Path) -> Result<Secret, FileError> {
    let bytes = std::fs::read(path).map_err(|error| FileError::Read {
        path: path.to_owned(),
        error,
    })?;
    let parsed = if is_json(path) {
        serde_json::from_slice::<Secret>(&bytes).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_slice::<Secret>(&bytes).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| FileError::Parse {
        path: path.to_owned(),
        reason,
    })
}

/// Serialises a Secret in the format the file name asks for (JSON or YAML).
pub fn encode(path: &Path, secret: &Secret) -> Result<Vec<u8>, FileError> {
    let encoded = if is_json(path) {
        serde_json::to_vec_pretty(secret).map_err(|e| e.to_string())
    } else {
        serde_saphyr::to_string(secret)
            .map(String::into_bytes)
            .map_err(|e| e.to_string())
    };
    encoded.map_err(|reason| FileError::Serialise {
        path: path.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::KeyRecord;
    use crate::token::{KeyId, SecretHash};

    #[test]
    fn written_files_read_back_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let rec = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), "ci");
        let secret = rec.to_secret("keygate-system");
        for name in ["a.yaml", "b.json"] {
            let path = dir.path().join(name);
            std::fs::write(&path, encode(&path, &secret).unwrap()).unwrap();
            let back = read(&path).unwrap();
            assert_eq!(KeyRecord::from_secret(&back).unwrap(), rec, "{name}");
        }
        let missing = read(&dir.path().join("gone.yaml")).unwrap_err();
        assert!(missing.is_not_found());
    }

    #[test]
    fn only_visible_yaml_and_json_files_are_records() {
        for (name, want) in [
            ("k.yaml", true),
            ("k.yml", true),
            ("k.json", true),
            (".k.yaml", false),
            ("k.txt", false),
            ("..data", false),
        ] {
            assert_eq!(is_record_file(OsStr::new(name)), want, "{name}");
        }
    }
}
