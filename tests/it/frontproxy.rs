//! The AccessKey API on the webhook's TLS listener: only kube-apiserver's front proxy (a client
//! certificate signed by the request-header CA with an allowed common name) reaches the API,
//! with the caller its headers name; the webhooks keep `--client-ca`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Full;
use keygate::api::{AccessKeyApi, ApiSettings, Caller};
use keygate::http::HttpResponse;
use keygate::http::router::ApiHandler;
use keygate::pki::{self, Pem};
use keygate::requestheader::{RequestHeaderConfig, RequestHeaderSettings};

use crate::common::fake_api;
use crate::common::*;

/// An API that records what reached it and answers 200.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(http::request::Parts, Bytes, Caller)>>,
}

impl ApiHandler for Recorder {
    fn handle(&self, req: http::Request<Bytes>, caller: Caller) -> BoxFuture<'_, HttpResponse> {
        let (parts, body) = req.into_parts();
        self.seen.lock().unwrap().push((parts, body, caller));
        Box::pin(async { http::Response::new(Full::new(Bytes::from_static(b"reached"))) })
    }
}

/// The front proxy's CA and two certificates it signed: the allowed one and another name.
struct FrontProxy {
    ca: Pem,
    allowed: Pem,
    other_name: Pem,
}

impl FrontProxy {
    fn new() -> Self {
        let ca = pki::generate_ca("front-proxy-ca", 30).unwrap();
        let issue = |cn: &str| pki::issue(&ca, cn, None, &[], false, 30).unwrap();
        let (allowed, other_name) = (issue("front-proxy-client"), issue("kube-apiserver"));
        FrontProxy {
            ca,
            allowed,
            other_name,
        }
    }

    fn trust(&self) -> RequestHeaderConfig {
        RequestHeaderSettings {
            allowed_names: vec!["front-proxy-client".into()],
            ..RequestHeaderSettings::default()
        }
        .from_flags(self.ca.cert.as_bytes())
        .unwrap()
    }
}

async fn start(client_ca: bool, api: Arc<dyn ApiHandler>, fp: &FrontProxy) -> TestServer {
    TestServer::start(ServerOptions {
        client_ca,
        api: Some((api, fp.trust())),
        ..ServerOptions::default()
    })
    .await
}

/// A server (with `--client-ca` when `client_ca`) whose API is a [`Recorder`].
async fn setup(client_ca: bool) -> (FrontProxy, Arc<Recorder>, TestServer) {
    let fp = FrontProxy::new();
    let api = Arc::new(Recorder::default());
    let srv = start(client_ca, api.clone(), &fp).await;
    (fp, api, srv)
}

/// A connection to `srv` presenting `cert`.
async fn connect_as(srv: &TestServer, cert: &Pem, proto: Proto) -> Conn {
    let client = srv.client().with_identity(cert);
    client.connect(srv.addr, proto).await.unwrap()
}

const ACCESSKEYS: &str = "/apis/keygate.dev/v1alpha1/accesskeys";

/// A request to the API with forged identity headers.
fn forged(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .header("x-remote-user", "system:admin")
        .header("x-remote-group", "system:masters")
        .header("x-remote-extra-keygate.dev%2Fkey-id", "X")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn assert_unauthorized_status(r: &Reply) {
    assert_eq!(r.status, 401, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["kind"], "Status");
    assert_eq!(j["reason"], "Unauthorized");
    assert_eq!(j["code"], 401);
}

#[tokio::test]
async fn api_requests_from_anyone_but_the_allowed_front_proxy_get_401() {
    let (fp, api, srv) = setup(true).await;
    let webhook_client = srv.client().with_identity(&srv.bundle.client);
    let wrong_name = srv.client().with_identity(&fp.other_name);
    for proto in [Proto::Http1, Proto::Http2] {
        for client in [&webhook_client, &wrong_name] {
            let mut c = client.connect(srv.addr, proto).await.unwrap();
            for path in [ACCESSKEYS, "/apis", "/apis/keygate.dev", "/openapi/v2"] {
                assert_unauthorized_status(&c.send(forged(path)).await.unwrap());
            }
        }
    }
    // With --client-ca, a client without a certificate completes its handshake (so the API can
    // answer it as kube-apiserver's clients expect) and gets 401 everywhere: from the API as a
    // Status, from the webhook as text.
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    assert_unauthorized_status(&c.send(forged(ACCESSKEYS)).await.unwrap());
    assert_eq!(c.review("kg_nope").await.status, 401);
    assert!(api.seen.lock().unwrap().is_empty(), "the API was reached");
}

#[tokio::test]
async fn without_client_ca_a_client_without_certificate_still_gets_401_on_the_api() {
    let (_fp, api, srv) = setup(false).await;
    let mut c = srv.client().connect(srv.addr, Proto::Http2).await.unwrap();
    assert_unauthorized_status(&c.send(forged(ACCESSKEYS)).await.unwrap());
    // The webhook answers anyone, as it did without --client-ca.
    assert_eq!(c.review("kg_nope").await.status, 200);
    assert!(api.seen.lock().unwrap().is_empty(), "the API was reached");
}

#[tokio::test]
async fn the_front_proxy_reaches_the_api_with_the_caller_its_headers_name() {
    let (fp, api, srv) = setup(true).await;
    for proto in [Proto::Http1, Proto::Http2] {
        let mut c = connect_as(&srv, &fp.allowed, proto).await;
        let req = http::Request::post(format!("https://localhost{ACCESSKEYS}?dryRun=All"))
            .header("content-type", "application/json")
            .header("X-Remote-User", "alice")
            .header("X-Remote-Group", "dev")
            .header("X-Remote-Group", "system:authenticated")
            .header("X-Remote-Extra-Keygate.dev%2Fkey-id", "ABC")
            .header("X-Remote-Extra-Scopes", "a")
            .header("x-remote-extra-scopes", "b")
            .body(Full::new(Bytes::from_static(b"{\"spec\":{}}")))
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"reached"[..]));
        // No username: refused before the API.
        let req = http::Request::get(format!("https://localhost{ACCESSKEYS}"))
            .header("x-remote-group", "dev")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_unauthorized_status(&c.send(req).await.unwrap());
    }
    let seen = api.seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one request per protocol");
    for (parts, body, caller) in seen.iter() {
        let extra = BTreeMap::from([
            ("keygate.dev/key-id".to_owned(), vec!["ABC".to_owned()]),
            ("scopes".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
        ]);
        let want = Caller {
            username: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra,
        };
        assert_eq!(caller, &want);
        assert_eq!(&body[..], b"{\"spec\":{}}");
        assert_eq!(parts.uri.path(), ACCESSKEYS);
        assert_eq!(parts.uri.query(), Some("dryRun=All"));
        assert!(
            parts
                .headers
                .keys()
                .all(|k| !k.as_str().starts_with("x-remote-")),
            "identity headers are not passed on: {:?}",
            parts.headers
        );
    }
}

