//! The soak driver behind hack/soak.sh: starts `keygate serve` (the binary given) on a dir store
//! on loopback, measures its maximum rate, then drives valid, wrong, revoked, malformed and
//! foreign tokens at about half of it for the given time while keys are created, rotated and
//! deleted every second through the CLI against the same store. Every answer is checked against
//! a model of which tokens must be accepted; answers about a token whose state changed less than
//! `SETTLE` before the request (the store may not have picked the change up yet) are counted but
//! not judged. Prints wrong answers, errors and resident memory over time; exits non-zero on any
//! wrong answer or error, or if memory grew (end > start × 1.5 + 16 MiB).
//!
//! Usage: soak --keygate PATH [--seconds N] [--work DIR]

#[path = "../tests/it/common/client.rs"]
mod client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{ClientConfig, Conn, FIXTURE_V1, FIXTURE_V1BETA1, Proto, review_body};
use rand::Rng;
use rand::seq::IndexedRandom;

/// A token's state must have been stable this long before its answers are judged.
const SETTLE: Duration = Duration::from_secs(2);
const CONNECTIONS: usize = 16;
const H1_CONNECTIONS: usize = 4;
const MIN_KEYS: usize = 5;
const MAX_KEYS: usize = 40;
const CALIBRATION: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct TokenState {
    /// Whether keygate must accept it once settled.
    valid: bool,
    /// When its state last changed (None: a change is in progress).
    since: Option<Instant>,
    /// Bumped on every change, so an answer that straddles a change is not judged.
    version: u64,
}

#[derive(Default)]
struct Model {
    tokens: HashMap<String, TokenState>,
    /// id → current token, for keys that exist.
    keys: HashMap<String, String>,
    /// Tokens that must be refused: old secrets and deleted keys (bounded).
    revoked: Vec<String>,
}

impl Model {
    fn set(&mut self, token: &str, valid: bool, since: Option<Instant>) {
        let e = self.tokens.entry(token.to_owned()).or_insert(TokenState {
            valid,
            since,
            version: 0,
        });
        e.valid = valid;
        e.since = since;
        e.version += 1;
    }

    fn revoke(&mut self, token: String, now: Instant) {
        self.set(&token, false, Some(now));
        self.revoked.push(token);
        if self.revoked.len() > 500 {
            let old = self.revoked.remove(0);
            self.tokens.remove(&old);
        }
    }
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    judged: AtomicU64,
    unjudged: AtomicU64,
    wrong: AtomicU64,
    errors: AtomicU64,
    valid_judged: AtomicU64,
}

