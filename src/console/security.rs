//! The console's guard. It listens on loopback, where every local user and every web page the
//! browser opens can reach it, so each request must prove it comes from the person who ran
//! `keygate console`, through their browser, from the console's own pages:
//!
//! - the Host header names the console's own address (a DNS-rebinding page sends its own name);
//! - a session: the secret of the printed URL is traded once for an `HttpOnly`,
//!   `SameSite=Strict` cookie, then the browser moves on to the clean URL;
//! - a state-changing request comes from the console's origin (`Origin`, `Sec-Fetch-Site`) and
//!   carries the session's CSRF token in its form;
//! - every answer forbids framing, inline script and style, referrers and sniffing; pages are
//!   never cached (the one-time token is in one of them).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use super::views;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The query parameter of the printed URL that carries the session secret.
pub const SESSION_PARAM: &str = "s";
/// Forms are a few fields; nothing larger is read.
const FORM_LIMIT: usize = 64 * 1024;

/// Scripts, styles and images from the console itself only; no inline code of any kind, no
/// plugins, no framing, forms that post only back to the console.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// 32 random bytes, URL-safe.
pub fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The secrets of one console run and the addresses it answers as.
pub struct Session {
    secret: String,
    cookie_value: String,
    csrf: String,
    /// Cookies are shared by every port of a host: the port in the name keeps two consoles
    /// from overwriting each other's session.
    cookie_name: String,
    /// `host:port` values the console answers to.
    hosts: Vec<String>,
    /// The address the printed URL uses.
    origin: String,
}

impl Session {
    pub fn new(addr: SocketAddr) -> Self {
        let port = addr.port();
        let ip = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let hosts = vec![format!("{ip}:{port}"), format!("localhost:{port}")];
        Session {
            secret: random_secret(),
            cookie_value: random_secret(),
            csrf: random_secret(),
            cookie_name: format!("keygate_console_{port}"),
            origin: format!("http://{}", hosts[0]),
            hosts,
        }
    }

    /// The URL to open: the console with the session secret.
    pub fn url(&self) -> String {
        format!("{}/?{SESSION_PARAM}={}", self.origin, self.secret)
    }

    /// The token forms carry in their `csrf` field.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)))
    }

    fn has_cookie(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == self.cookie_name && same(v, &self.cookie_value))
    }

    /// The session secret, when the query carries it.
    fn query_secret<'q>(query: Option<&'q str>) -> Option<std::borrow::Cow<'q, str>> {
        form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == SESSION_PARAM)
            .map(|(_, v)| v)
    }

    fn set_cookie(&self) -> HeaderValue {
        let v = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name, self.cookie_value
        );
        // Both parts are URL-safe base64 and ASCII digits.
        HeaderValue::try_from(v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Why a state-changing request is not from the console's own pages, if it is not.
    ///
    /// `Sec-Fetch-Site`, which a browser sets and no page can forge, must say `same-origin`
    /// when present; `Origin` must be the console's. Under `Referrer-Policy: no-referrer`
    /// Chromium sends `Origin: null` with the console's own form posts, so `null` passes only
    /// when `Sec-Fetch-Site` vouches for it (a sandboxed or `data:` page of another origin is
    /// `cross-site` there).
    fn cross_origin(&self, headers: &HeaderMap) -> Option<String> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("?"));
        let site = headers
            .get("sec-fetch-site")
            .map(|s| s.to_str().unwrap_or("?"));
        if let Some(s) = site.filter(|s| *s != "same-origin") {
            return Some(format!("a {s} request cannot change keys"));
        }
        match origin {
            Some("null") if site.is_some() => None,
            Some(o) if !self.hosts.iter().any(|h| same(o, &format!("http://{h}"))) => Some(
                format!("a request from another origin ({o}) cannot change keys"),
            ),
            Some(_) => None,
            None if site.is_some() => None,
            None => Some(
                "a request without an Origin header cannot change keys; use the console's page"
                    .to_owned(),
            ),
        }
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    views::refused(status, message)
}

