//! Commands that fail: they leave nothing behind, and say why once. Runs the real binary.

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
