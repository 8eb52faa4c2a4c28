//! Secret hygiene, with the real binary: every key command and every request path at TRACE log
//! level, and no secret or token in any output except the designated `create` / `regenerate`
//! stdout. Also: `system:` groups are refused, and TLS below 1.2 is refused.

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::cli::{BIN, Env, Serve};
use crate::common::{FIXTURE_V1, FIXTURE_V1BETA1, Proto, eventually, review_body};

/// Everything that would betray a token: the whole token, the secret, and every 12-character
/// window of the secret (a logged prefix or fragment).
fn fragments(token: &str) -> Vec<String> {
    let secret = &token[26..];
    let mut out = vec![token.to_owned(), secret.to_owned()];
    for i in 0..=secret.len() - 12 {
        out.push(secret[i..i + 12].to_owned());
    }
    out
}

fn assert_clean(what: &str, text: &str, tokens: &[String]) {
    for t in tokens {
        for f in fragments(t) {
            assert!(
                !text.contains(&f),
                "{what} leaks (part of) a secret {f:?}:\n{text}"
            );
        }
    }
}

/// A key command at TRACE level; returns (stdout, stderr).
fn run(env: &Env, args: &[&str]) -> (String, String) {
    let out: Output = env
        .cmd(args)
        .env("KEYGATE_LOG", "trace")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "keygate {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn token_in(stdout: &str) -> String {
    let at = stdout.find("kg_").expect("no token printed");
    stdout[at..at + 69].to_owned()
}