/// The guard, in front of every route.
pub async fn guard(State(s): State<Arc<Session>>, req: Request, next: Next) -> Response {
    if !s.host_ok(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "This console answers only at {}; open the URL `keygate console` printed.",
                s.origin
            ),
        );
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    // Stylesheet, script and icon are the same for everyone and hold nothing secret.
    if req.uri().path().starts_with("/assets/") && safe {
        return next.run(req).await;
    }
    if let Some(given) = Session::query_secret(req.uri().query()) {
        if !(safe && req.uri().path() == "/" && same(&given, &s.secret)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "That session link is not valid: open the URL the running `keygate console` \
                 printed (each run prints a new one).",
            );
        }
        let mut r = views::enter();
        r.headers_mut().insert(header::SET_COOKIE, s.set_cookie());
        return r;
    }
    if !s.has_cookie(req.headers()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "No console session: open the URL `keygate console` printed in this terminal \
             (it holds a one-session secret).",
        );
    }
    if safe {
        return next.run(req).await;
    }
    if let Some(why) = s.cross_origin(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, &why);
    }
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the console takes HTML form posts only",
        );
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "that form is too large");
    };
    let csrf_ok = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .is_some_and(|(_, v)| same(&v, &s.csrf));
    if !csrf_ok {
        return refuse(
            StatusCode::FORBIDDEN,
            "This form is stale or was not made by this console (its CSRF token does not \
             match): reload the page and try again.",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The headers every answer carries.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await.into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            http::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            http::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ] {
        h.insert(name, value);
    }
    // Pages hold key lists and, once, a token: never kept by the browser or a proxy.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_session_knows_its_own_addresses_only() {
        let s = Session::new("127.0.0.1:4321".parse().unwrap());
        assert!(s.url().starts_with("http://127.0.0.1:4321/?s="));
        assert!(s.host_ok(&headers(&[("host", "127.0.0.1:4321")])));
        assert!(s.host_ok(&headers(&[("host", "LOCALHOST:4321")])));
        assert!(!s.host_ok(&headers(&[("host", "evil.example:4321")])));
        assert!(!s.host_ok(&headers(&[("host", "127.0.0.1:4322")])));
        assert!(!s.host_ok(&HeaderMap::new()));
        let v6 = Session::new("[::1]:80".parse().unwrap());
        assert!(v6.url().starts_with("http://[::1]:80/?s="));
    }

    #[test]
    fn only_the_session_cookie_of_this_port_counts() {
        let s = Session::new("127.0.0.1:4321".parse().unwrap());
        let good = format!("keygate_console_4321={}", s.cookie_value);
        assert!(s.has_cookie(&headers(&[("cookie", &format!("a=b; {good}"))])));
        let other = format!("keygate_console_4322={}", s.cookie_value);
        assert!(!s.has_cookie(&headers(&[("cookie", &other)])));
        assert!(!s.has_cookie(&headers(&[("cookie", "keygate_console_4321=x")])));
        assert!(
            s.set_cookie()
                .to_str()
                .unwrap()
                .contains("HttpOnly; SameSite=Strict")
        );
    }

    #[test]
    fn state_changes_come_from_the_consoles_origin_only() {
        let s = Session::new("127.0.0.1:4321".parse().unwrap());
        let own = [("origin", "http://127.0.0.1:4321")];
        assert_eq!(s.cross_origin(&headers(&own)), None);
        let fetch = [("sec-fetch-site", "same-origin")];
        assert_eq!(s.cross_origin(&headers(&fetch)), None);
        // What Chromium sends with a form post under `Referrer-Policy: no-referrer`.
        let opaque = [("origin", "null"), ("sec-fetch-site", "same-origin")];
        assert_eq!(s.cross_origin(&headers(&opaque)), None);
        for bad in [
            vec![("origin", "http://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://127.0.0.1:4322")],
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![
                ("origin", "http://127.0.0.1:4321"),
                ("sec-fetch-site", "cross-site"),
            ],
            vec![],
        ] {
            assert!(s.cross_origin(&headers(&bad)).is_some(), "{bad:?}");
        }
    }
}
