//! The record as a file: one Secret document per file, YAML or JSON by extension, read by the
//! dir store's index feeder and written by the dir key store. Both sides of the format live
//! here so they cannot drift apart.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use rustix::fs::OFlags;

/// The largest record file read. A record is well under 1 KiB; the cap leaves room for
/// comments while a huge file (or one that keeps growing, like /dev/zero behind a name) cannot
/// exhaust the memory of the dir store, which reads every file of the directory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "{path} is a symbolic link to a file outside the key directory, which is not followed: put the record itself in the key directory"
    )]
    Symlink { path: PathBuf },
    #[error("{path} is a {kind}, not a regular file: only regular files are read as records")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{path} is over {MAX_FILE_BYTES} bytes, the limit for a record file (a record is under 1 KiB)"
    )]
    TooLarge { path: PathBuf },
    /// `reason` says where and what kind of error, never what the file says there: a broken
    /// file may hold anything (a token pasted by mistake), and this is logged and printed.
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

/// Reads a record file's bytes, if it is a regular file of reasonable size. Anyone who can put
/// a name in the key directory could otherwise point the dir store at a file elsewhere
/// (a symlink: its content would surface in parse errors), stall it (a FIFO blocks the open
/// until a writer comes) or exhaust it (/dev/zero, a huge file).
///
/// A symlink whose target lies inside the key directory itself is followed: that is how a
/// Kubernetes Secret or ConfigMap volume lays out its files (`k.yaml -> ..data/k.yaml`), and it
/// reaches nothing the directory does not already hold. The target is then opened with the
/// same checks.
fn read_regular(path: &Path) -> Result<Vec<u8>, FileError> {
    let read_err = |error| FileError::Read {
        path: path.to_owned(),
        error,
    };
    let file = match open_no_follow(path) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            let target = inside_parent(path).ok_or_else(|| FileError::Symlink {
                path: path.to_owned(),
            })?;
            open_no_follow(&target)
        }
        other => other,
    }
    .map_err(read_err)?;
    // Checked on the open file, so the answer is about what is read, not a name since swapped.
    let meta = file.metadata().map_err(read_err)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = match () {
            _ if ft.is_dir() => "directory",
            _ if ft.is_fifo() => "FIFO",
            _ if ft.is_socket() => "socket",
            _ if ft.is_char_device() => "character device",
            _ if ft.is_block_device() => "block device",
            _ => "special file",
        };
        return Err(FileError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    let too_large = || FileError::TooLarge {
        path: path.to_owned(),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte over the cap tells a file that grew since the fstat from one that did not.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens `path` for reading. O_NOFOLLOW: a symlink fails with ELOOP instead of being followed.
/// O_NONBLOCK: opening a FIFO returns at once (it is refused after the open); it changes
/// nothing for regular files.
fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK;
    OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
}

/// Where the symlink `path` leads, if that is inside the directory holding it.
fn inside_parent(path: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(path.parent()?).ok()?;
    let target = std::fs::canonicalize(path).ok()?;
    (target.starts_with(&dir) && target != dir).then_some(target)
}

/// Why a YAML document is not a Secret, from the error's kind and location only. Both the
/// message and the snippet serde-saphyr renders quote the file (an unexpected value, the lines
/// around the error), so neither is used.
fn yaml_reason(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    let what = match e.without_snippet() {
        E::SerdeMissingField { field, .. } => format!("the required field `{field}` is missing"),
        E::SerdeInvalidType { .. }
        | E::SerdeInvalidValue { .. }
        | E::SerdeInvalidLength { .. }
        | E::SerdeUnknownVariant { .. }
        | E::SerdeUnknownField { .. }
        | E::Message { .. } => "a field has the wrong type or value".to_owned(),
        // `expected` is the parser's own word ("mapping", ...), not the file's.
        E::Unexpected { expected, .. } => {
            format!("a value is of the wrong kind (expected {expected})")
        }
        E::NullIntoString { .. } | E::InvalidBinaryBase64 { .. } | E::BinaryNotUtf8 { .. } => {
            "a field has the wrong type or value".to_owned()
        }
        E::Eof { .. } => "it ends too early".to_owned(),
        E::MultipleDocuments { .. } => "it holds more than one YAML document".to_owned(),
        E::DuplicateMappingKey { .. } => "a key is repeated".to_owned(),
        E::Budget { .. } => "it exceeds the parser's limits".to_owned(),
        _ => "it is not valid YAML".to_owned(),
    };
    match e.location() {
        Some(l) => format!("{what} (line {}, column {})", l.line(), l.column()),
        None => what,
    }
}

/// Like [`yaml_reason`], for JSON (as the webhook's 400 answers do it).
fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "it cannot be read",
        Category::Syntax => "it is not valid JSON",
        Category::Data => "a field has the wrong type or value",
        Category::Eof => "it ends before the JSON does",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Reads one record file as a Secret (JSON or YAML by extension). Only a regular file of at most
/// [`MAX_FILE_BYTES`], not reached through a symlink that leaves the directory, is read.
pub fn read(path: &Path) -> Result<Secret, FileError> {
    let bytes = read_regular(path)?;
    let parsed = if is_json(path) {
        serde_json::from_slice::<Secret>(&bytes).map_err(|e| json_reason(&e))
    } else if let Some(secret) = super::plain_yaml::parse(&bytes) {
        // Most record files, read without the full parser (see `plain_yaml`).
        Ok(secret)
    } else {
        let options = serde_saphyr::options! { with_snippet: false };
        serde_saphyr::from_slice_with_options::<Secret>(&bytes, options)
            .map_err(|e| yaml_reason(&e))
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

    fn valid_record(dir: &Path) -> PathBuf {
        let rec = KeyRecord::new(KeyId::generate(), SecretHash::of(b"s"), "ci");
        let path = dir.join("valid.yaml");
        let secret = rec.to_secret("keygate-system");
        std::fs::write(&path, encode(&path, &secret).unwrap()).unwrap();
        path
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    /// The layout of a Kubernetes Secret volume: `k.yaml -> ..data/k.yaml`, `..data -> ..2026_x`.
    #[test]
    fn a_symlink_within_the_directory_is_followed_as_in_a_secret_volume() {
        let dir = tempfile::tempdir().unwrap();
        let version = dir.path().join("..2026_12_01");
        std::fs::create_dir(&version).unwrap();
        valid_record(&version);
        std::os::unix::fs::symlink("..2026_12_01", dir.path().join("..data")).unwrap();
        let link = dir.path().join("k.yaml");
        std::os::unix::fs::symlink("..data/valid.yaml", &link).unwrap();
        assert!(read(&link).is_ok());
        // Still no FIFO through an inner link.
        let fifo = version.join("fifo.yaml");
        mkfifo(&fifo);
        std::os::unix::fs::symlink("..data/fifo.yaml", dir.path().join("f.yaml")).unwrap();
        let e = read(&dir.path().join("f.yaml")).unwrap_err();
        assert!(matches!(e, FileError::NotRegular { .. }), "{e}");
    }

    #[test]
    fn a_symlink_is_not_followed_even_to_a_valid_record() {
        let (outside, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let target = valid_record(outside.path());
        assert!(read(&target).is_ok());
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = read(&link).unwrap_err();
        assert!(matches!(e, FileError::Symlink { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
        let e = read(&dir.path().join("zero.yaml")).unwrap_err();
        assert!(matches!(e, FileError::Symlink { .. }), "{e}");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.yaml");
        mkfifo(&fifo);
        // Before the fix this open waited for a writer forever.
        let e = read(&fifo).unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { kind: "FIFO", .. }),
            "{e}"
        );
        let e = read(Path::new("/dev/zero")).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            read(dir.path()).unwrap_err(),
            FileError::NotRegular { .. }
        ));
    }

    #[test]
    fn a_file_over_the_cap_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = valid_record(dir.path());
        // A valid record padded with a comment past the cap.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize)));
        std::fs::write(&path, &text).unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("65536 bytes"), "{e}");
    }

    /// serde-saphyr's messages quote the value it did not expect and render a snippet of the
    /// lines around the error; serde_json's quote the value. A broken record may hold a token
    /// pasted by mistake, and this message is logged and printed by `keys list`.
    #[test]
    fn parse_errors_never_quote_the_file() {
        const LEAK: &str = "kg_LEAKLEAKLEAKLEAKLEAKLE_SECRETSECRETSECRETSECRETSECRETSECRETSEC";
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "syntax.yaml",
                format!("kind: Secret\nstringData: {{ token: {LEAK}\n  : [\n"),
            ),
            ("type.yaml", format!("kind: Secret\nstringData: {LEAK}\n")),
            (
                "type2.yaml",
                format!("kind: Secret\nmetadata:\n  name: [{LEAK}]\n"),
            ),
            ("tab.yaml", format!("kind: Secret\n\t{LEAK}: x\n")),
            ("syntax.json", format!("{{\"kind\": \"Secret\", {LEAK}}}")),
            (
                "type.json",
                format!("{{\"kind\": \"Secret\", \"stringData\": \"{LEAK}\"}}"),
            ),
        ];
        for (name, text) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            let e = read(&path).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(matches!(e, FileError::Parse { .. }), "{name}: {shown}");
            assert!(!shown.contains("LEAK"), "{name}: {shown}");
            assert!(shown.contains("line "), "{name}: {shown}");
        }
    }
}
