//! End-to-end load through a real kube-apiserver (issue 5, part 4): the same API request
//! authenticated three ways, a keygate key (webhook), a static token (`--token-auth-file`) and a
//! bootstrap token, each token presented exactly once per run.
//!
//! kube-apiserver 1.20 keeps every successful token authentication for 10 s (its tokencache,
//! in front of all token authenticators, not configurable), so a token repeated within 10 s
//! never reaches the authenticator under test. Every request here therefore carries a token
//! that has not been used before: a run takes a slice (`--offset`, `--count`) of a token file
//! and uses each token once; the caller gives each run a fresh slice.
//!
//! ```text
//! apiload static --count N --csv F --tokens-out F          static tokens, before kube-apiserver starts
//! apiload seed --kubeconfig F --keygate N --keygate-out F --bootstrap N --bootstrap-out F
//! apiload run --server URL --ca F --tokens F --offset O --count N --conns C [--streams S]
//!             [--proto h1|h2] [--rate R] [--label L] [--keys K [--zipf S]]
//! ```
//!
//! With `--keys K` (issue 16, realistic reuse), a run's requests are spread over K tokens
//! instead: request i uses a token drawn (seeded, so every authenticator gets the same
//! sequence) with a Zipf weight 1/r^S over the K tokens, so a few keys make most requests and
//! most make a few, and kube-apiserver's caches work as they do for real clients.
//!
//! `run` prints one JSON line (rate, p50, p99, statuses) and exits 3 if any answer was not 200
//! or any request failed. Tokens never appear in any output; token files are written 0600.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keygate::record::KeyRecord;
use keygate::token::{KeyId, Token};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rand::Rng as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// The group every bench identity gets (keygate keys, static tokens), bound to `view` in
/// `default`.
const GROUP: &str = "bench:readers";
/// The extra group of the bench bootstrap tokens (must be `system:bootstrappers:...`).
const BOOTSTRAP_GROUP: &str = "system:bootstrappers:bench";
const BINDING: &str = "keygate-bench-readers";

#[derive(Parser)]
#[command(about = "keygate part 4: load through kube-apiserver with one fresh token per request")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes N static tokens: `token,user,uid,"bench:readers"` lines for --token-auth-file,
    /// and the bare tokens, one per line.
    Static {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        csv: PathBuf,
        #[arg(long)]
        tokens_out: PathBuf,
    },
    /// Creates N keygate keys (Secrets in the key namespace, group bench:readers), N bootstrap
    /// tokens (Secrets in kube-system) and the RoleBinding of both groups to `view` in
    /// `default`; writes each kind's tokens, one per line.
    Seed(SeedArgs),
    /// Sends `GET --path` once with each token of the slice; prints one JSON line.
    Run(RunArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    H1,
    H2,
}

#[derive(clap::Args)]
struct RunArgs {
    /// https://127.0.0.1:PORT
    #[arg(long)]
    server: String,
    /// CA of kube-apiserver's serving certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// One token per line.
    #[arg(long)]
    tokens: PathBuf,
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Requests in this run: tokens offset..offset+count, each used once.
    #[arg(long)]
    count: usize,
    /// TLS connections, opened before the clock starts.
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Requests in flight per connection (HTTP/2 only; HTTP/1.1 is always 1).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    #[arg(long, value_enum, default_value = "h1")]
    proto: Proto,
    #[arg(long, default_value = "/api/v1/namespaces/default/pods")]
    path: String,
    /// Offered rate in requests/s (open loop: request i is due at start + i/rate and its
    /// latency counts from then). 0: closed loop, as fast as the connections allow.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The whole run is abandoned (exit 4) after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// Reuse: spread the `--count` requests over this many tokens (offset..offset+keys),
    /// unevenly (see `--zipf`). 0: every request has a token of its own.
    #[arg(long, default_value_t = 0)]
    keys: usize,
    /// Exponent of the Zipf weights with `--keys`: the token of rank r is drawn with weight
    /// 1/r^S.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
}

