//! The webhook over real TLS on loopback: answers, denials, HTTP errors, live store changes,
//! certificate reload and client certificates.

use std::time::Duration;

use crate::common::*;
use keygate::record::{Expiry, Role};

const SOON: Duration = Duration::from_secs(5);

fn authenticated(r: &Reply) -> bool {
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert!(
        v["status"].get("error").is_none(),
        "denials carry no status.error: {v}"
    );
    v["status"]["authenticated"].as_bool().unwrap()
}

#[tokio::test]
async fn valid_key_over_http1_and_http2_gets_the_contract_identity() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let (id, token) = srv.add_key(|r| {
        r.role = Some(Role::Edit);
        r.name = "deploy bot".into();
        r.groups = vec!["team-a".into()];
    });
    assert!(eventually(SOON, || async { srv.index.get(&id.key()).is_some() }).await);
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = srv.client().connect(srv.addr, proto).await.unwrap();
        let want_alpn: &[u8] = if proto == Proto::Http2 {
            b"h2"
        } else {
            b"http/1.1"
        };
        assert_eq!(c.alpn.as_deref(), Some(want_alpn));
        let r = c.review(&token).await;
        assert!(authenticated(&r));
        let v = r.json();
        assert_eq!(v["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(v["kind"], "TokenReview");
        let user = &v["status"]["user"];
        let lower = id.key();
        assert_eq!(user["username"], format!("service-account-{lower}"));
        assert_eq!(user["uid"], format!("keygate:{lower}"));
        assert_eq!(
            user["groups"],
            serde_json::json!(["keygate:keys", "keygate:edit", "team-a"])
        );
        assert_eq!(
            user["extra"]["keygate.dev/key-id"],
            serde_json::json!([id.as_str()])
        );
        assert_eq!(
            user["extra"]["keygate.dev/key-name"],
            serde_json::json!(["deploy bot"])
        );
        assert!(!String::from_utf8_lossy(&r.body).contains(&token[26..]));
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn both_api_versions_are_answered_in_kind() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let (id, token) = srv.add_key(|_| {});
    assert!(eventually(SOON, || async { srv.index.get(&id.key()).is_some() }).await);
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    for (fixture, version) in [
        (FIXTURE_V1, "authentication.k8s.io/v1"),
        (FIXTURE_V1BETA1, "authentication.k8s.io/v1beta1"),
    ] {
        let r = c
            .post("/authenticate?timeout=30s", review_body(fixture, &token))
            .await;
        assert!(authenticated(&r));
        assert_eq!(r.json()["apiVersion"], version);
        let r = c
            .post("/authenticate", review_body(fixture, "good.token"))
            .await;
        assert!(!authenticated(&r), "the fixture's own token is foreign");
        assert_eq!(r.json()["apiVersion"], version);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn every_denial_is_a_cacheable_false() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let (_, good) = srv.add_key(|_| {});
    let (_, disabled) = srv.add_key(|r| r.disabled = true);
    let (_, expired) =
        srv.add_key(|r| r.expiration = Some(Expiry::At("2020-01-01T00:00:00Z".parse().unwrap())));
    let (_, bad_group) = srv.add_key(|r| r.groups = vec!["system:masters".into()]);
    let (_, unknown) = {
        let t = keygate::token::Token::generate(keygate::token::KeyId::generate());
        (t.id.clone(), t.expose())
    };
    let wrong_secret = format!("{}{}", &good[..26], "x".repeat(43));
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    assert!(eventually(SOON, || async { srv.index.len() == 4 }).await);
    assert!(authenticated(&c.review(&good).await));
    for token in [
        disabled.as_str(),
        &expired,
        &bad_group,
        &unknown,
        &wrong_secret,
        "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "kg_tooshort",
    ] {
        assert!(
            !authenticated(&c.review(token).await),
            "{token} must be denied"
        );
    }
    let (_, metrics) = admin_get(srv.admin, "/metrics").await;
    for reason in [
        "disabled",
        "expired",
        "invalid_record",
        "unknown_key",
        "wrong_secret",
        "foreign_token",
        "malformed_token",
    ] {
        let line = format!("keygate_decisions_total{{result=\"denied\",reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn http_errors_have_plain_reasons() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    let r = c.post("/authenticate", "{not json").await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("not a TokenReview"));
    let r = c
        .post(
            "/authenticate",
            r#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{}}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    // Over HTTP/1.1 the server drains the oversized body before answering, so the 413 arrives.
    let r = c.post("/authenticate", vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(r.status, 413);
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let r = c.post("/authenticate", vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(r.status, 413);
    let r = c.post("/elsewhere", "{}").await;
    assert_eq!(r.status, 404);
    let req = http::Request::get("https://localhost/authenticate")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
    srv.shutdown().await;
}

#[tokio::test]
async fn answers_503_until_the_store_is_loaded() {
    let srv = TestServer::start(ServerOptions {
        no_store: true,
        ..ServerOptions::default()
    })
    .await;
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    let r = c.review("kg_anything").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(admin_get(srv.admin, "/readyz").await.0, 503);
    assert_eq!(admin_get(srv.admin, "/healthz").await.0, 200);
    srv.index.set_ready();
    assert_eq!(c.review("kg_anything").await.status, 200);
    assert_eq!(admin_get(srv.admin, "/readyz").await.0, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn keys_added_changed_and_deleted_in_the_dir_store_take_effect_while_running() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let token = keygate::token::Token::generate(keygate::token::KeyId::generate());
    let t = token.expose();
    assert!(!authenticated(&c.review(&t).await));

    let mut rec = keygate::record::KeyRecord::new(token.id.clone(), token.secret_hash(), "live");
    write_record(&srv.keys_dir, &rec);
    assert!(
        srv.until_authenticated(&t, true).await,
        "added key not picked up"
    );

    rec.disabled = true;
    write_record(&srv.keys_dir, &rec);
    assert!(
        srv.until_authenticated(&t, false).await,
        "disable not picked up"
    );

    rec.disabled = false;
    write_record(&srv.keys_dir, &rec);
    assert!(
        srv.until_authenticated(&t, true).await,
        "enable not picked up"
    );

    std::fs::remove_file(record_path(&srv.keys_dir, &token.id)).unwrap();
    assert!(
        srv.until_authenticated(&t, false).await,
        "delete not picked up"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn certificate_reload_without_restart_or_dropped_connections() {
    let srv = TestServer::start(ServerOptions::default()).await;
    let (_, token) = srv.add_key(|_| {});
    let mut old_conn = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    let first = old_conn.peer_cert.clone().unwrap();

    // A new certificate from the same CA, written as a Secret volume would (atomic replace).
    let server = keygate::pki::issue(
        &srv.bundle.ca,
        "keygate",
        None,
        &["localhost".into()],
        true,
        30,
    )
    .unwrap();
    keygate::fsutil::write_atomic(
        &srv.certs_dir.join("server.key"),
        server.key.as_bytes(),
        true,
    )
    .unwrap();
    keygate::fsutil::write_atomic(
        &srv.certs_dir.join("server.crt"),
        server.cert.as_bytes(),
        false,
    )
    .unwrap();

    let client = srv.client();
    let reloaded = eventually(SOON, || {
        let client = client.clone();
        let first = first.clone();
        let addr = srv.addr;
        async move {
            let c = client.connect(addr, Proto::Http1).await;
            c.map(|c| c.peer_cert.unwrap() != first).unwrap_or(false)
        }
    })
    .await;
    assert!(reloaded, "new connections never saw the new certificate");
    // The connection made before the reload still works.
    assert!(eventually(SOON, || async { srv.index.len() == 1 }).await);
    assert!(authenticated(&old_conn.review(&token).await));

    // A broken certificate is refused and the current one keeps serving.
    std::fs::write(srv.certs_dir.join("server.crt"), "garbage").unwrap();
    let (_, m) = admin_get(srv.admin, "/metrics").await;
    let failed = eventually(SOON, || async {
        admin_get(srv.admin, "/metrics")
            .await
            .1
            .contains("keygate_tls_reloads_total{result=\"failure\"} 1")
    })
    .await;
    assert!(failed, "{m}");
    let mut c = srv.client().connect(srv.addr, Proto::Http1).await.unwrap();
    assert!(authenticated(&c.review(&token).await));
    srv.shutdown().await;
}

/// The handshake fails, or (with TLS 1.3, where the server checks the client certificate after
/// the client thinks it is done) the first request does: either way, no answer.
#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let srv = TestServer::start(ServerOptions {
        client_ca: true,
        ..ServerOptions::default()
    })
    .await;
    let (_, token) = srv.add_key(|_| {});
    assert!(eventually(SOON, || async { srv.index.len() == 1 }).await);

    let trusted = srv.client().with_identity(&srv.bundle.client);
    let mut c = trusted.connect(srv.addr, Proto::Http2).await.unwrap();
    assert!(authenticated(&c.review(&token).await));

    // No certificate, or one from another CA: no answer.
    assert_no_answer(&srv.client(), srv.addr, &token).await;
    let other = keygate::pki::generate_bundle(&["localhost".into()], "intruder", 30).unwrap();
    assert_no_answer(&srv.client().with_identity(&other.client), srv.addr, &token).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start(ServerOptions::default()).await;
    let (_, token) = srv.add_key(|_| {});
    assert!(eventually(SOON, || async { srv.index.len() == 1 }).await);

    // A request whose body is half sent when the shutdown begins.
    let body = review_body(FIXTURE_V1, &token);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut tls = srv
        .client()
        .connect_tls(srv.addr, crate::common::Proto::Http1)
        .await
        .unwrap();
    let head = format!(
        "POST /authenticate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(first.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    // Let the server start reading the request before it is told to stop.
    assert!(
        eventually(SOON, || async {
            admin_get(srv.admin, "/metrics")
                .await
                .1
                .contains("keygate_open_connections 1")
        })
        .await
    );

    srv.begin_shutdown();
    // New connections are refused once the listener is closed.
    let refused = eventually(SOON, || async {
        srv.client().connect(srv.addr, Proto::Http1).await.is_err()
    })
    .await;
    assert!(refused, "listener still accepting after shutdown began");
    assert!(
        !srv.is_stopped(),
        "shutdown must wait for the in-flight request"
    );

    tls.write_all(rest.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"authenticated\":true"), "{text}");
    assert!(
        eventually(SOON, || async { srv.is_stopped() }).await,
        "server did not stop after draining"
    );
}

/// Answers ready at the same time on one HTTP/2 connection leave together: 100 concurrent
/// reviews take a few TLS records, not one (or more) each, as they did with hyper's defaults
/// over tokio-rustls (one `writev` per answer; see `http::coalesce`).
#[tokio::test]
async fn concurrent_http2_answers_share_tls_writes() {
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::Ordering;

    let srv = TestServer::start(ServerOptions::default()).await;
    let (id, token) = srv.add_key(|r| r.role = Some(Role::View));
    assert!(eventually(SOON, || async { srv.index.get(&id.key()).is_some() }).await);
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tcp = CountRecords::new(tcp);
    let records = tcp.records.clone();
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(srv.client().rustls(Proto::Http2)));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = bytes::Bytes::from(review_body(FIXTURE_V1, &token));
    let review = |mut sender: hyper::client::conn::http2::SendRequest<Full<bytes::Bytes>>| {
        let req = http::Request::post("https://localhost/authenticate?timeout=30s")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        async move {
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    };
    // The handshake and the first exchange (settings, window updates) are not counted.
    review(sender.clone()).await;
    records.store(0, Ordering::Relaxed);

    let n = 100;
    let answers = futures::future::join_all((0..n).map(|_| review(sender.clone()))).await;
    let records = records.load(Ordering::Relaxed);
    for a in &answers {
        let v: serde_json::Value = serde_json::from_slice(a).unwrap();
        assert_eq!(v["status"]["authenticated"], true);
        // An answer this long is what h2 would have sent in a write of its own.
        assert!(a.len() >= 256, "{} bytes", a.len());
    }
    eprintln!("{n} answers in {records} TLS records");
    assert!(records <= n / 4, "{n} answers took {records} TLS records");
    srv.shutdown().await;
}
