//! Commands that fail: they leave nothing behind, say why once, and a failure that repeats is
//! not logged at every retry. Runs the real binary.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::cli::{BIN, free_port};

/// `keygate ARGS` in `dir`, with no cluster configuration and none of keygate's variables.
fn keygate(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("KEYGATE_STORE")
        .env_remove("KEYGATE_KUBECONFIG")
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env("HOME", dir)
        .args(args)
        .output()
        .unwrap()
}

fn serve(dir: &Path, extra: &[&str]) -> Output {
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["serve", "--listen", &listen, "--admin-listen", &admin];
    args.extend_from_slice(extra);
    keygate(dir, &args)
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything under `dir` but the inputs the test put there.
fn left_behind(dir: &Path, inputs: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !inputs.contains(&n.as_str()))
        .collect()
}

#[test]
fn serve_with_the_kube_store_and_no_cluster_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr(&serve(tmp.path(), &["--store", "kube"]));
    assert!(err.contains("--kubeconfig"), "{err}");
    assert!(left_behind(tmp.path(), &[]).is_empty(), "{err}");
}

/// The checks that come after the certificates are generated fail before they are written:
/// a client CA that cannot be read, a key directory that is a file.
#[test]
fn serve_that_fails_a_check_generates_no_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr(&serve(tmp.path(), &["--client-ca", "/nope.pem"]));
    assert!(err.contains("--client-ca"), "{err}");
    assert!(left_behind(tmp.path(), &[]).is_empty(), "{err}");

    std::fs::write(tmp.path().join("file"), "").unwrap();
    let err = stderr(&serve(tmp.path(), &["--store", "dir:file"]));
    assert!(err.contains("--store dir:PATH"), "{err}");
    assert!(left_behind(tmp.path(), &["file"]).is_empty(), "{err}");
}

#[test]
fn a_missing_certificate_names_the_flag_and_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr(&serve(
        tmp.path(),
        &["--tls-cert", "/nope.pem", "--tls-key", "/nope.pem"],
    ));
    assert!(
        err.contains("--tls-cert") && err.contains("/nope.pem"),
        "{err}"
    );
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is printed once: {err}"
    );
}

/// A TLS server on loopback whose certificate is a self-signed CA certificate, as some
/// kube-apiservers have (kubectl accepts it; rustls refuses a CA certificate as a leaf).
/// Returns its port and that certificate (PEM).
async fn api_server_with_a_ca_as_its_certificate() -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(keygate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            // The client gives up during the handshake; nothing more to serve.
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    (port, cert.pem())
}

/// `serve --store kube` against that server: the log names the TLS reason, the server's URL and
/// what to fix, and the same failure is not logged at every retry.
#[tokio::test]
async fn a_refused_api_server_certificate_is_explained_and_not_logged_at_every_retry() {
    let (port, ca) = api_server_with_a_ca_as_its_certificate().await;
    let tmp = tempfile::tempdir().unwrap();
    let server = format!("https://127.0.0.1:{port}");
    let kc = keygate::kubeconfig::single(
        &keygate::kubeconfig::ClusterInfo {
            name: "self-signed",
            server: &server,
            ca_pem: Some(ca.as_bytes()),
        },
        "someone",
        kube::config::AuthInfo {
            token: Some("not-a-real-token".to_owned().into()),
            ..Default::default()
        },
    );
    let kc_path = tmp.path().join("kubeconfig");
    std::fs::write(&kc_path, keygate::kubeconfig::to_yaml(&kc).unwrap()).unwrap();
    let log = tmp.path().join("serve.log");
    let mut child = Command::new(BIN)
        .current_dir(tmp.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KEYGATE_STORE")
        .args(["serve", "--store", "kube", "--kubeconfig"])
        .arg(&kc_path)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The watcher retries about every second (its backoff restarts with each list attempt).
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log).unwrap();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("watching key Secrets failed"))
        .collect();
    assert!(!failures.is_empty(), "{log}");
    let first = failures[0];
    assert!(first.contains(&server), "names the server: {first}");
    assert!(
        first.contains("invalid peer certificate"),
        "the TLS reason: {first}"
    );
    assert!(
        first.contains("certificate-authority") && first.contains("not the CA certificate"),
        "what to fix: {first}"
    );
    assert_eq!(
        failures.len(),
        1,
        "the same failure again is logged after 10 s, not at each retry:\n{log}"
    );
}

/// A kubeconfig for a cluster nobody listens at (creating the client does not dial it).
fn unreachable_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let server = format!("https://127.0.0.1:{}", free_port());
    crate::common::cli::token_kubeconfig(dir, &server, "someone")
}

#[test]
fn serve_api_needs_the_kube_store() {
    let tmp = tempfile::tempdir().unwrap();
    let err = stderr(&serve(tmp.path(), &["--api"]));
    assert!(
        err.contains("--api") && err.contains("--store kube"),
        "{err}"
    );
    assert!(left_behind(tmp.path(), &[]).is_empty(), "{err}");
}

#[test]
fn serve_api_refuses_an_empty_list_of_front_proxy_names() {
    let tmp = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(tmp.path());
    let ca = keygate::pki::generate_ca("front-proxy-ca", 30).unwrap();
    std::fs::write(tmp.path().join("fp-ca.crt"), ca.cert).unwrap();
    let kc = kc.to_str().unwrap();
    let args = [
        "--api",
        "--store",
        "kube",
        "--kubeconfig",
        kc,
        "--requestheader-client-ca",
        "fp-ca.crt",
    ];
    let err = stderr(&serve(tmp.path(), &args));
    assert!(
        err.contains("--requestheader-allowed-names is empty"),
        "{err}"
    );
    assert!(err.contains("--requestheader-allow-any-name"), "{err}");
    assert!(
        left_behind(tmp.path(), &["kubeconfig", "fp-ca.crt"]).is_empty(),
        "{err}"
    );
}

#[test]
fn serve_api_says_how_to_let_it_read_the_front_proxy_configmap() {
    let tmp = tempfile::tempdir().unwrap();
    let kc = unreachable_kubeconfig(tmp.path());
    let args = [
        "--api",
        "--store",
        "kube",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ];
    let err = stderr(&serve(tmp.path(), &args));
    assert!(
        err.contains("kube-system/extension-apiserver-authentication"),
        "{err}"
    );
    assert!(err.contains("--requestheader-client-ca"), "{err}");
    assert!(left_behind(tmp.path(), &["kubeconfig"]).is_empty(), "{err}");
}
