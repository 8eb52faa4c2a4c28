//! The README's first command: `keygate serve` with no store flags runs embedded, generates its
//! certificates and webhook kubeconfig, and authenticates a hand-written key record. Runs the
//! real binary.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use keygate::record::KeyRecord;
use keygate::token::{KeyId, Token};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serve {
    child: Child,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    /// Everything the process printed, read continuously so a full pipe never stalls it.
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn drain(
    mut pipe: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Serve {
    fn start(data_dir: &std::path::Path, extra: &[&str]) -> Serve {
        let (port, admin_port) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(extra)
            .current_dir(data_dir)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("KEYGATE_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            drain(child.stdout.take().unwrap(), output.clone()),
            drain(child.stderr.take().unwrap(), output.clone()),
        ];
        Serve {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            admin: ([127, 0, 0, 1], admin_port).into(),
            output,
            readers,
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok((200, _))) =
                tokio::time::timeout(Duration::from_secs(1), try_admin_get(self.admin, "/readyz"))
                    .await
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "keygate serve exited with {status}:\n{}",
                    self.output.lock().unwrap()
                );
            }
            assert!(Instant::now() < deadline, "keygate serve not ready in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigterm(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then the exit status and everything it printed. Waits on a blocking thread so
    /// the test's runtime keeps running its client connections (an HTTP/2 client must answer
    /// the server's shutdown ping for the connection to close early).
    async fn terminate(self) -> (std::process::ExitStatus, String) {
        self.sigterm();
        let Serve {
            mut child,
            output,
            readers,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            for r in readers {
                let _ = r.join();
            }
            let out = std::mem::take(&mut *output.lock().unwrap());
            (status, out)
        })
        .await
        .unwrap()
    }
}

async fn try_admin_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    tokio::net::TcpStream::connect(addr).await?;
    Ok(admin_get(addr, path).await)
}

#[tokio::test]
async fn embedded_default_serves_a_hand_written_key_and_logs_no_secret() {
    let work = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(work.path(), &[]);
    serve.wait_ready().await;

    let data = work.path().join("keygate-data");
    for f in [
        "certs/ca.crt",
        "certs/server.crt",
        "certs/server.key",
        "certs/client.crt",
        "webhook.kubeconfig",
    ] {
        assert!(data.join(f).exists(), "{f} not generated");
    }
    let kubeconfig = std::fs::read_to_string(data.join("webhook.kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://{}/authenticate", serve.addr)),
        "{kubeconfig}"
    );

    // A record written by hand, as the README shows.
    let token = Token::generate(KeyId::generate());
    let mut rec = KeyRecord::new(token.id.clone(), token.secret_hash(), "by hand");
    rec.role = Some(keygate::record::Role::View);
    write_record(&data.join("keys"), &rec);

    let client = embedded_client(&data);
    let secret = token.expose();
    let mut ok = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok && Instant::now() < deadline {
        let mut c = client.connect(serve.addr, Proto::Http1).await.unwrap();
        let r = c
            .post(
                "/authenticate?timeout=30s",
                review_body(FIXTURE_V1, &secret),
            )
            .await;
        ok = r.json()["status"]["authenticated"] == true;
        if ok {
            let user = &r.json()["status"]["user"];
            assert_eq!(
                user["username"],
                format!("service-account-{}", token.id.key())
            );
            assert_eq!(
                user["groups"],
                serde_json::json!(["keygate:keys", "keygate:view"])
            );
        }
    }
    assert!(ok, "hand-written key never authenticated");
    // A wrong secret for the same key, to log a denial too.
    let mut c = client.connect(serve.addr, Proto::Http2).await.unwrap();
    let wrong = format!("{}{}", &secret[..26], "Z".repeat(43));
    let r = c
        .post("/authenticate", review_body(FIXTURE_V1BETA1, &wrong))
        .await;
    assert_eq!(r.json()["status"]["authenticated"], false);

    let (status, logs) = serve.terminate().await;
    assert!(
        status.success(),
        "graceful exit on SIGTERM: {status}\n{logs}"
    );
    assert!(
        logs.contains("tokenreview"),
        "decisions are logged:\n{logs}"
    );
    assert!(
        logs.contains("wrong_secret"),
        "{}",
        &logs[logs.len().saturating_sub(6000)..]
    );
    assert!(logs.contains(token.id.as_str()), "key id is logged");
    // Not the secret, not a prefix of it, not the full token, even at TRACE level.
    assert!(!logs.contains(&secret[26..34]), "secret leaked into logs");
    assert!(
        !logs.contains(&wrong[26..34]),
        "wrong secret leaked into logs"
    );
}

