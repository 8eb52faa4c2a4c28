//! Faults: a broken certificate on reload, an unwritable dir store, failing last-use writes, and
//! SIGTERM under load. The CLI and SIGTERM cases run the real binary.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::cli::{BIN, Env, Serve};
use crate::common::{
    ClientConfig, FIXTURE_V1, Proto, ServerOptions, TestServer, eventually, review_body,
};
use keygate::keystore::DirKeys;
use keygate::usage::{self, UsageWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const SOON: Duration = Duration::from_secs(5);

async fn authenticates(client: &ClientConfig, addr: std::net::SocketAddr, token: &str) -> bool {
    let Ok(mut c) = client.connect(addr, Proto::Http2).await else {
        return false;
    };
    let r = c.review(token).await;
    r.status == 200 && r.json()["status"]["authenticated"] == true
}

// ---------------------------------------------------------------------------------------------
// (a) A broken certificate on reload: the old one keeps serving; the error is logged and counted.

#[tokio::test]
async fn broken_certificate_on_reload_keeps_the_old_one_logged_and_counted() {
    let env = Env::new();
    let (_, token) = env.create(&[]);
    let tls_dir = env.tmp.path().join("tls");
    let bundle =
        keygate::pki::generate_bundle(&["localhost".into()], "kube-apiserver", 30).unwrap();
    bundle.write(&tls_dir).unwrap();
    let (cert, key) = (tls_dir.join("server.crt"), tls_dir.join("server.key"));
    let serve = Serve::start(
        &env,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-reload-interval",
            "100ms",
        ],
    );
    let client = ClientConfig::trusting(&bundle.ca.cert);
    assert!(eventually(SOON, || authenticates(&client, serve.addr, &token)).await);
    let first = client
        .connect(serve.addr, Proto::Http1)
        .await
        .unwrap()
        .peer_cert
        .unwrap();

    for (what, bytes) in [
        ("garbage", b"garbage".to_vec()),
        ("empty file", Vec::new()),
        (
            "truncated PEM",
            bundle.server.cert.as_bytes()[..100].to_vec(),
        ),
        // A valid certificate that does not match the key.
        ("certificate of another key", {
            let other = keygate::pki::generate_bundle(&["localhost".into()], "x", 30).unwrap();
            other.server.cert.into_bytes()
        }),
    ] {
        let before = failures(&serve).await;
        keygate::fsutil::write_atomic(&cert, &bytes, false).unwrap();
        assert!(
            eventually(SOON, || async { failures(&serve).await > before }).await,
            "{what}: reload failure not counted"
        );
        // The old certificate still serves, old and new connections alike.
        let c = client.connect(serve.addr, Proto::Http1).await.unwrap();
        assert_eq!(c.peer_cert.unwrap(), first, "{what}");
        assert!(authenticates(&client, serve.addr, &token).await, "{what}");
    }
    assert!(
        serve.logs().contains("keeping the current certificate"),
        "reload failure not logged:\n{}",
        serve.logs()
    );
    // A good certificate again is picked up.
    let next =
        keygate::pki::issue(&bundle.ca, "keygate", None, &["localhost".into()], true, 30).unwrap();
    keygate::fsutil::write_atomic(&key, next.key.as_bytes(), true).unwrap();
    keygate::fsutil::write_atomic(&cert, next.cert.as_bytes(), false).unwrap();
    assert!(
        eventually(SOON, || async {
            client
                .connect(serve.addr, Proto::Http1)
                .await
                .is_ok_and(|c| c.peer_cert.unwrap() != first)
        })
        .await
    );
    assert!(authenticates(&client, serve.addr, &token).await);
}

