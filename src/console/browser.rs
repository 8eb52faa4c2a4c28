//! Opening the console in the person's browser.
//!
//! The session URL is a secret, and a command line is not: any local user can read another's
//! process arguments in `/proc`. So the browser is given a file instead (owner-only, in a
//! private directory), an HTML page that moves on to the URL, as Jupyter does. The file is
//! removed when the returned [`Launched`] is dropped, at the console's exit.

use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::security::random_secret;

/// The launcher file, removed on drop.
#[derive(Debug)]
pub struct Launched {
    dir: PathBuf,
    /// What was run to open it, for the message.
    pub opener: String,
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The program (and its arguments) that opens a file in a browser here, if there is one:
/// `$BROWSER` (the first of its `:`-separated entries), else the desktop's opener when a
/// display is there to show it.
fn opener() -> Option<Vec<String>> {
    if let Some(b) = std::env::var("BROWSER").ok().and_then(|b| {
        b.split(':')
            .map(str::trim)
            .find(|s| !s.is_empty())
            .map(str::to_owned)
    }) {
        return Some(b.split_whitespace().map(str::to_owned).collect());
    }
    if cfg!(target_os = "macos") {
        return Some(vec!["open".to_owned()]);
    }
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    display.then(|| vec!["xdg-open".to_owned()])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// Writes the launcher page for `url` into a new private directory under `tmp`.
fn write_launcher(tmp: &Path, url: &str) -> io::Result<(PathBuf, PathBuf)> {
    let dir = tmp.join(format!("keygate-console-{}", &random_secret()[..12]));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let file = dir.join("open.html");
    let url = escape(url);
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" \
         content=\"0; url={url}\"><title>keygate console</title>\
         <p><a href=\"{url}\">Open the keygate console</a></p>\n"
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)?;
    f.write_all(html.as_bytes())?;
    Ok((dir, file))
}

/// Opens `url` in a browser. `Ok(None)`: there is none here (no `$BROWSER`, no display).
pub fn open(url: &str) -> io::Result<Option<Launched>> {
    let Some(mut cmd) = opener() else {
        return Ok(None);
    };
    let (dir, file) = write_launcher(&std::env::temp_dir(), url)?;
    let launched = Launched {
        dir,
        opener: cmd.join(" "),
    };
    let program = cmd.remove(0);
    let path = file.display().to_string();
    // `$BROWSER` may say where the file goes (`%s`); otherwise it comes last.
    let args: Vec<String> = if cmd.iter().any(|a| a.contains("%s")) {
        cmd.iter().map(|a| a.replace("%s", &path)).collect()
    } else {
        cmd.into_iter().chain([path]).collect()
    };
    let mut child = Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Reaped in the background: a browser may run for as long as the console does.
    std::thread::spawn(move || child.wait());
    Ok(Some(launched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_launcher_is_private_and_escapes_the_url() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, file) = write_launcher(tmp.path(), "http://127.0.0.1:1/?s=a\"b&c").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        let html = std::fs::read_to_string(&file).unwrap();
        assert!(
            html.contains("url=http://127.0.0.1:1/?s=a&quot;b&amp;c"),
            "{html}"
        );
        let launched = Launched {
            dir: dir.clone(),
            opener: String::new(),
        };
        drop(launched);
        assert!(!dir.exists());
    }
}
