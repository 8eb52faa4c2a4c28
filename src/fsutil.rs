//! Crash-safe file writes: a reader (the dir store, kube-apiserver reading a kubeconfig) sees the
//! old file or the new one, never half of either, and a failed write leaves nothing behind.
//! Also safe in a directory someone else can write to: temporaries get unpredictable names and
//! are created exclusively, never through a symlink, with their mode set explicitly; and the
//! directories keygate trusts (its data and key directories) are checked to be its own.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};

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

/// Creates `dir` and its missing parents with mode 0700, whatever the umask: they hold keys,
/// certificates and private keys. Existing directories are left as they are.
pub fn create_dir_all(dir: &Path) -> Result<(), WriteError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| WriteError::new(dir, e))
}

/// A directory keygate would trust that someone else controls.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "{path} ({flag}) belongs to uid {owner}, not to the user keygate runs as (uid {uid}); its owner could plant keys or certificates: chown it to uid {uid}, or choose another directory with {flag}"
    )]
    Owner {
        path: PathBuf,
        flag: &'static str,
        owner: u32,
        uid: u32,
    },
    #[error(
        "{path} ({flag}) is writable by {who}, who could plant keys or certificates: run `chmod go-w {path}` (0700 is best), or choose another directory with {flag}"
    )]
    Writable {
        path: PathBuf,
        flag: &'static str,
        who: &'static str,
    },
    #[error("cannot use {path} ({flag}): {error}")]
    Io {
        path: PathBuf,
        flag: &'static str,
        error: std::io::Error,
    },
    #[error(transparent)]
    Create(#[from] WriteError),
}

/// Creates `dir` (0700) if it is missing; otherwise requires it to be a directory owned by the
/// effective user and not writable by group or others. Whoever can write into a directory
/// keygate reads keys or certificates from can mint identities, so such a directory is refused
/// rather than used. `flag` names the option that chose the directory.
pub fn private_dir(dir: &Path, flag: &'static str) -> Result<(), TrustError> {
    if !check_private_dir(dir, flag)? {
        create_dir_all(dir)?;
    }
    Ok(())
}

/// The checks of [`private_dir`] without creating anything: `Ok(false)` when `dir` is missing
/// (a command checks everything before it writes; the directory is made when it is written).
pub fn check_private_dir(dir: &Path, flag: &'static str) -> Result<bool, TrustError> {
    let io = |error| TrustError::Io {
        path: dir.to_owned(),
        flag,
        error,
    };
    let meta = match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        other => other.map_err(io)?,
    };
    if !meta.is_dir() {
        return Err(io(std::io::Error::other("not a directory")));
    }
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(TrustError::Owner {
            path: dir.to_owned(),
            flag,
            owner: meta.uid(),
            uid,
        });
    }
    let who = match meta.mode() & 0o022 {
        0 => return Ok(true),
        0o020 => "its group",
        0o002 => "others",
        _ => "its group and others",
    };
    Err(TrustError::Writable {
        path: dir.to_owned(),
        flag,
        who,
    })
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
        Ok(FileStamp {
            ino: m.ino(),
            len: m.len(),
            modified: m.modified().ok(),
        })
    }
}

/// Writes `content` to `path` through a hidden temporary file in the same directory, fsynced and
/// renamed into place. `private` files get mode 0600, others 0644.
pub fn write_atomic(path: &Path, content: &[u8], private: bool) -> Result<(), WriteError> {
    write_atomic_if(path, content, private, None)
}

/// Like [`write_atomic`], but only replaces `path` if it is still the file `expected` describes
/// (checked right before the rename): a file deleted or replaced meanwhile by someone who does
/// not take keygate's lock (a plain `rm`, an editor) is not brought back. The check and the
/// rename are two steps, so the window is narrowed to microseconds, not closed. The new file is
/// private (0600), as key records are.
pub fn replace_if_unchanged(
    path: &Path,
    content: &[u8],
    expected: &FileStamp,
) -> Result<(), WriteError> {
    write_atomic_if(path, content, true, Some(expected))
}

