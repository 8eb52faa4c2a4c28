//! Unit tests of the front-proxy settings and of reading the caller from headers.

use super::*;
use crate::fixtures::fake_kube;
use crate::pki;
use serde_json::json;

fn ca_pem() -> String {
    pki::generate_ca("front-proxy-ca", 30).unwrap().cert
}

fn config() -> RequestHeaderConfig {
    let s = RequestHeaderSettings {
        allowed_names: vec!["front-proxy-client".into()],
        ..RequestHeaderSettings::default()
    };
    s.from_flags(ca_pem().as_bytes()).unwrap()
}

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::try_from(*k).unwrap(),
            http::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

#[test]
fn caller_follows_kube_apiserver_rules() {
    let h = headers(&[
        ("x-remote-user", b"alice"),
        ("x-remote-user", b"mallory"),
        ("X-Remote-Group", b"dev"),
        ("x-remote-group", b""),
        ("x-remote-group", b"system:authenticated"),
        ("X-Remote-Extra-Scopes", b"a"),
        ("x-remote-extra-scopes", b"b"),
        ("x-remote-extra-keygate.dev%2Fkey-id", b"ABC"),
        ("x-remote-extra-bad%zz", b"kept"),
        ("x-remote-extra-", b"empty key"),
        ("x-remote-uid", b"ignored"),
        ("authorization", b"Bearer ignored"),
    ]);
    let c = config().caller(&h).unwrap();
    assert_eq!(c.username, "alice", "the first value of the first header");
    assert_eq!(
        c.groups,
        ["dev", "system:authenticated"],
        "empty values skipped"
    );
    let extra: Vec<(&str, Vec<&str>)> = c
        .extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        extra,
        [
            ("", vec!["empty key"]),
            ("bad%zz", vec!["kept"]),
            ("keygate.dev/key-id", vec!["ABC"]),
            ("scopes", vec!["a", "b"]),
        ]
    );
}

#[test]
fn username_headers_are_tried_in_order_and_one_is_needed() {
    let mut cfg = config();
    cfg.username_headers = vec![
        HeaderName::from_static("x-first"),
        HeaderName::from_static("x-remote-user"),
    ];
    let h = headers(&[("x-first", b""), ("x-remote-user", b"bob")]);
    assert_eq!(cfg.caller(&h).unwrap().username, "bob");
    let err = cfg
        .caller(&headers(&[("x-remote-group", b"g")]))
        .unwrap_err();
    assert_eq!(err, NoCaller::NoUser("x-first, x-remote-user".into()));
    let err = cfg
        .caller(&headers(&[("x-remote-user", b"\xc3(")]))
        .unwrap_err();
    assert!(matches!(err, NoCaller::NotUtf8(_)), "{err}");
    // UTF-8 is kept as sent.
    let h = headers(&[("x-remote-user", "zoë".as_bytes())]);
    assert_eq!(cfg.caller(&h).unwrap().username, "zoë");
}

#[test]
fn percent_decoding_is_go_path_unescape() {
    assert_eq!(path_unescape("a%2Fb%20c").as_deref(), Some("a/b c"));
    assert_eq!(path_unescape("a+b").as_deref(), Some("a+b"));
    assert_eq!(path_unescape("%C3%A9").as_deref(), Some("é"));
    assert_eq!(path_unescape("50%"), None);
    assert_eq!(path_unescape("%4"), None);
    assert_eq!(path_unescape("%zz"), None);
    assert_eq!(path_unescape("%ff"), None, "not UTF-8");
}

#[test]
fn allowed_names_are_required_unless_any_name_is_accepted() {
    let s = RequestHeaderSettings::default();
    let err = s.from_flags(ca_pem().as_bytes()).unwrap_err().to_string();
    assert!(
        err.contains("--requestheader-allowed-names is empty"),
        "{err}"
    );
    assert!(err.contains("--requestheader-allow-any-name"), "{err}");
    let s = RequestHeaderSettings {
        allow_any_name: true,
        ..s
    };
    let cfg = s.from_flags(ca_pem().as_bytes()).unwrap();
    assert!(cfg.name_allowed("anyone"));
    let cfg = config();
    assert!(cfg.name_allowed("front-proxy-client"));
    assert!(!cfg.name_allowed("kube-apiserver"));
}

