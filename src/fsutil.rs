//! Crash-safe file writes: a reader (the dir store, kube-apiserver reading a kubeconfig) sees the
//! old file or the new one, never half of either, and a failed write leaves nothing behind.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {error}{hint}")]
pub struct WriteError {
    pub path: PathBuf,
    pub error: std::io::Error,
    hint: &'static str,
}

impl WriteError {
    fn new(path: &Path, error: std::io::Error) -> Self {
        let hint = match error.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " (check the directory's permissions, or choose another with --data-dir or --store dir:PATH)"
            }
            _ => "",
        };
        WriteError {
            path: path.to_owned(),
            error,
            hint,
        }
    }
}

pub fn create_dir_all(dir: &Path) -> Result<(), WriteError> {
    fs::create_dir_all(dir).map_err(|e| WriteError::new(dir, e))
}

/// Identity of a file as read: a replace only goes ahead if the file is still this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let m = fs::metadata(path)?;
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        Ok(FileStamp {
            ino,
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

/// Writes `content` to `path` through a hidden temporary file in the same directory, fsynced and
/// renamed into place. `private` files get mode 0600.
pub fn write_atomic(path: &Path, content: &[u8], private: bool) -> Result<(), WriteError> {
    write_atomic_if(path, content, private, None)
}

/// Like [`write_atomic`], but only replaces `path` if it is still the file `expected` describes
/// (checked right before the rename): a file deleted or replaced meanwhile by someone who does
/// not take keygate's lock (a plain `rm`, an editor) is not brought back. The check and the
/// rename are two steps, so the window is narrowed to microseconds, not closed.
pub fn replace_if_unchanged(
    path: &Path,
    content: &[u8],
    expected: &FileStamp,
) -> Result<(), WriteError> {
    write_atomic_if(path, content, false, Some(expected))
}

fn write_atomic_if(
    path: &Path,
    content: &[u8],
    private: bool,
    expected: Option<&FileStamp>,
) -> Result<(), WriteError> {
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
        if let Some(expected) = expected
            && FileStamp::of(path).ok().as_ref() != Some(expected)
        {
            return Err(std::io::Error::other(
                "the file changed or was removed meanwhile; not replaced",
            ));
        }
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
        // A file removed (or replaced) after it was read is not brought back.
        let stamp = FileStamp::of(&p).unwrap();
        fs::remove_file(&p).unwrap();
        assert!(replace_if_unchanged(&p, b"three", &stamp).is_err());
        assert!(!p.exists(), "a removed file must stay removed");
        write_atomic(&p, b"four", false).unwrap();
        let stamp = FileStamp::of(&p).unwrap();
        replace_if_unchanged(&p, b"five", &stamp).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"five");

        let missing = tmp.path().join("no/such/dir/f.yaml");
        assert!(write_atomic(&missing, b"x", false).is_err());
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