/// Creates a new temporary file next to `name` in `dir`. The name is random and the file is
/// created exclusively (`O_EXCL`) without following a symlink (`O_NOFOLLOW`): in a directory
/// others can write to, a file or symlink planted at a predictable name would otherwise be
/// opened, written through and renamed into place with its planter's owner and mode. The mode
/// is then set explicitly, since the one given at creation is reduced by the umask.
fn create_temp(dir: &Path, name: &str, mode: u32) -> std::io::Result<(PathBuf, File)> {
    let mut attempt = 0;
    loop {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let tmp = dir.join(format!(".{name}.tmp-{suffix}"));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp);
        match opened {
            Ok(f) => {
                if let Err(e) = f.set_permissions(fs::Permissions::from_mode(mode)) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                return Ok((tmp, f));
            }
            // 95 bits of name: a clash is someone squatting, not chance; a few tries, then say so.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 4 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
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
    let mode = if private { 0o600 } else { 0o644 };
    let (tmp, mut f) = create_temp(dir, &name, mode).map_err(|e| WriteError::new(path, e))?;
    let result = (|| {
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
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
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

    /// The temporary name used to be `.<name>.tmp-<pid>`, opened with create + truncate: a
    /// symlink planted there was written through (the content landed in its target, and the
    /// symlink was renamed into place), a planted file kept its planter's owner and mode.
    #[test]
    fn a_file_or_symlink_planted_at_the_old_temporary_name_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        fs::write(&target, "untouched").unwrap();
        let pid = std::process::id();
        let (key, kubeconfig) = (
            tmp.path().join("ca.key"),
            tmp.path().join("webhook.kubeconfig"),
        );
        std::os::unix::fs::symlink(&target, tmp.path().join(format!(".ca.key.tmp-{pid}"))).unwrap();
        let planted = tmp.path().join(format!(".webhook.kubeconfig.tmp-{pid}"));
        fs::write(&planted, "").unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).unwrap();
        // Owned by someone else too, when the test may give it away (it runs as root in CI).
        let _ = std::os::unix::fs::chown(&planted, Some(65534), Some(65534));

        write_atomic(&key, b"private key", true).unwrap();
        write_atomic(&kubeconfig, b"kubeconfig", true).unwrap();

        assert_eq!(fs::read_to_string(&target).unwrap(), "untouched");
        for (path, content) in [(&key, "private key"), (&kubeconfig, "kubeconfig")] {
            let meta = fs::symlink_metadata(path).unwrap();
            assert!(meta.file_type().is_file(), "{}", path.display());
            assert_eq!(meta.mode() & 0o777, 0o600, "{}", path.display());
            assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
            assert_eq!(fs::read_to_string(path).unwrap(), content);
        }
    }

    #[test]
    fn temporary_names_are_unpredictable() {
        let tmp = tempfile::tempdir().unwrap();
        let names: std::collections::HashSet<_> = (0..20)
            .map(|_| create_temp(tmp.path(), "f", 0o600).unwrap().0)
            .collect();
        assert_eq!(names.len(), 20);
        assert!(names.iter().all(|n| {
            let n = n.file_name().unwrap().to_string_lossy();
            n.starts_with(".f.tmp-") && !n.ends_with(&std::process::id().to_string())
        }));
    }

    #[test]
    fn created_directories_are_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(tmp.path().join(d)).unwrap().mode();
            assert_eq!(mode & 0o777, 0o700, "{d}");
        }
        private_dir(&tmp.path().join("fresh"), "--data-dir").unwrap();
        let mode = fs::metadata(tmp.path().join("fresh")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_directory_others_control_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keygate-data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir, "--data-dir").unwrap();

        for (mode, who) in [
            (0o777, "its group and others"),
            (0o775, "its group"),
            (0o1757, "others"),
        ] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let e = private_dir(&dir, "--data-dir").unwrap_err().to_string();
            assert!(e.contains(&format!("writable by {who}")), "{mode:o}: {e}");
            assert!(e.contains(&dir.display().to_string()), "{e}");
            assert!(e.contains("chmod go-w") && e.contains("--data-dir"), "{e}");
        }

        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        // Giving a directory away takes root (or CAP_CHOWN); CI runs the tests as root.
        if std::os::unix::fs::chown(&dir, Some(65534), None).is_ok() {
            let e = private_dir(&dir, "--store dir:PATH")
                .unwrap_err()
                .to_string();
            assert!(e.contains("belongs to uid 65534"), "{e}");
            assert!(
                e.contains("chown it to uid") && e.contains("--store dir:PATH"),
                "{e}"
            );
        }

        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(private_dir(&file, "--data-dir").is_err());
    }
}