/// Which token each request uses: each its own, or `keys` tokens drawn with Zipf weights.
fn token_order(count: usize, keys: usize, s: f64) -> Vec<usize> {
    if keys == 0 {
        return (0..count).collect();
    }
    let mut cdf = Vec::with_capacity(keys);
    let mut sum = 0.0;
    for r in 1..=keys {
        sum += 1.0 / (r as f64).powf(s);
        cdf.push(sum);
    }
    // Seeded: every authenticator and every round get the same sequence.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(16);
    (0..count)
        .map(|_| {
            let u = rng.random::<f64>() * sum;
            cdf.partition_point(|c| *c < u).min(keys - 1)
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Static {
            count,
            csv,
            tokens_out,
        } => write_static(count, &csv, &tokens_out),
        Cmd::Seed(args) => rt.block_on(seed(args)),
        Cmd::Run(args) => {
            let code = rt.block_on(run(args))?;
            std::process::exit(code)
        }
    }
}

// --- token files -------------------------------------------------------------------------

/// Creates `path` readable by its owner only (it holds live tokens).
fn create_private(path: &Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut w = create_private(path)?;
    for l in lines {
        writeln!(w, "{l}")?;
    }
    w.flush()?;
    Ok(())
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

fn write_static(count: usize, csv: &Path, tokens_out: &Path) -> anyhow::Result<()> {
    let mut lines = Vec::with_capacity(count);
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        // 64 hex digits, as hack/local-cluster.sh makes its own static token.
        let token = random_from(b"0123456789abcdef", 64);
        let user = format!("bench-static-{i}");
        lines.push(format!("{token},{user},{user},\"{GROUP}\""));
        tokens.push(token);
    }
    write_lines(csv, &lines)?;
    write_lines(tokens_out, &tokens)?;
    eprintln!("apiload: {count} static tokens written");
    Ok(())
}

// --- seed ----------------------------------------------------------------------------------

#[derive(clap::Args)]
struct SeedArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long, default_value_t = 0)]
    keygate: usize,
    #[arg(long)]
    keygate_out: Option<PathBuf>,
    #[arg(long, default_value = "keygate-system")]
    namespace: String,
    #[arg(long, default_value_t = 0)]
    bootstrap: usize,
    #[arg(long)]
    bootstrap_out: Option<PathBuf>,
    /// Creations in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
}