#[tokio::test]
async fn authenticate_keeps_requiring_the_webhook_client_certificate() {
    let (fp, api, srv) = setup(true).await;
    let (_, token) = srv.add_key(|_| {});
    let mut c = connect_as(&srv, &srv.bundle.client, Proto::Http1).await;
    let mut authenticated = false;
    for _ in 0..250 {
        authenticated = c.review(&token).await.json()["status"]["authenticated"] == true;
        if authenticated {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(authenticated, "the webhook client certificate is answered");
    for cert in [&fp.allowed, &fp.other_name] {
        let mut c = connect_as(&srv, cert, Proto::Http2).await;
        let r = c.review(&token).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
        assert!(!String::from_utf8_lossy(&r.body).contains("authenticated"));
    }
    assert!(api.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn api_bodies_over_3_mib_are_refused_with_a_status() {
    let (fp, api, srv) = setup(true).await;
    let mut c = connect_as(&srv, &fp.allowed, Proto::Http1).await;
    let req = http::Request::post(format!("https://localhost{ACCESSKEYS}"))
        .header("x-remote-user", "alice")
        .body(Full::new(Bytes::from(vec![b' '; (3 << 20) + 1])))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge");
    assert!(api.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_access_key_api_itself_is_reached_by_the_front_proxy() {
    let fp = FrontProxy::new();
    let (kube, _) = fake_api::fake(|_| fake_api::status(404, "NotFound", "not found"));
    let settings = ApiSettings::new("keygate-system", keygate::identity::DEFAULT_USER_PREFIX);
    let api = Arc::new(AccessKeyApi::new(kube, settings));
    let srv = start(true, api, &fp).await;
    let mut c = connect_as(&srv, &fp.allowed, Proto::Http2).await;
    let req = http::Request::get("https://localhost/apis/keygate.dev/v1alpha1")
        .header("x-remote-user", "alice")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send(req).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["kind"], "APIResourceList");
    assert_eq!(r.json()["resources"][0]["name"], "accesskeys");
}

/// An API whose answers misbehave by path: `.../slow` holds its thread for a while (as a long
/// list would), `.../panic` panics, anything else answers at once.
struct Unruly;

impl ApiHandler for Unruly {
    fn handle(&self, req: http::Request<Bytes>, _: Caller) -> BoxFuture<'_, HttpResponse> {
        match req.uri().path().rsplit('/').next() {
            Some("slow") => std::thread::sleep(std::time::Duration::from_millis(1500)),
            Some("panic") => panic!("an API handler's bug"),
            _ => {}
        }
        Box::pin(async { http::Response::new(Full::new(Bytes::from_static(b"quick"))) })
    }
}

/// HTTP/2 requests are served inside their connection's task, but API requests run as tasks of
/// their own: one that holds its thread does not hold up the other requests of its connection,
/// and one whose handler panics gets a 500 while the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_failing_api_request_does_not_hold_up_its_connection() {
    use http_body_util::BodyExt;

    let fp = FrontProxy::new();
    let srv = start(false, Arc::new(Unruly), &fp).await;
    let client = srv.client().with_identity(&fp.allowed);
    let (sender, _conn) = client.h2_sender::<Full<Bytes>>(srv.addr).await;
    let send = |path: &'static str| {
        let mut sender = sender.clone();
        let req = http::Request::get(format!("https://localhost{ACCESSKEYS}{path}"))
            .header("x-remote-user", "alice")
            .body(Full::new(Bytes::new()))
            .unwrap();
        tokio::spawn(async move {
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.into_body().collect().await.unwrap().to_bytes())
        })
    };
    let slow = send("/slow");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let quick = tokio::time::timeout(std::time::Duration::from_secs(1), send("/quick"))
        .await
        .expect("a quick request waited for the slow one")
        .unwrap();
    assert_eq!(quick, (200, Bytes::from_static(b"quick")));
    assert!(!slow.is_finished(), "the slow request was not slow");
    let (status, body) = send("/panic").await.unwrap();
    assert_eq!(status, 500, "{body:?}");
    assert_eq!(send("/quick").await.unwrap().0, 200);
    assert_eq!(slow.await.unwrap().0, 200);
    srv.shutdown().await;
}