#[test]
fn flags_are_checked_naming_the_flag() {
    let s = RequestHeaderSettings {
        allowed_names: vec!["p".into()],
        ..RequestHeaderSettings::default()
    };
    let err = s.from_flags(b"not pem").unwrap_err().to_string();
    assert!(
        err.contains("--requestheader-client-ca holds no PEM"),
        "{err}"
    );
    let bad = RequestHeaderSettings {
        group_headers: vec!["X Remote".into()],
        ..s.clone()
    };
    let err = bad.from_flags(ca_pem().as_bytes()).unwrap_err().to_string();
    assert!(err.contains("--requestheader-group-headers"), "{err}");
    let none = RequestHeaderSettings {
        username_headers: vec![],
        ..s
    };
    let err = none
        .from_flags(ca_pem().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--requestheader-username-headers names no header"),
        "{err}"
    );
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn configmap_lists_are_json_arrays() {
    let ca = ca_pem();
    let d = data(&[
        ("requestheader-client-ca-file", &ca),
        ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
        ("requestheader-username-headers", r#"["X-Remote-User"]"#),
        ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
        (
            "requestheader-extra-headers-prefix",
            r#"["X-Remote-Extra-"]"#,
        ),
        ("client-ca-file", "not ours"),
    ]);
    let cfg = from_configmap(&d, false).unwrap();
    assert_eq!(cfg.allowed_names, ["front-proxy-client"]);
    assert_eq!(cfg.username_headers, ["x-remote-user"]);
    assert_eq!(cfg.group_headers, ["x-remote-group"]);
    assert_eq!(cfg.extra_prefixes, ["x-remote-extra-"]);
    assert_eq!(cfg.client_ca.len(), 1);

    let mut d2 = d.clone();
    d2.insert("requestheader-allowed-names".into(), "[]".into());
    let err = from_configmap(&d2, false).unwrap_err().to_string();
    assert!(
        err.contains("requestheader-allowed-names in ConfigMap"),
        "{err}"
    );
    assert!(from_configmap(&d2, true).is_ok());

    d2.insert(
        "requestheader-allowed-names".into(),
        "front-proxy-client".into(),
    );
    let err = from_configmap(&d2, false).unwrap_err().to_string();
    assert!(err.contains("is not a JSON array of strings"), "{err}");

    let mut d3 = d.clone();
    d3.remove("requestheader-client-ca-file");
    let err = from_configmap(&d3, false).unwrap_err().to_string();
    assert!(err.contains("without a front proxy"), "{err}");
}

#[tokio::test]
async fn load_reads_the_configmap_in_kube_system() {
    let ca = ca_pem();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": CONFIGMAP_NAMESPACE},
        "data": {
            "requestheader-client-ca-file": ca,
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        }
    });
    let (client, seen) = fake_kube(move |_| (200, cm.clone()));
    let cfg = RequestHeaderSettings::default()
        .load(&client)
        .await
        .unwrap();
    assert_eq!(cfg.allowed_names, ["front-proxy-client"]);
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .map(|s| (s.method.clone(), s.path.clone()))
            .collect::<Vec<_>>(),
        [(
            "GET".to_owned(),
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
                .to_owned()
        )]
    );
}

#[tokio::test]
async fn a_configmap_keygate_may_not_read_says_how_to_fix_it() {
    let (client, _) = fake_kube(|_| {
        (
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "Forbidden", "code": 403,
                   "message": "configmaps \"extension-apiserver-authentication\" is forbidden"}),
        )
    });
    let err = RequestHeaderSettings::default()
        .load(&client)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("forbidden"), "{err}");
    assert!(
        err.contains("extension-apiserver-authentication-reader"),
        "{err}"
    );
    assert!(err.contains("--requestheader-client-ca"), "{err}");
}
