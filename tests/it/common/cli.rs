//! Helpers for the command-line tests: run the keygate binary, and run `keygate serve` as a
//! child process on free loopback ports.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_keygate");

/// `keygate keys ARGS` as parsed, to run with `commands::keys::execute` in the test process.
pub fn keys(args: &[&str]) -> keygate::cli::KeysCommand {
    use clap::Parser;
    let argv = ["keygate", "keys"].iter().chain(args);
    match keygate::cli::Cli::try_parse_from(argv).unwrap().command {
        keygate::cli::Command::Keys(k) => k.command,
        _ => unreachable!(),
    }
}

/// `keygate` run in `dir` with none of the variables that would choose a store or data
/// directory for it, as a new user on a laptop runs it.
pub fn bare(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_remove("KEYGATE_STORE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KEYGATE_DATA_DIR");
    c
}

/// A scratch directory with a key store in `keys/`.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.tmp.path().join("keys")
    }

    pub fn store(&self) -> String {
        format!("dir:{}", self.keys_dir().display())
    }

    /// `keygate --store dir:<tmp>/keys ARGS`, with a clean environment for keygate's variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.tmp.path())
            .env_remove("KEYGATE_TOKEN")
            .env_remove("KEYGATE_STORE")
            .env_remove("KUBECONFIG")
            .env("USER", "tester")
            .args(["--store", &self.store()])
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keygate {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "keygate {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Creates a key with `extra` flags; returns (id, token).
    pub fn create(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["keys", "create", "--name", "test", "-o", "json"];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        (
            v["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET; returns the status code, or None if the connection failed.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `check` until true or the deadline; returns whether it became true.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `keygate serve` as a child process; killed on drop.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub ca: PathBuf,
    /// The data directory: generated certificates in `certs/`.
    pub data: PathBuf,
}

impl Serve {
    pub fn start(env: &Env, extra: &[&str]) -> Serve {
        let log = env.tmp.path().join("serve.log");
        let stderr = std::fs::File::create(&log).unwrap();
        Serve::start_with(env, extra, &[], stderr.into())
    }

    /// Like [`Serve::start`], with extra environment variables and standard error going to a
    /// pipe that nobody reads until the test takes it from `child.stderr` (then
    /// [`Serve::logs`] is empty).
    pub fn start_piped(env: &Env, extra: &[&str], vars: &[(&str, &str)]) -> Serve {
        Serve::start_with(env, extra, vars, Stdio::piped())
    }

    fn start_with(env: &Env, extra: &[&str], vars: &[(&str, &str)], stderr: Stdio) -> Serve {
        let data = env.tmp.path().join("data");
        let log = env.tmp.path().join("serve.log");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut c = env.cmd(&[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ]);
        c.args(extra)
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = c.spawn().unwrap();
        let ready = wait_for(Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status}: {}", read(&log));
            }
            http_get(admin, "/readyz") == Some(200)
        });
        assert!(ready, "serve not ready: {}", read(&log));
        Serve {
            child,
            addr,
            admin,
            log,
            ca: data.join("certs").join("ca.crt"),
            data,
        }
    }

    /// A client that trusts the generated CA and presents the generated client certificate.
    pub fn client(&self) -> super::ClientConfig {
        super::embedded_client(&self.data)
    }

    pub fn logs(&self) -> String {
        read(&self.log)
    }

    /// SIGTERM (graceful: pending last-use times are written), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let child = &mut self.child;
        if !wait_for(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Writes `dir/kubeconfig` for `server` with a token that no server accepts (creating a
/// client from it does not dial anything), and returns its path.
pub fn token_kubeconfig(dir: &Path, server: &str, user: &str) -> std::path::PathBuf {
    let kc = keygate::kubeconfig::single(
        &keygate::kubeconfig::ClusterInfo {
            name: "test",
            server,
            ca_pem: None,
        },
        user,
        kube::config::AuthInfo {
            token: Some("not-a-real-token".to_owned().into()),
            ..Default::default()
        },
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, keygate::kubeconfig::to_yaml(&kc).unwrap()).unwrap();
    path
}