#[tokio::test]
async fn json_log_format_emits_one_structured_event_per_decision() {
    let work = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(work.path(), &["--log-format", "json"]);
    serve.wait_ready().await;
    let mut c = embedded_client(&work.path().join("keygate-data"))
        .connect(serve.addr, Proto::Http1)
        .await
        .unwrap();
    let r = c
        .review("kg_AAAAAAAAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")
        .await;
    assert_eq!(r.json()["status"]["authenticated"], false);
    let (status, logs) = serve.terminate().await;
    assert!(status.success());
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "tokenreview")
        .collect();
    assert_eq!(events.len(), 1, "{logs}");
    let e = &events[0];
    assert_eq!(e["key_id"], "AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(e["username"], "service-account-aaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(e["result"], "denied");
    assert_eq!(e["reason"], "unknown_key");
    assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(e["duration_us"].is_u64());
    assert!(!logs.contains("BBBBBBBB"), "secret leaked");
}

#[tokio::test]
async fn shutdown_delay_fails_readiness_but_keeps_answering_until_it_ends() {
    let work = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(work.path(), &["--shutdown-delay", "3s"]);
    serve.wait_ready().await;
    let client = embedded_client(&work.path().join("keygate-data"));
    serve.sigterm();
    // Readiness goes first...
    let deadline = Instant::now() + Duration::from_secs(2);
    while admin_get(serve.admin, "/readyz").await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while new connections are still answered during the delay.
    let mut c = client.connect(serve.addr, Proto::Http1).await.unwrap();
    let r = c.review("foreign-token").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"]["authenticated"], false);
    drop(c);
    let (status, logs) = serve.terminate().await;
    assert!(status.success(), "{logs}");
    assert!(logs.contains("/readyz fails"), "{logs}");
}

/// The embedded mode requires the client certificate it generated (the one in its webhook
/// kubeconfig); `--allow-unauthenticated-clients` turns that off.
#[tokio::test]
async fn embedded_mode_answers_only_its_generated_client_certificate() {
    let work = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(work.path(), &[]);
    serve.wait_ready().await;
    let data = work.path().join("keygate-data");
    let ca = std::fs::read_to_string(data.join("certs/ca.crt")).unwrap();
    let token = "kg_AAAAAAAAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let mut c = embedded_client(&data)
        .connect(serve.addr, Proto::Http2)
        .await
        .unwrap();
    assert_eq!(c.review(token).await.status, 200);
    assert_no_answer(&ClientConfig::trusting(&ca), serve.addr, token).await;
    let other = keygate::pki::generate_bundle(&["localhost".into()], "intruder", 30).unwrap();
    assert_no_answer(
        &ClientConfig::trusting(&ca).with_identity(&other.client),
        serve.addr,
        token,
    )
    .await;
    let (status, logs) = serve.terminate().await;
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("client_ca="),
        "the CA in use is logged: {logs}"
    );

    let mut serve = Serve::start(work.path(), &["--allow-unauthenticated-clients"]);
    serve.wait_ready().await;
    let mut c = ClientConfig::trusting(&ca)
        .connect(serve.addr, Proto::Http1)
        .await
        .unwrap();
    assert_eq!(c.review(token).await.status, 200);
    drop(c);
    serve.terminate().await;
}

/// With --tls-cert, a listener that is not on loopback needs --client-ca, or the explicit
/// --allow-unauthenticated-clients; in a cluster the default listener (0.0.0.0) is such a one.
#[test]
fn a_non_loopback_listener_without_client_ca_is_refused_unless_allowed() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    keygate::pki::generate_bundle(&["localhost".into()], "kube-apiserver", 30)
        .unwrap()
        .write(&certs)
        .unwrap();
    let (cert, key) = (certs.join("server.crt"), certs.join("server.key"));
    // `--store kube` without a cluster fails at the next step, before anything listens.
    let run = |listen: Option<&str>, extra: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keygate"));
        c.current_dir(work.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KEYGATE_ALLOW_UNAUTHENTICATED_CLIENTS")
            .env("KUBECONFIG", work.path().join("none"))
            .env("HOME", work.path())
            .args(["serve", "--store", "kube", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .args(listen.map(|l| ["--listen", l]).into_iter().flatten())
            .args(extra)
            .envs(env.iter().copied());
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for (listen, env) in [
        (Some("0.0.0.0:8443"), &[][..]),
        (Some("[::]:8443"), &[][..]),
        (Some("10.1.2.3:8443"), &[][..]),
        (None, &[("KUBERNETES_SERVICE_HOST", "10.96.0.1")][..]),
    ] {
        let err = run(listen, &[], env);
        assert!(
            err.contains("--client-ca") && err.contains("--allow-unauthenticated-clients"),
            "{listen:?}: {err}"
        );
    }
    for (extra, env) in [
        (&["--allow-unauthenticated-clients"][..], &[][..]),
        (
            &[][..],
            &[("KEYGATE_ALLOW_UNAUTHENTICATED_CLIENTS", "true")][..],
        ),
        (&["--client-ca", "ca.pem"][..], &[][..]),
    ] {
        let err = run(Some("0.0.0.0:8443"), extra, env);
        assert!(
            !err.contains("refusing to serve"),
            "{extra:?} {env:?}: {err}"
        );
        assert!(err.contains("--kubeconfig"), "{err}");
    }
    // Loopback needs neither.
    let err = run(Some("127.0.0.1:8443"), &[], &[]);
    assert!(!err.contains("refusing to serve"), "{err}");
}