#[tokio::test]
async fn no_secret_in_any_output_at_trace_level() {
    let env = Env::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut cases = 0;

    // create: the token appears on stdout, and only there.
    let (out, err) = run(&env, &["keys", "create", "--name", "a", "-o", "json"]);
    let a = token_in(&out);
    let a_id = a[3..25].to_owned();
    assert_clean("create -o json stderr", &err, std::slice::from_ref(&a));
    let (out, err) = run(&env, &["keys", "create", "--name", "b", "--role", "view"]);
    let b = token_in(&out);
    assert_clean("create (text) stderr", &err, &[a.clone(), b.clone()]);
    let (out, err) = run(&env, &["keys", "create", "--name", "c", "-o", "yaml"]);
    let c = token_in(&out);
    assert_clean(
        "create -o yaml stderr",
        &err,
        &[a.clone(), b.clone(), c.clone()],
    );
    tokens.extend([a.clone(), b.clone(), c.clone()]);
    cases += 3;

    // Everything that reads keys: never a secret.
    let ids: Vec<String> = tokens.iter().map(|t| t[3..25].to_owned()).collect();
    let mut reads: Vec<Vec<&str>> = vec![
        vec!["keys", "list"],
        vec!["keys", "list", "-o", "wide"],
        vec!["keys", "list", "-o", "json"],
        vec!["keys", "list", "-o", "yaml"],
    ];
    for id in &ids {
        reads.push(vec!["keys", "get", id]);
        reads.push(vec!["keys", "get", id, "-o", "json"]);
        reads.push(vec!["keys", "get", id, "-o", "yaml"]);
    }
    for args in &reads {
        let (out, err) = run(&env, args);
        assert_clean(&format!("{args:?}"), &format!("{out}{err}"), &tokens);
        cases += 1;
    }

    // The server at TRACE, with every request path.
    let mut serve = Serve::start(&env, &["--log", "trace", "--last-used-interval", "1s"]);
    let client = serve.client();
    assert!(
        eventually(Duration::from_secs(5), || async {
            let Ok(mut c) = client.connect(serve.addr, Proto::Http2).await else {
                return false;
            };
            c.review(&a).await.json()["status"]["authenticated"] == true
        })
        .await
    );
    let wrong = format!("{}{}", &a[..26], "W".repeat(43));
    let unknown = keygate::token::Token::generate(keygate::token::KeyId::generate()).expose();
    let malformed = format!("{}!", &a[..68]);
    tokens.extend([wrong.clone(), unknown.clone(), malformed.clone()]);
    for proto in [Proto::Http1, Proto::Http2] {
        let mut conn = client.connect(serve.addr, proto).await.unwrap();
        for (t, want) in [
            (&a, Some(true)),
            (&b, Some(true)),
            (&wrong, Some(false)),
            (&unknown, Some(false)),
            (&malformed, Some(false)),
        ] {
            for fixture in [FIXTURE_V1, FIXTURE_V1BETA1] {
                let r = conn
                    .post("/authenticate?timeout=30s", review_body(fixture, t))
                    .await;
                assert_eq!(r.json()["status"]["authenticated"].as_bool(), want);
                assert_clean("review answer", &String::from_utf8_lossy(&r.body), &tokens);
                cases += 1;
            }
        }
        // Error paths that carry a token somewhere: 400, 404, 405, 413, odd headers.
        let bad_bodies = [
            format!(
                "{{\"kind\":\"TokenReview\",\"apiVersion\":\"v9\",\"spec\":{{\"token\":\"{a}\"}}}}"
            ),
            format!(
                "{{\"kind\":\"Other\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{{\"token\":\"{a}\"}}}}"
            ),
            format!(
                "{{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"spec\":{{\"token\":[\"{a}\"]}}}}"
            ),
            format!("{{\"spec\":{{\"token\":\"{a}\"}},"),
            format!("\"{a}\""),
            a.clone(),
        ];
        for body in bad_bodies {
            let r = conn.post("/authenticate", body).await;
            assert_eq!(r.status, 400);
            assert_clean("400 reason", &String::from_utf8_lossy(&r.body), &tokens);
            cases += 1;
        }
        let r = conn
            .post(
                &format!("/authenticate/{a}?token={a}"),
                review_body(FIXTURE_V1, &a),
            )
            .await;
        assert_eq!(r.status, 404);
        let req = http::Request::get(format!("https://localhost/authenticate?token={a}"))
            .header("authorization", format!("Bearer {a}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        assert_eq!(conn.send(req).await.unwrap().status, 405);
        let req = http::Request::post(format!("https://localhost/authenticate?token={a}"))
            .header("authorization", format!("Bearer {a}"))
            .header("x-token", a.as_str())
            .body(http_body_util::Full::new(bytes::Bytes::from(review_body(
                FIXTURE_V1, &b,
            ))))
            .unwrap();
        assert_eq!(conn.send(req).await.unwrap().status, 200);
        let big = format!("{}{}", review_body(FIXTURE_V1, &a), " ".repeat(70_000));
        let req = http::Request::post("https://localhost/authenticate")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(big)))
            .unwrap();
        // Over HTTP/1.1 too the answer arrives: the server drains an oversized body (up to
        // 2 MiB) before the 413 instead of resetting the connection.
        let r = conn.send(req).await.unwrap();
        assert_eq!(r.status, 413);
        assert_clean("413 reason", &String::from_utf8_lossy(&r.body), &tokens);
        cases += 4;
    }
    // Admin endpoints.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let (_, text) = crate::common::admin_get(serve.admin, path).await;
        assert_clean(path, &text, &tokens);
        cases += 1;
    }

    // Rotation and the rest of the lifecycle while the server runs.
    let (out, err) = run(
        &env,
        &["keys", "regenerate", &a_id, "--grace", "1h", "-o", "json"],
    );
    let a2 = token_in(&out);
    assert_ne!(a2, a);
    assert_clean(
        "regenerate stdout (the old token)",
        &out,
        std::slice::from_ref(&a),
    );
    assert_clean("regenerate stderr", &err, &[a.clone(), a2.clone()]);
    let (out, err) = run(&env, &["keys", "rotate", &ids[1]]);
    let b2 = token_in(&out);
    assert_clean("rotate stderr", &err, &[b.clone(), b2.clone()]);
    tokens.extend([a2.clone(), b2.clone()]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let Ok(mut c) = client.connect(serve.addr, Proto::Http1).await else {
                return false;
            };
            c.review(&a2).await.json()["status"]["authenticated"] == true
                && c.review(&b2).await.json()["status"]["authenticated"] == true
        })
        .await
    );
    // The old secret of `a` works in its grace window; `b`'s old one is gone.
    let mut conn = client.connect(serve.addr, Proto::Http2).await.unwrap();
    assert_eq!(
        conn.review(&a).await.json()["status"]["authenticated"],
        true
    );
    for args in [
        vec!["keys", "disable", &ids[2]],
        vec!["keys", "enable", &ids[2]],
        vec!["keys", "edit", &ids[2], "--description", "d"],
        vec!["keys", "list", "-o", "json"],
        vec!["keys", "get", &ids[0], "-o", "yaml"],
        vec!["keys", "delete", &ids[2]],
        vec!["keys", "list", "-o", "wide"],
    ] {
        let (out, err) = run(&env, &args);
        assert_clean(&format!("{args:?}"), &format!("{out}{err}"), &tokens);
        cases += 1;
    }
    // Key files hold hashes only.
    for entry in std::fs::read_dir(env.keys_dir()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert_clean("record file", &text, &tokens);
    }

    serve.stop();
    let logs = serve.logs();
    assert!(
        logs.contains("TRACE"),
        "the server did not log at TRACE:\n{logs}"
    );
    assert!(logs.contains("tokenreview") && logs.contains(&a_id));
    assert_clean("serve logs at TRACE", &logs, &tokens);
    eprintln!(
        "{cases} commands and requests at TRACE; {} log bytes checked for {} tokens",
        logs.len(),
        tokens.len()
    );
}

