//! The server under overload: a log output that stops taking data. Every flood is bounded in count and time; bounds asserted here
//! are correctness bounds under attack (served or not, memory under the stated figure), never
//! speed. Latency figures are printed for BENCHMARKS.md, not asserted.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cli::{Env, Serve};
use crate::common::*;

/// The server's default `--request-timeout`: kube-apiserver gives up on a review well after it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A counter's value from the admin listener's /metrics (None if the scrape did not answer).
async fn metric(admin: std::net::SocketAddr, name: &str) -> Option<u64> {
    let (_, text) = tokio::time::timeout(REQUEST_TIMEOUT, admin_get(admin, "/metrics"))
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Sends `n` reviews one after the other on `c`; each must be answered, with `authenticated:
/// true`, within the request timeout. Returns their latencies.
async fn timed_reviews(c: &mut Conn, token: &str, n: usize, what: &str) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        let r = tokio::time::timeout(REQUEST_TIMEOUT, c.review(token))
            .await
            .unwrap_or_else(|_| {
                panic!("{what}: review {i} not answered within {REQUEST_TIMEOUT:?}")
            });
        took.push(start.elapsed());
        assert_eq!(r.json()["status"]["authenticated"], true, "{what}");
    }
    took
}

fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    let at = |q: f64| d[((d.len() - 1) as f64 * q) as usize];
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        d.len(),
        at(0.5),
        at(0.99),
        d[d.len() - 1]
    )
}

/// Standard error goes to a pipe nobody reads, with TRACE logging (dozens of lines per review),
/// so the log buffer reaches its cap after a few thousand reviews. Reviews must still be
/// answered: a writer that waited for room would block tokio's workers and every review with
/// them. Once the pipe is read again, a line says how many log lines were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_output_never_stalls_reviews() {
    let env = Env::new();
    let (_, token) = env.create(&["--role", "view"]);
    let mut serve = Serve::start_piped(&env, &[], &[("RUST_LOG", "trace")]);
    let mut stderr = serve.child.stderr.take().unwrap();
    let client = ClientConfig::trusting(&std::fs::read_to_string(&serve.ca).unwrap());
    let mut conn = client.connect(serve.addr, Proto::Http2).await.unwrap();

    // Until lines are being dropped (bounded: 60 s or 200 000 reviews).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    loop {
        timed_reviews(&mut conn, &token, 200, "filling the log buffer").await;
        sent += 200;
        let dropped = metric(serve.admin, "keygate_log_lines_dropped_total")
            .await
            .expect("/metrics answers while the log output is stalled");
        if dropped > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline && sent < 200_000,
            "no log line dropped after {sent} reviews"
        );
    }
    let stalled = timed_reviews(&mut conn, &token, 500, "log output stalled").await;
    eprintln!(
        "reviews after {sent} to fill the log buffer, stderr stalled: {}",
        summary(stalled)
    );

    // The output recovers: everything buffered is written, then the count of lost lines.
    let out = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let reported = eventually(Duration::from_secs(20), || {
        let out = out.clone();
        async move { String::from_utf8_lossy(&out.lock().unwrap()).contains("log lines dropped") }
    })
    .await;
    assert!(reported, "no line reported the dropped log lines");
    let recovered = timed_reviews(&mut conn, &token, 500, "log output read again").await;
    eprintln!("reviews with stderr read again: {}", summary(recovered));
    serve.stop();
    reader.join().unwrap();
}
