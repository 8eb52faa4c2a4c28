//! `keygate console`'s guard, over real HTTP: the session secret and its cookie, the Host
//! header, CSRF tokens and the origin of state-changing requests, the headers on every
//! answer, and a token shown once and never kept. The whole page in a real browser is
//! tests/browser (hack/browser-tests.sh on the dir store, tests/e2e/console.sh on a cluster).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use keygate::console::dir::DirBackend;
use keygate::console::security::CONTENT_SECURITY_POLICY;
use keygate::console::{self, ConsoleError, ConsoleSettings};
use keygate::keystore::DirKeys;
use tokio::net::TcpStream;

use crate::common::cli::Env;

/// A console on a fresh dir store, served in this process.
struct Console {
    addr: SocketAddr,
    url: String,
    tmp: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Console {
    async fn start() -> Console {
        let tmp = tempfile::tempdir().unwrap();
        let keys = DirKeys::new(tmp.path().join("keys"), "keygate-system");
        let backend = DirBackend::new(keys, keygate::identity::DEFAULT_USER_PREFIX, "alice");
        let settings = ConsoleSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cluster: None,
        };
        let bound = console::bind(settings, backend).await.unwrap();
        let (addr, url) = (bound.addr(), bound.url());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        Console {
            addr,
            url,
            tmp,
            _stop: stop,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The session link's path and query (`/?s=...`).
    fn entry(&self) -> String {
        self.url.trim_start_matches(&self.origin()).to_owned()
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let (mut s, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", self.addr.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = s
            .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// The session cookie (`name=value`), from trading the URL's secret.
    async fn cookie(&self) -> String {
        let a = self.send("GET", &self.entry(), &[], "").await;
        assert_eq!(a.status, 200, "{}", a.body);
        let set = a.headers["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    /// A GET with the session.
    async fn get(&self, cookie: &str, path: &str) -> Answer {
        self.send("GET", path, &[("cookie", cookie)], "").await
    }

    /// A form POST with the session, from the console's own origin.
    async fn post(&self, cookie: &str, path: &str, form: &str) -> Answer {
        let origin = self.origin();
        let headers = [
            ("cookie", cookie),
            ("origin", origin.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        self.send("POST", path, &headers, form).await
    }

    fn records(&self) -> usize {
        std::fs::read_dir(self.tmp.path().join("keys"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// The value of the first `<input name="{name}" value="...">` in `html`.
fn field(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} field in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A create form for key `name`, with the page's CSRF token and submission ID.
async fn create_form(c: &Console, cookie: &str, name: &str) -> String {
    let page = c.get(cookie, "/keys/new").await.body;
    format!(
        "csrf={}&nonce={}&name={name}&rights=view&namespaces=&expires=",
        enc(&field(&page, "csrf")),
        enc(&field(&page, "nonce"))
    )
}

fn token_in(html: &str) -> Option<String> {
    let at = html.find("kg_")?;
    let t: String = html[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Some(t)
}

#[tokio::test]
async fn console_refuses_every_request_without_the_session() {
    let c = Console::start().await;
    for (method, path) in [("GET", "/"), ("GET", "/keys/new"), ("POST", "/keys")] {
        let a = c.send(method, path, &[], "").await;
        assert_eq!(a.status, 403, "{method} {path}");
        assert!(a.body.contains("No console session"), "{}", a.body);
    }
    let a = c.send("GET", "/?s=guess", &[], "").await;
    assert_eq!(a.status, 403);
    assert!(a.headers.get("set-cookie").is_none());
    let wrong_cookie = c
        .get(&format!("keygate_console_{}=guess", c.addr.port()), "/")
        .await;
    assert_eq!(wrong_cookie.status, 403);
    // The secret opens a session on a GET of the page only.
    let a = c.send("POST", &c.entry(), &[], "").await;
    assert_eq!(a.status, 403);
    // The stylesheet and script hold nothing secret.
    let css = c.send("GET", "/assets/console.css", &[], "").await;
    assert_eq!(css.status, 200);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn console_trades_the_url_secret_for_a_strict_httponly_cookie_and_a_clean_url() {
    let c = Console::start().await;
    assert!(
        c.url.starts_with(&format!("http://{}/?s=", c.addr)),
        "{}",
        c.url
    );
    let a = c.send("GET", &c.entry(), &[], "").await;
    assert_eq!(a.status, 200);
    let set = a.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with(&format!("keygate_console_{}=", c.addr.port())),
        "{set}"
    );
    for part in ["Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "a session cookie: {set}"
    );
    assert!(
        !set.contains(c.url.split("s=").nth(1).unwrap()),
        "the cookie is not the URL's secret"
    );
    assert!(
        a.body
            .contains("http-equiv=\"refresh\" content=\"0; url=/\""),
        "{}",
        a.body
    );
    let cookie = set.split(';').next().unwrap();
    let list = c.get(cookie, "/").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("Access keys"));
}

#[tokio::test]
async fn console_refuses_a_host_header_that_is_not_its_own() {
    let c = Console::start().await;
    let cookie = c.cookie().await;
    // A DNS-rebinding page reaches 127.0.0.1 under its own name.
    let port = c.addr.port();
    for host in [format!("evil.example:{port}"), "127.0.0.1".to_owned()] {
        let a = c
            .send("GET", "/", &[("host", &host), ("cookie", &cookie)], "")
            .await;
        assert_eq!(a.status, 403, "{host}");
    }
    let a = c
        .send(
            "GET",
            "/",
            &[("host", &format!("localhost:{port}")), ("cookie", &cookie)],
            "",
        )
        .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn console_changes_need_the_csrf_token_and_the_consoles_origin() {
    let c = Console::start().await;
    let cookie = c.cookie().await;
    let form = create_form(&c, &cookie, "ci").await;
    let without_csrf = form.replace("csrf=", "nocsrf=");
    let wrong_csrf = format!("csrf=AAAA&{without_csrf}");
    for body in [&without_csrf, &wrong_csrf] {
        let a = c.post(&cookie, "/keys", body).await;
        assert_eq!(a.status, 403, "{body}");
        assert!(a.body.contains("CSRF"), "{}", a.body);
    }
    let json = [
        ("cookie", cookie.as_str()),
        ("origin", &c.origin()),
        ("content-type", "application/json"),
    ];
    assert_eq!(c.send("POST", "/keys", &json, &form).await.status, 415);
    let ct = ("content-type", "application/x-www-form-urlencoded");
    let own = c.origin();
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", own.as_str()), ("sec-fetch-site", "same-site")],
        vec![],
    ] {
        let mut h = headers.clone();
        h.extend([("cookie", cookie.as_str()), ct]);
        let a = c.send("POST", "/keys", &h, &form).await;
        assert_eq!(a.status, 403, "{headers:?}");
        assert!(a.body.contains("cannot change keys"), "{}", a.body);
    }
    assert_eq!(c.records(), 0, "nothing refused was created");
    // Sec-Fetch-Site alone (a browser that sends no Origin) is enough when it says so.
    let h = [
        ("cookie", cookie.as_str()),
        ("sec-fetch-site", "same-origin"),
        ct,
    ];
    let a = c.send("POST", "/keys", &h, &form).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(c.records(), 1);
}

#[tokio::test]
async fn console_answers_with_its_security_headers_everywhere() {
    let c = Console::start().await;
    let cookie = c.cookie().await;
    let form = create_form(&c, &cookie, "ci").await;
    let answers = [
        c.send("GET", "/", &[], "").await,
        c.send("GET", "/assets/console.js", &[], "").await,
        c.get(&cookie, "/").await,
        c.get(&cookie, "/keys/nope/edit").await,
        c.post(&cookie, "/keys", &form).await,
    ];
    for a in &answers {
        let h = |n: &str| a.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            h("content-security-policy").as_deref(),
            Some(CONTENT_SECURITY_POLICY)
        );
        assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(h("referrer-policy").as_deref(), Some("no-referrer"));
        assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
    }
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    let reveal = &answers[4];
    assert!(reveal.body.contains("you will not see it again"));
    assert_eq!(reveal.headers["cache-control"], "no-store");
    assert_eq!(answers[2].headers["cache-control"], "no-store");
    assert_eq!(answers[3].status, 404, "{}", answers[3].body);
    // No inline script or style in the pages themselves (the policy would block them).
    for a in [&answers[2], reveal] {
        assert!(
            !a.body.contains("<script>") && !a.body.contains("style="),
            "{}",
            a.body
        );
    }
}

#[tokio::test]
async fn console_shows_a_token_once_and_a_reload_mints_no_second_key() {
    let c = Console::start().await;
    let cookie = c.cookie().await;
    let form = create_form(&c, &cookie, "ci").await;
    let reveal = c.post(&cookie, "/keys", &form).await;
    assert_eq!(reveal.status, 200);
    let token = token_in(&reveal.body).expect("the token is on the reveal page");
    let list = c.get(&cookie, "/").await.body;
    assert!(list.contains(">ci<"), "{list}");
    assert!(!list.contains(&token), "the list never shows the token");
    // The browser's "reload" sends the same form again.
    let again = c.post(&cookie, "/keys", &form).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("already sent"), "{}", again.body);
    assert_eq!(token_in(&again.body), None);
    assert_eq!(c.records(), 1);
}

#[tokio::test]
async fn console_binds_loopback_only() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = DirBackend::new(
        DirKeys::new(tmp.path().join("keys"), "ns"),
        keygate::identity::DEFAULT_USER_PREFIX,
        "alice",
    );
    let settings = ConsoleSettings {
        listen: "0.0.0.0:0".parse().unwrap(),
        cluster: None,
    };
    let err = console::bind(settings, backend).await.err().unwrap();
    assert!(matches!(err, ConsoleError::NotLoopback(_)));

    let env = Env::new();
    let out = env.run(&["console", "--no-open", "--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--listen 0.0.0.0:0") && err.contains("loopback"),
        "{err}"
    );
}

/// The binary prints the URL alone on stdout and never logs a token, even at debug level.
#[tokio::test]
async fn console_command_prints_its_url_and_logs_no_token() {
    let env = Env::new();
    let mut child = env
        .cmd(&["--log", "debug", "console", "--no-open"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_owned();
    let rest = url.strip_prefix("http://127.0.0.1:").expect(&url);
    let (port, query) = rest.split_once("/?s=").expect(&url);
    let c = Console {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        url: url.clone(),
        tmp: tempfile::tempdir().unwrap(),
        _stop: tokio::sync::oneshot::channel().0,
    };
    let cookie = c.cookie().await;
    let form = create_form(&c, &cookie, "ci").await;
    let token = token_in(&c.post(&cookie, "/keys", &form).await.body).unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8(out.stderr).unwrap();
    assert!(logs.contains("console listening"), "{logs}");
    let secret = token.rsplit('_').next().unwrap();
    assert!(!logs.contains(secret), "no token in the logs: {logs}");
    assert!(
        !logs.contains(query),
        "no session secret in the logs: {logs}"
    );
}

/// An API server on plain HTTP whose discovery of `keygate.dev/v1alpha1` answers `code` (a
/// Kubernetes `Status`), and a kubeconfig for it.
async fn cluster_answering(code: u16, dir: &std::path::Path) -> std::path::PathBuf {
    let status = http::StatusCode::from_u16(code).unwrap();
    let app = axum::Router::new().route(
        "/apis/keygate.dev/v1alpha1",
        axum::routing::get(move || async move {
            let body = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                "status": "Failure", "code": code, "message": "the server could not find it"});
            (
                status,
                [(http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    crate::common::cli::token_kubeconfig(dir, &server, "alice")
}

/// `--store kube` works through the AccessKey API only: without it (no APIService, or one that
/// does not answer) the console says so and never starts, so it never falls back to Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_a_cluster_without_a_working_accesskey_api_says_so_and_does_not_start() {
    for (code, says) in [
        (404, "does not serve the AccessKey API"),
        (503, "is not available"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let kc = cluster_answering(code, tmp.path()).await;
        let mut cmd = crate::common::cli::bare(tmp.path());
        cmd.env_remove("KUBECONFIG")
            .args(["console", "--no-open", "--store", "kube", "--kubeconfig"])
            .arg(&kc);
        // The binary blocks this thread; the API server answers from the runtime's others.
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(says) && err.contains("v1alpha1.keygate.dev"),
            "{code}: {err}"
        );
        assert!(out.stdout.is_empty(), "no URL: nothing listens");
    }
}