struct Keygate {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Keygate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli(bin: &Path, store: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin)
        .args(["--store", store, "--log", "warn"])
        .args(args)
        .env_remove("KEYGATE_STORE")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `keys create` or `keys regenerate` with `-o json`: (id, token).
fn minted(out: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(out).expect("json output");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["token"].as_str().expect("token").to_owned(),
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn random_base62(n: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A request to make: the token and, if judgeable at send time, what the answer must be.
fn pick(model: &Mutex<Model>) -> (String, Option<(bool, u64)>) {
    let mut rng = rand::rng();
    let now = Instant::now();
    let m = model.lock().unwrap();
    let roll = rng.random_range(0..100);
    let token = match roll {
        // Valid keys (most traffic, as in a real cluster).
        0..50 => m
            .keys
            .values()
            .collect::<Vec<_>>()
            .choose(&mut rng)
            .map(|t| (*t).clone()),
        // Old secrets and deleted keys.
        50..65 => m.revoked.choose(&mut rng).cloned(),
        // The right ID, a wrong secret: must never be accepted.
        65..80 => m
            .keys
            .keys()
            .collect::<Vec<_>>()
            .choose(&mut rng)
            .map(|id| format!("kg_{id}_{}", random_base62(43))),
        // Malformed keygate tokens.
        80..88 => Some(format!("kg_{}", random_base62(rng.random_range(0..80)))),
        // Foreign tokens: a ServiceAccount JWT shape, a bootstrap token.
        _ => Some(if rng.random_bool(0.5) {
            format!(
                "eyJhbGciOiJSUzI1NiJ9.{}.{}",
                random_base62(40),
                random_base62(40)
            )
        } else {
            format!(
                "{}.{}",
                random_base62(6).to_lowercase(),
                random_base62(16).to_lowercase()
            )
        }),
    };
    let token = token.unwrap_or_else(|| format!("kg_{}", random_base62(10)));
    let expect = match m.tokens.get(&token) {
        Some(s) => s
            .since
            .filter(|since| now.duration_since(*since) > SETTLE)
            .map(|_| (s.valid, s.version)),
        // Not a token keygate ever issued: never valid, judge always.
        None => Some((false, 0)),
    };
    (token, expect)
}

fn still_same(model: &Mutex<Model>, token: &str, version: u64) -> bool {
    let m = model.lock().unwrap();
    match m.tokens.get(token) {
        Some(s) => s.version == version && s.since.is_some(),
        None => version == 0,
    }
}

async fn one(
    conn: &mut Conn,
    model: &Mutex<Model>,
    counts: &Counts,
    wrong_log: &Mutex<Vec<String>>,
) -> bool {
    let (token, expect) = pick(model);
    let fixture = if rand::rng().random_bool(0.1) {
        FIXTURE_V1BETA1
    } else {
        FIXTURE_V1
    };
    let req = http::Request::post("https://localhost/authenticate?timeout=30s")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(review_body(
            fixture, &token,
        ))))
        .unwrap();
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let reply = match tokio::time::timeout(Duration::from_secs(10), conn.send(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: request error: {e}");
            return false;
        }
        Err(_) => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: request timed out");
            return false;
        }
    };
    let got = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| {
            let has_error = v["status"].get("error").is_some();
            v["status"]["authenticated"]
                .as_bool()
                .filter(|_| !has_error)
        });
    let json = reply
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json");
    let Some(got) = got.filter(|_| reply.status == 200 && json) else {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "soak: bad answer {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        return true;
    };
    match expect {
        Some((want, version)) if still_same(model, &token, version) => {
            counts.judged.fetch_add(1, Ordering::Relaxed);
            if want {
                counts.valid_judged.fetch_add(1, Ordering::Relaxed);
            }
            if got != want {
                counts.wrong.fetch_add(1, Ordering::Relaxed);
                let mut w = wrong_log.lock().unwrap();
                if w.len() < 20 {
                    // The ID is public; the secret is not printed.
                    let id = token.get(3..25).unwrap_or("-").to_owned();
                    w.push(format!("key {id}: answered {got}, expected {want}"));
                }
            }
        }
        _ => {
            counts.unjudged.fetch_add(1, Ordering::Relaxed);
        }
    }
    true
}

