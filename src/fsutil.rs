//! Crash-safe file writes: a reader (the dir store, kube-apiserver reading a kubeconfig) sees the
//! old file or the new one, never half of either, and a failed write leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}{hint}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
    hint: &'static str,
}

impl WriteError {
    fn new(path: &Path, source: std::io::Error) -> Self {
        let hint = match source.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (check the directory's permissions, or choose another with --data-dir or --store dir:PATH)"
            }
            _ => "",
        };
        WriteError {
            path: path.to_owned(),
            source,
            hint,
        }
    }
}

pub fn create_dir_all(dir: &Path) -> Result<(), WriteError> {
    fs::create_dir_all(dir).map_err(|e| WriteError::new(dir, e))
}

/// Writes `content` to `path` through a hidden temporary file in the same directory, fsynced and
/// renamed into place. `private` files get mode 0600.
pub fn write_atomic(path: &Path, content: &[u8], private: bool) -> Result<(), WriteError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir).and_then(|d| d.sync_all())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(WriteError::new(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_cleans_up_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f.yaml");
        write_atomic(&p, b"one", false).unwrap();
        write_atomic(&p, b"two", true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let missing = tmp.path().join("no/such/dir/f.yaml");
        assert!(write_atomic(&missing, b"x", false).is_err());
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