async fn failures(serve: &Serve) -> u64 {
    let (_, m) = crate::common::admin_get(serve.admin, "/metrics").await;
    m.lines()
        .find_map(|l| l.strip_prefix("keygate_tls_reloads_total{result=\"failure\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// (b) An unwritable dir store: a clear message, exit non-zero, no partial file.

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn keys_create_on_a_store_under_a_regular_file_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    for store in [file.join("keys"), file.clone()] {
        let out = Command::new(BIN)
            .args(["--store", &format!("dir:{}", store.display())])
            .args(["keys", "create", "--name", "n", "-o", "json"])
            .env_remove("KEYGATE_STORE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{store:?}: succeeded: {stdout}");
        assert!(
            stdout.trim().is_empty(),
            "printed a token it did not store: {stdout}"
        );
        assert!(!stdout.contains("kg_") && !stderr.contains("kg_"));
        assert!(
            stderr.contains(&*file.to_string_lossy()),
            "names the path: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains("not a directory"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        assert_eq!(files_under(tmp.path()), vec![file.display().to_string()]);
    }
}

/// A write that fails half way: `ulimit -f 0` (with SIGXFSZ ignored) makes the first byte of
/// any file write fail with EFBIG, after the temporary file was created. Root cannot bypass it.
#[test]
fn keys_create_whose_write_fails_half_way_leaves_no_file() {
    let env = Env::new();
    // An existing key, so the directory exists and has content to protect.
    let (id, _) = env.create(&[]);
    let before = files_under(&env.keys_dir());
    assert_eq!(before.len(), 1);
    let script = format!(
        "trap '' XFSZ; ulimit -f 0; exec {BIN} --store dir:{} \"$@\"",
        env.keys_dir().display()
    );
    for args in [
        vec!["keys", "create", "--name", "n", "-o", "json"],
        vec!["keys", "regenerate", &id, "-o", "json"],
        vec!["keys", "disable", &id],
    ] {
        let out = Command::new("sh")
            .args(["-c", &script, "sh"])
            .args(&args)
            .env_remove("KEYGATE_STORE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?} succeeded: {stdout}");
        assert!(
            !stdout.contains("kg_"),
            "{args:?} printed a token it did not store"
        );
        assert!(stderr.contains("cannot write"), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&*env.keys_dir().to_string_lossy()),
            "{stderr}"
        );
        // Nothing new, nothing half-written, no temporary left behind, the old key intact.
        assert_eq!(files_under(&env.keys_dir()), before, "{args:?}");
    }
    let v = env.json(&["keys", "get", &id, "-o", "json"]);
    assert_ne!(v.to_string(), "null");
    let text = env.ok(&["keys", "list", "-o", "json"]);
    assert!(text.contains(&id));
    assert!(!text.contains("\"disabled\": true") && !text.contains("\"disabled\":true"));
}

// ---------------------------------------------------------------------------------------------
// (c) A failed or hanging last-use write does not affect authentication.

#[tokio::test]
async fn failing_last_used_writes_do_not_affect_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let stop = CancellationToken::new();
    // Writes into a "directory" that is a regular file: every write fails at once.
    let (usage, task) = usage::spawn(
        UsageWriter::Dir(DirKeys::new(file.join("keys"), "keygate-system")),
        Duration::from_millis(50),
        stop.clone(),
    );
    let srv = TestServer::start(ServerOptions {
        usage: Some(usage.clone()),
        ..ServerOptions::default()
    })
    .await;
    let (_, token) = srv.add_key(|_| {});
    assert!(srv.until_authenticated(&token, true).await);
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let failed = || usage.stats.failed.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reviews = 0;
    while failed() < 3 && Instant::now() < deadline {
        let r = c.review(&token).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"]["authenticated"], true);
        reviews += 1;
    }
    assert!(
        failed() >= 3,
        "last-use writes never failed ({reviews} reviews)"
    );
    assert_eq!(usage.stats.written.load(Ordering::Relaxed), 0);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
    // Once the writer is gone the webhook still answers (events are dropped, not blocking).
    for _ in 0..20 {
        assert_eq!(
            c.review(&token).await.json()["status"]["authenticated"],
            true
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn a_hanging_last_used_write_does_not_slow_authentication() {
    // An "API server" that accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", black_hole.local_addr().unwrap());
    let config = kube::Config::new(url.parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let stop = CancellationToken::new();
    let (usage, _task) = usage::spawn(
        UsageWriter::Kube(Box::new(kube::Api::namespaced(client, "keygate-system"))),
        Duration::from_millis(50),
        stop.clone(),
    );
    let srv = TestServer::start(ServerOptions {
        usage: Some(usage.clone()),
        ..ServerOptions::default()
    })
    .await;
    let (_, token) = srv.add_key(|_| {});
    assert!(srv.until_authenticated(&token, true).await);
    // The writer has connected: a write is in progress and will hang.
    let (_held, _) = tokio::time::timeout(SOON, black_hole.accept())
        .await
        .expect("no last-use write attempted")
        .unwrap();
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let start = Instant::now();
    for _ in 0..200 {
        let t = Instant::now();
        let r = c.review(&token).await;
        assert_eq!(r.json()["status"]["authenticated"], true);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "review blocked by a write"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    stop.cancel();
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// (d) SIGTERM under load: in-flight requests complete, no error responses.

#[derive(Default)]
struct Tally {
    responses: AtomicUsize,
    non_200: AtomicUsize,
    wrong_answers: AtomicUsize,
    /// Requests begun before the signal that got no response (connection closed under them).
    lost_before_signal: AtomicUsize,
    /// Of those, on HTTP/2 connections.
    lost_before_signal_h2: AtomicUsize,
    /// Requests begun after the signal that got no response (expected: the server is leaving).
    refused_after_signal: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_in_flight_requests_without_errors() {
    let env = Env::new();
    let (_, token) = env.create(&[]);
    let mut serve = Serve::start(&env, &["--shutdown-grace", "20s"]);
    let client = serve.client();
    assert!(eventually(SOON, || authenticates(&client, serve.addr, &token)).await);

    let signalled = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let wrong = format!("{}{}", &token[..26], "Z".repeat(43));
    // 6 HTTP/2 and 2 HTTP/1.1 connections, each a loop bounded in count and time.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let proto = if i < 6 { Proto::Http2 } else { Proto::Http1 };
        let (client, addr) = (client.clone(), serve.addr);
        let (signalled, tally) = (signalled.clone(), tally.clone());
        let (good, bad) = (token.clone(), wrong.clone());
        tasks.spawn(async move {
            let mut c = client.connect(addr, proto).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            for n in 0..20_000 {
                if Instant::now() > deadline {
                    break;
                }
                let before = !signalled.load(Ordering::SeqCst);
                let (t, want) = if n % 2 == 0 {
                    (&good, true)
                } else {
                    (&bad, false)
                };
                let req = http::Request::post("https://localhost/authenticate?timeout=30s")
                    .body(http_body_util::Full::new(bytes::Bytes::from(review_body(
                        FIXTURE_V1, t,
                    ))))
                    .unwrap();
                match c.send(req).await {
                    Ok(r) => {
                        tally.responses.fetch_add(1, Ordering::SeqCst);
                        if r.status != 200 {
                            tally.non_200.fetch_add(1, Ordering::SeqCst);
                        } else if r.json()["status"]["authenticated"] != want {
                            tally.wrong_answers.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(_) => {
                        if before {
                            tally.lost_before_signal.fetch_add(1, Ordering::SeqCst);
                            if proto == Proto::Http2 {
                                tally.lost_before_signal_h2.fetch_add(1, Ordering::SeqCst);
                            }
                        } else {
                            tally.refused_after_signal.fetch_add(1, Ordering::SeqCst);
                        }
                        return proto;
                    }
                }
            }
            proto
        });
    }
    // Requests whose body is half sent when the signal comes: in flight by construction.
    let body = review_body(FIXTURE_V1, &token);
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut tls = client
            .connect_tls(serve.addr, crate::common::Proto::Http1)
            .await
            .unwrap();
        let head = format!(
            "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&body.as_bytes()[..body.len() / 2])
            .await
            .unwrap();
        tls.flush().await.unwrap();
        slow.push(tls);
    }
    // Load running: wait for a good number of answers, then SIGTERM.
    assert!(
        eventually(Duration::from_secs(20), || async {
            tally.responses.load(Ordering::SeqCst) >= 2000
        })
        .await,
        "load never got going"
    );
    signalled.store(true, Ordering::SeqCst);
    let at_signal = tally.responses.load(Ordering::SeqCst);
    let status = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The half-sent requests are finished after the signal and answered.
    for mut tls in slow {
        tls.write_all(&body.as_bytes()[body.len() / 2..])
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "in-flight request: {text}"
        );
        assert!(text.contains("\"authenticated\":true"), "{text}");
    }
    let mut h1_conns = 0;
    while let Some(p) = tokio::time::timeout(Duration::from_secs(40), tasks.join_next())
        .await
        .expect("load tasks did not end after shutdown")
    {
        if p.unwrap() == Proto::Http1 {
            h1_conns += 1;
        }
    }
    let exit = {
        let child = &mut serve.child;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "keygate did not exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    let t = |a: &AtomicUsize| a.load(Ordering::SeqCst);
    eprintln!(
        "SIGTERM under load: {} responses ({} before the signal), {} non-200, {} wrong, {} lost before the signal, {} refused after",
        t(&tally.responses),
        at_signal,
        t(&tally.non_200),
        t(&tally.wrong_answers),
        t(&tally.lost_before_signal),
        t(&tally.refused_after_signal)
    );
    assert!(exit.success(), "exit status {exit}: {}", serve.logs());
    assert_eq!(t(&tally.non_200), 0, "error responses during shutdown");
    assert_eq!(t(&tally.wrong_answers), 0);
    // HTTP/2 (what kube-apiserver speaks): GOAWAY lets every stream begun before it finish.
    // HTTP/1.1 keep-alive: a request written at the very moment the server closes an idle
    // connection can be lost (the client sees a closed connection, never an error answer):
    // at most one per HTTP/1.1 connection.
    assert_eq!(t(&tally.lost_before_signal_h2), 0, "HTTP/2 streams lost");
    assert!(
        t(&tally.lost_before_signal) <= h1_conns,
        "{} requests begun before SIGTERM got no answer",
        t(&tally.lost_before_signal)
    );
    let logs = serve.logs();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("keygate stopped"), "{logs}");
}

// ---------------------------------------------------------------------------------------------
// (e) The store stops while serving: the process must not keep answering from a frozen index.

/// The key directory moved away (its files with it): the watcher can no longer see a revocation.
/// keygate must notice, say why, and exit with a failure so that it is restarted; before the fix
/// it kept serving (and accepting the moved key) with /readyz at 200.
#[tokio::test]
async fn a_key_directory_moved_away_stops_serve_with_an_error_exit() {
    let env = Env::new();
    let (_, token) = env.create(&[]);
    let mut serve = Serve::start(&env, &[]);
    let client = serve.client();
    assert!(eventually(SOON, || authenticates(&client, serve.addr, &token)).await);

    let moved = env.tmp.path().join("keys.old");
    std::fs::rename(env.keys_dir(), &moved).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let logs = serve.logs();
    let status = status.unwrap_or_else(|| panic!("serve kept running:\n{logs}"));
    assert!(!status.success(), "{status}:\n{logs}");
    let dir = env.keys_dir();
    assert!(logs.contains("key store stopped"), "{logs}");
    assert!(
        logs.contains(&format!(
            "error: the dir store stopped: the key directory {} was removed or moved away",
            dir.display()
        )),
        "{logs}"
    );
    assert!(!authenticates(&client, serve.addr, &token).await);
}