async fn seed(a: SeedArgs) -> anyhow::Result<()> {
    let kc = Kubeconfig::read_from(&a.kubeconfig)
        .with_context(|| format!("cannot read {}", a.kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;

    bind_view(&client).await?;

    if a.keygate > 0 {
        let out = a
            .keygate_out
            .as_deref()
            .context("--keygate needs --keygate-out")?;
        let t0 = Instant::now();
        let api: Api<Secret> = Api::namespaced(client.clone(), &a.namespace);
        let mut secrets = Vec::with_capacity(a.keygate);
        let mut tokens = Vec::with_capacity(a.keygate);
        for i in 0..a.keygate {
            let token = Token::generate(KeyId::generate());
            let mut rec =
                KeyRecord::new(token.id.clone(), token.secret_hash(), format!("bench {i}"));
            rec.groups = vec![GROUP.to_owned()];
            secrets.push(rec.to_secret(&a.namespace));
            tokens.push(token.expose());
        }
        create_all(&api, secrets, a.concurrency as usize).await?;
        write_lines(out, &tokens)?;
        eprintln!(
            "apiload: {} keygate keys created in {} in {:.1} s",
            a.keygate,
            a.namespace,
            t0.elapsed().as_secs_f64()
        );
    }

    if a.bootstrap > 0 {
        let out = a
            .bootstrap_out
            .as_deref()
            .context("--bootstrap needs --bootstrap-out")?;
        let t0 = Instant::now();
        let api: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
        // Token IDs are only 6 characters: draw them without repeats.
        let lower = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut ids = HashSet::with_capacity(a.bootstrap);
        let mut secrets = Vec::with_capacity(a.bootstrap);
        let mut tokens = Vec::with_capacity(a.bootstrap);
        while secrets.len() < a.bootstrap {
            let id = random_from(lower, 6);
            if !ids.insert(id.clone()) {
                continue;
            }
            let secret = random_from(lower, 16);
            tokens.push(format!("{id}.{secret}"));
            secrets.push(bootstrap_secret(&id, &secret));
        }
        create_all(&api, secrets, a.concurrency as usize).await?;
        write_lines(out, &tokens)?;
        eprintln!(
            "apiload: {} bootstrap tokens created in kube-system in {:.1} s",
            a.bootstrap,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn bootstrap_secret(id: &str, secret: &str) -> Secret {
    let data = BTreeMap::from([
        ("token-id".to_owned(), id.to_owned()),
        ("token-secret".to_owned(), secret.to_owned()),
        (
            "usage-bootstrap-authentication".to_owned(),
            "true".to_owned(),
        ),
        ("auth-extra-groups".to_owned(), BOOTSTRAP_GROUP.to_owned()),
        (
            "description".to_owned(),
            "keygate bench (part 4)".to_owned(),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".to_owned()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// Creates every Secret, `concurrency` at a time. A Secret that already exists is an error:
/// its token would not be the one written out.
async fn create_all(
    api: &Api<Secret>,
    secrets: Vec<Secret>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let mut results = futures::stream::iter(secrets.into_iter().map(|s| {
        let (api, pp) = (api.clone(), pp.clone());
        async move {
            let name = s.metadata.name.clone().unwrap_or_default();
            let mut tries = 0;
            loop {
                match api.create(&pp, &s).await {
                    Ok(_) => return Ok(()),
                    // Throttled or briefly unavailable: try again (bounded).
                    Err(kube::Error::Api(e)) if (e.code == 429 || e.code >= 500) && tries < 5 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    Err(e) => return Err(anyhow::anyhow!("creating Secret {name}: {e}")),
                }
            }
        }
    }))
    .buffer_unordered(concurrency);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// RoleBinding `keygate-bench-readers` in `default`: both bench groups get ClusterRole `view`.
async fn bind_view(client: &Client) -> anyhow::Result<()> {
    let api: Api<RoleBinding> = Api::namespaced(client.clone(), "default");
    let rb = RoleBinding {
        metadata: ObjectMeta {
            name: Some(BINDING.to_owned()),
            namespace: Some("default".to_owned()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: "view".to_owned(),
        },
        subjects: Some(
            [GROUP, BOOTSTRAP_GROUP]
                .into_iter()
                .map(|g| Subject {
                    api_group: Some("rbac.authorization.k8s.io".to_owned()),
                    kind: "Group".to_owned(),
                    name: g.to_owned(),
                    namespace: None,
                })
                .collect(),
        ),
    };
    match api.create(&PostParams::default(), &rb).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "creating RoleBinding default/{BINDING}: {e}"
        )),
    }
}

// --- run ------------------------------------------------------------------------------------

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        req: http::Request<Empty<Bytes>>,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

async fn connect(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    proto: Proto,
) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.to_owned())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(stream);
    Ok(match proto {
        Proto::H1 => {
            let (s, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(s)
        }
        Proto::H2 => {
            if alpn.as_deref() != Some(b"h2") {
                bail!("the server did not negotiate h2");
            }
            let (s, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(s)
        }
    })
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, usize>,
    errors: usize,
    first_error: Option<String>,
    first_send: Option<Instant>,
    last_done: Option<Instant>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.latencies_us.extend(o.latencies_us);
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.first_send = match (self.first_send, o.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_done = self.last_done.max(o.last_done);
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(a: RunArgs) -> anyhow::Result<i32> {
    let url: http::Uri = a.server.parse().context("--server")?;
    if url.scheme_str() != Some("https") {
        bail!("--server must be https://HOST:PORT");
    }
    let host = url
        .host()
        .context("--server has no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_u16().unwrap_or(443);
    let authority = url.authority().context("--server has no host")?.to_string();
    if a.count == 0 || a.conns == 0 || a.streams == 0 {
        bail!("--count, --conns and --streams must be at least 1");
    }
    if a.proto == Proto::H1 && a.streams != 1 {
        bail!("HTTP/1.1 has one request in flight per connection: use --conns, not --streams");
    }

    let text = std::fs::read_to_string(&a.tokens)
        .with_context(|| format!("cannot read {}", a.tokens.display()))?;
    let needed = if a.keys > 0 { a.keys } else { a.count };
    let tokens: Vec<http::HeaderValue> = text
        .lines()
        .skip(a.offset)
        .take(needed)
        .map(|t| {
            let mut v = http::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .context("a token is not a valid header value")?;
            v.set_sensitive(true);
            Ok(v)
        })
        .collect::<anyhow::Result<_>>()?;
    if tokens.len() < needed {
        bail!(
            "{} holds {} tokens after offset {}, the run needs {}",
            a.tokens.display(),
            tokens.len(),
            a.offset,
            needed
        );
    }
    let order = token_order(a.count, a.keys, a.zipf);
    let distinct = order.iter().collect::<HashSet<_>>().len();
    let tokens = Arc::new(
        order
            .into_iter()
            .map(|i| tokens[i].clone())
            .collect::<Vec<_>>(),
    );

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&a.ca)
        .with_context(|| format!("cannot read {}", a.ca.display()))?
    {
        roots.add(c?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(keygate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![match a.proto {
        Proto::H1 => b"http/1.1".to_vec(),
        Proto::H2 => b"h2".to_vec(),
    }];
    let tls = Arc::new(tls);

    // Connections first (TLS handshakes are not part of the measurement).
    let mut senders = Vec::with_capacity(a.conns);
    for _ in 0..a.conns {
        senders.push(
            tokio::time::timeout(
                Duration::from_secs(10),
                connect(tls.clone(), &host, port, a.proto),
            )
            .await
            .context("connecting took more than 10 s")??,
        );
    }

    let next = Arc::new(AtomicUsize::new(0));
    // HTTP/1.1 sends the origin form (`GET /path` + Host); HTTP/2 needs scheme and authority.
    let uri: http::Uri = match a.proto {
        Proto::H1 => a.path.parse()?,
        Proto::H2 => format!("https://{authority}{}", a.path).parse()?,
    };
    let start = Instant::now() + Duration::from_millis(20);
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    // One task per request in flight: an HTTP/1.1 connection's sender, or one clone of an
    // HTTP/2 connection's sender per stream.
    let mut workers = Vec::with_capacity(a.conns * a.streams);
    for s in senders {
        match s {
            Sender::H1(h) => workers.push(Sender::H1(h)),
            Sender::H2(h) => workers.extend((0..a.streams).map(|_| Sender::H2(h.clone()))),
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for mut sender in workers {
        let (next, tokens, uri, authority) =
            (next.clone(), tokens.clone(), uri.clone(), authority.clone());
        let proto = a.proto;
        tasks.spawn(async move {
            let mut t = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tokens.len() {
                    break;
                }
                let due = match interval {
                    Some(iv) => {
                        let due = start + iv.mul_f64(i as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => {
                        tokio::time::sleep_until(start.into()).await;
                        Instant::now()
                    }
                };
                let mut req = http::Request::get(uri.clone());
                if proto == Proto::H1 {
                    req = req.header(http::header::HOST, authority.as_str());
                }
                let req = req
                    .header(http::header::AUTHORIZATION, tokens[i].clone())
                    .header(http::header::ACCEPT, "application/json")
                    .body(Empty::<Bytes>::new())
                    .expect("a valid request");
                let sent = Instant::now();
                t.first_send = Some(t.first_send.map_or(sent, |f| f.min(sent)));
                let result = tokio::time::timeout(Duration::from_secs(30), async {
                    let resp = sender.send(req).await?;
                    let status = resp.status().as_u16();
                    resp.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                })
                .await;
                let done = Instant::now();
                match result {
                    Ok(Ok(status)) => {
                        *t.statuses.entry(status).or_default() += 1;
                        t.latencies_us
                            .push(done.duration_since(due).as_micros() as u64);
                        t.last_done = Some(done);
                    }
                    Ok(Err(e)) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| e.to_string());
                        // An HTTP/1.1 connection is unusable after an error.
                        if proto == Proto::H1 {
                            break;
                        }
                    }
                    Err(_) => {
                        t.errors += 1;
                        t.first_error
                            .get_or_insert_with(|| "request timed out after 30 s".into());
                        if proto == Proto::H1 {
                            break;
                        }
                    }
                }
            }
            t
        });
    }

    let mut total = Tally::default();
    let deadline = tokio::time::sleep(Duration::from_secs(a.max_seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                Some(r) => total.merge(r?),
                None => break,
            },
            () = &mut deadline => {
                tasks.abort_all();
                eprintln!("apiload: run abandoned after {} s", a.max_seconds);
                return Ok(4);
            }
        }
    }

    total.latencies_us.sort_unstable();
    let n = total.latencies_us.len();
    let ok = total.statuses.get(&200).copied().unwrap_or(0);
    let not_ok: usize = total
        .statuses
        .iter()
        .filter(|(k, _)| **k != 200)
        .map(|(_, v)| v)
        .sum();
    let unsent = a.count - n - total.errors;
    let elapsed = match (total.first_send, total.last_done) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let mean = if n > 0 {
        total.latencies_us.iter().sum::<u64>() as f64 / n as f64
    } else {
        0.0
    };
    let line = serde_json::json!({
        "label": a.label,
        "proto": match a.proto { Proto::H1 => "h1", Proto::H2 => "h2" },
        "conns": a.conns,
        "streams": a.streams,
        "offered_rate": a.rate,
        "path": a.path,
        "count": a.count,
        "keys": if a.keys > 0 { a.keys } else { a.count },
        "distinct_tokens": distinct,
        "done": n,
        "ok": ok,
        "non200": not_ok,
        "statuses": total.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "errors": total.errors,
        "unsent": unsent,
        "first_error": total.first_error,
        "elapsed_s": (elapsed * 1e6).round() / 1e6,
        "rate": if elapsed > 0.0 { (n as f64 / elapsed * 100.0).round() / 100.0 } else { 0.0 },
        "mean_us": mean.round(),
        "p50_us": percentile(&total.latencies_us, 50.0),
        "p90_us": percentile(&total.latencies_us, 90.0),
        "p99_us": percentile(&total.latencies_us, 99.0),
        "max_us": total.latencies_us.last().copied().unwrap_or(0),
    });
    // A closed pipe (the reader gave up) is an error, not a panic.
    writeln!(std::io::stdout(), "{line}")?;
    Ok(if ok == a.count { 0 } else { 3 })
}