#[test]
fn system_groups_are_refused() {
    let env = Env::new();
    // The CLI refuses to write one.
    for g in ["system:masters", "system:nodes", "system:authenticated"] {
        let out = env.run(&["keys", "create", "--name", "x", "--group", g]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "created a key with {g}");
        assert!(stderr.contains("system:"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("kg_"));
    }
    assert!(
        std::fs::read_dir(env.keys_dir())
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    );
    // A prefix that would make every username a system: user is refused by serve.
    let out = Command::new(BIN)
        .args([
            "--store",
            &env.store(),
            "serve",
            "--user-prefix",
            "system:node:",
        ])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .current_dir(env.tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("system:"));
}

/// Whether `openssl s_client` completes a handshake with `flags`.
fn openssl_handshake(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    flags: &[&str],
) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args([
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_return_error",
            "-brief",
        ])
        // The embedded mode requires its generated client certificate.
        .arg("-cert")
        .arg(ca.with_file_name("client.crt"))
        .arg("-key")
        .arg(ca.with_file_name("client.key"))
        .args(flags)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("CONNECTION ESTABLISHED"), text)
}

#[test]
fn tls_below_1_2_is_refused() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is needed for this test (apt-get install openssl)");
    }
    let env = Env::new();
    let serve = Serve::start(&env, &[]);
    // SECLEVEL=0 lets the client offer the old versions at all; the refusal must be the server's.
    for flag in ["-tls1", "-tls1_1"] {
        let (ok, text) = openssl_handshake(
            serve.addr,
            &serve.ca,
            &[flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
        );
        assert!(!ok, "{flag} accepted:\n{text}");
        assert!(
            text.contains("protocol version") || text.contains("alert"),
            "{flag}: not refused by the server:\n{text}"
        );
    }
    for flag in ["-tls1_2", "-tls1_3"] {
        let (ok, text) = openssl_handshake(serve.addr, &serve.ca, &[flag]);
        assert!(ok, "{flag} refused:\n{text}");
    }
    // And SSLv3/TLS 1.0-style ClientHello bytes on the wire (no openssl involved): a record
    // whose ClientHello offers only TLS 1.1 gets a protocol_version alert or a close.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&client_hello_tls11()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // Alert record (21), fatal (2), protocol_version (70) or handshake_failure (40), or nothing.
    assert!(
        buf.is_empty()
            || (buf[0] == 21 && buf.len() >= 7 && buf[5] == 2 && [40, 70].contains(&buf[6])),
        "{buf:?}"
    );
}

/// A minimal ClientHello offering TLS 1.1 only (legacy_version 0x0302, no supported_versions).
fn client_hello_tls11() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([0x42; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ciphers
    body.extend([0x01, 0x00]); // compression: null
    body.extend([0x00, 0x00]); // no extensions
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}