/// One connection's worker: requests paced at `period` (zero: as fast as possible) until
/// `stop`, bounded by `max_requests`. Reconnects if the connection drops (counted as an error).
#[allow(clippy::too_many_arguments)]
async fn worker(
    client: ClientConfig,
    addr: SocketAddr,
    proto: Proto,
    period: Duration,
    max_requests: u64,
    stop: Arc<AtomicBool>,
    model: Arc<Mutex<Model>>,
    counts: Arc<Counts>,
    wrong_log: Arc<Mutex<Vec<String>>>,
) {
    let mut conn = match client.connect(addr, proto).await {
        Ok(c) if negotiated(&c, proto) => c,
        Ok(_) => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: connect: the server did not negotiate {proto:?} with a certificate");
            return;
        }
        Err(e) => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: connect: {e}");
            return;
        }
    };
    let mut ticker = (!period.is_zero()).then(|| {
        let mut t = tokio::time::interval(period);
        // Burst: a late tick is made up at once, so the average rate is the target rate.
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for _ in 0..max_requests {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        if !one(&mut conn, &model, &counts, &wrong_log).await {
            match client.connect(addr, proto).await {
                Ok(c) => conn = c,
                Err(_) => return,
            }
        }
    }
}

/// Whether the connection speaks `proto` (by ALPN) with a server that showed a certificate.
fn negotiated(conn: &Conn, proto: Proto) -> bool {
    let want: &[u8] = match proto {
        Proto::Http1 => b"http/1.1",
        Proto::Http2 => b"h2",
    };
    conn.peer_cert.is_some() && conn.alpn.as_deref() == Some(want)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(arg(&args, "--keygate").expect("--keygate PATH"));
    let seconds: u64 = arg(&args, "--seconds")
        .map(|s| s.parse().expect("--seconds N"))
        .unwrap_or(600);
    let tmp = tempfile::tempdir().unwrap();
    let work = arg(&args, "--work")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_owned());
    let keys_dir = work.join("keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    let store = format!("dir:{}", keys_dir.display());
    let model = Arc::new(Mutex::new(Model::default()));

    // Some keys before the server starts.
    for i in 0..MIN_KEYS * 2 {
        let out = cli(
            &bin,
            &store,
            &[
                "keys",
                "create",
                "--name",
                &format!("soak-{i}"),
                "-o",
                "json",
            ],
        )
        .unwrap_or_else(|e| panic!("keys create: {e}"));
        let (id, token) = minted(&out);
        let mut m = model.lock().unwrap();
        m.set(&token, true, Some(Instant::now()));
        m.keys.insert(id, token);
    }

    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let log = work.join("serve.log");
    let child = Command::new(&bin)
        .args(["--store", &store, "--data-dir"])
        .arg(work.join("data"))
        .args(["--log", "warn", "serve", "--listen", &addr.to_string()])
        .args([
            "--admin-listen",
            &admin.to_string(),
            "--last-used-interval",
            "1s",
        ])
        .env_remove("KEYGATE_STORE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start keygate serve");
    let pid = child.id();
    let keygate = Keygate { child, addr };
    let certs = work.join("data/certs");
    let read = |f: &str| std::fs::read_to_string(certs.join(f));
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        // Each file is written whole (renamed into place); client.key is the last one.
        if let (Ok(ca), Ok(cert), Ok(key)) =
            (read("ca.crt"), read("client.crt"), read("client.key"))
        {
            // The embedded mode answers only the client certificate it generated.
            let client =
                ClientConfig::trusting(&ca).with_identity(&keygate::pki::Pem { cert, key });
            if let Ok(mut c) = client.connect(keygate.addr, Proto::Http2).await
                && c.review("probe").await.status == 200
            {
                break client;
            }
        }
        assert!(
            Instant::now() < deadline,
            "keygate not ready: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let wrong_log = Arc::new(Mutex::new(Vec::new()));
    let spawn_workers =
        |period: Duration, max: u64, stop: Arc<AtomicBool>, counts: &Arc<Counts>| {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..CONNECTIONS {
                let proto = if i < H1_CONNECTIONS {
                    Proto::Http1
                } else {
                    Proto::Http2
                };
                set.spawn(worker(
                    client.clone(),
                    addr,
                    proto,
                    period,
                    max,
                    stop.clone(),
                    model.clone(),
                    counts.clone(),
                    wrong_log.clone(),
                ));
            }
            set
        };

    // Calibration: as fast as the driver can go, for a few seconds.
    // Its answers are checked too (wrong answers and errors there fail the soak as well).
    let calibration = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = spawn_workers(Duration::ZERO, 10_000_000, stop.clone(), &calibration);
    let started = Instant::now();
    tokio::time::sleep(CALIBRATION).await;
    let max_rate =
        calibration.requests.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while set.join_next().await.is_some() {}
    let target = (max_rate / 2.0).max(1.0);
    let period = Duration::from_secs_f64(CONNECTIONS as f64 / target);
    println!(
        "soak: max rate {max_rate:.0} req/s over {CONNECTIONS} connections; driving {target:.0} req/s for {seconds} s"
    );

    // The soak proper.
    let rss_start = rss_kib(pid).unwrap_or(0);
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let max_per_worker = (target * seconds as f64 / CONNECTIONS as f64 * 1.2) as u64 + 100;
    let mut set = spawn_workers(period, max_per_worker, stop.clone(), &counts);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(seconds);
    let mut ops = (0u64, 0u64, 0u64);
    let mut op_errors = 0u64;
    let mut rss_samples = vec![(0u64, rss_start)];
    let mut next_report = t0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < end {
        tick.tick().await;
        // One key change per second, through the CLI, against the store keygate reads.
        let n_keys = model.lock().unwrap().keys.len();
        let roll = rand::rng().random_range(0..3);
        let op = if n_keys <= MIN_KEYS {
            0
        } else if n_keys >= MAX_KEYS {
            2
        } else {
            roll
        };
        let bin2 = bin.clone();
        let store2 = store.clone();
        let result = match op {
            0 => {
                let name = format!("soak-{}", random_base62(6));
                tokio::task::spawn_blocking(move || {
                    cli(
                        &bin2,
                        &store2,
                        &["keys", "create", "--name", &name, "-o", "json"],
                    )
                })
                .await
                .unwrap()
                .map(|out| {
                    let (id, token) = minted(&out);
                    let mut m = model.lock().unwrap();
                    m.set(&token, true, Some(Instant::now()));
                    m.keys.insert(id, token);
                    ops.0 += 1;
                })
            }
            _ => {
                let (id, old) = {
                    let m = model.lock().unwrap();
                    let ids: Vec<&String> = m.keys.keys().collect();
                    let id = (*ids.choose(&mut rand::rng()).unwrap()).clone();
                    let old = m.keys[&id].clone();
                    (id, old)
                };
                // In progress: neither old nor new answers are judged until it settles.
                model.lock().unwrap().set(&old, true, None);
                let rotate = op == 1;
                let id2 = id.clone();
                let out = tokio::task::spawn_blocking(move || {
                    if rotate {
                        cli(&bin2, &store2, &["keys", "regenerate", &id2, "-o", "json"])
                    } else {
                        cli(&bin2, &store2, &["keys", "delete", &id2])
                    }
                })
                .await
                .unwrap();
                let now = Instant::now();
                let mut m = model.lock().unwrap();
                match out {
                    Ok(out) if rotate => {
                        let (_, new) = minted(&out);
                        m.revoke(old, now);
                        m.set(&new, true, Some(now));
                        m.keys.insert(id, new);
                        ops.1 += 1;
                        Ok(())
                    }
                    Ok(_) => {
                        m.keys.remove(&id);
                        m.revoke(old, now);
                        ops.2 += 1;
                        Ok(())
                    }
                    Err(e) => {
                        // Unknown outcome: never judge this token again.
                        m.keys.remove(&id);
                        m.tokens.remove(&old);
                        Err(e)
                    }
                }
            }
        };
        if let Err(e) = result {
            op_errors += 1;
            eprintln!("soak: key change failed: {e}");
        }
        if let Some(kib) = rss_kib(pid) {
            rss_samples.push((t0.elapsed().as_secs(), kib));
        } else {
            eprintln!("soak: keygate is gone");
            counts.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs((seconds / 10).max(5));
            let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
            println!(
                "soak: t={:>4}s requests={} judged={} wrong={} errors={} keys={} rss={} KiB",
                t0.elapsed().as_secs(),
                c(&counts.requests),
                c(&counts.judged),
                c(&counts.wrong),
                c(&counts.errors),
                model.lock().unwrap().keys.len(),
                rss_samples.last().map(|s| s.1).unwrap_or(0)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    while tokio::time::timeout(Duration::from_secs(30), set.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    let elapsed = t0.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid).unwrap_or(u64::MAX);
    let rss_max = rss_samples.iter().map(|s| s.1).max().unwrap_or(0);

    // Stop keygate gracefully; it must exit 0 without a panic in its log.
    let mut keygate = keygate;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = keygate.child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let serve_log = std::fs::read_to_string(&log).unwrap_or_default();
    let panicked = serve_log.contains("panicked");

    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let limit = rss_start + rss_start / 2 + 16 * 1024;
    let flat = rss_end <= limit;
    println!("soak: RSS over time (s: KiB):");
    let step = (rss_samples.len() / 10).max(1);
    for (t, kib) in rss_samples.iter().step_by(step) {
        println!("  {t:>5}: {kib}");
    }
    println!(
        "soak: {:.0} s, {} requests ({:.0}/s), {} answers checked ({} of them valid keys), {} in a transition window not judged",
        elapsed,
        c(&counts.requests),
        c(&counts.requests) as f64 / elapsed,
        c(&counts.judged),
        c(&counts.valid_judged),
        c(&counts.unjudged)
    );
    println!(
        "soak: key changes: {} created, {} rotated, {} deleted, {} failed",
        ops.0, ops.1, ops.2, op_errors
    );
    println!("soak: wrong answers: {}", c(&counts.wrong));
    for w in wrong_log.lock().unwrap().iter() {
        println!("  {w}");
    }
    println!("soak: errors: {}", c(&counts.errors));
    println!(
        "soak: RSS start {} KiB, end {} KiB, max {} KiB; flat = end <= start x 1.5 + 16 MiB = {} KiB: {}",
        rss_start,
        rss_end,
        rss_max,
        limit,
        if flat { "yes" } else { "NO" }
    );
    println!(
        "soak: keygate exit: {exit:?}{}",
        if panicked { ", PANICKED" } else { "" }
    );
    println!(
        "soak: calibration: {} requests, {} checked, {} wrong, {} errors",
        c(&calibration.requests),
        c(&calibration.judged),
        c(&calibration.wrong),
        c(&calibration.errors)
    );
    let ok = c(&counts.wrong) + c(&calibration.wrong) == 0
        && c(&counts.errors) + c(&calibration.errors) == 0
        && op_errors == 0
        && flat
        && !panicked
        && exit.is_some_and(|s| s.success())
        && c(&counts.judged) > 0;
    if ok {
        println!("soak: PASS");
        std::process::ExitCode::SUCCESS
    } else {
        println!("soak: FAIL (log: {})", log.display());
        if arg(&args, "--work").is_none() {
            // Keep the evidence.
            let kept = tmp.keep();
            println!("soak: work dir kept at {}", kept.display());
        }
        std::process::ExitCode::FAILURE
    }
}
