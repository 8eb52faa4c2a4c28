//! The key lifecycle through the keygate binary against the dir store, with a real
//! `keygate serve` (child process) authenticating the keys it makes.

use std::time::Duration;

use crate::common::Proto;
use crate::common::cli::*;

/// Reviews `token` against `serve` until `authenticated` is `want` (5 s at most).
async fn until(serve: &Serve, token: &str, want: bool) -> bool {
    let mut c = serve
        .client()
        .connect(serve.addr, Proto::Http1)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.review(token).await;
        assert_eq!(r.status, 200);
        if r.json()["status"]["authenticated"] == want {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn key<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {list}"))
}

#[tokio::test]
async fn keys_made_by_the_cli_authenticate_rotate_disable_expire_and_delete() {
    let env = Env::new();
    std::fs::create_dir_all(env.keys_dir()).unwrap();
    let mut serve = Serve::start(&env, &["--last-used-interval", "100ms"]);
    let mut tokens = Vec::new();

    // Create → authenticated, with the contract's username.
    let (id, t1) = env.create(&["--role", "edit", "--group", "team-a"]);
    tokens.push(t1.clone());
    assert!(until(&serve, &t1, true).await, "new key authenticates");

    // Last use shows up in `keys list`.
    let mut last_used = serde_json::Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            last_used = key(&env.json(&["keys", "list", "-o", "json"]), &id)["lastUsed"].clone();
            last_used.is_string()
        }),
        "last use recorded"
    );
    let table = env.ok(&["keys", "list"]);
    assert!(table.contains(" ago"), "{table}");

    // Regenerate without grace: the old secret stops at once.
    let v = env.json(&["keys", "regenerate", &id.to_lowercase(), "-o", "json"]);
    let t2 = v["token"].as_str().unwrap().to_owned();
    tokens.push(t2.clone());
    assert_ne!(t1, t2);
    assert!(until(&serve, &t2, true).await);
    assert!(until(&serve, &t1, false).await, "old secret refused");
    assert_eq!(v["state"], "active");

    // Regenerate with grace: both work, state is rotating.
    let v = env.json(&["keys", "regenerate", &id, "--grace", "1h", "-o", "json"]);
    let t3 = v["token"].as_str().unwrap().to_owned();
    tokens.push(t3.clone());
    assert_eq!(v["state"], "rotating");
    assert!(v["previousSecretExpiration"].is_string());
    assert!(until(&serve, &t3, true).await);
    assert!(
        until(&serve, &t2, true).await,
        "old secret works in the grace window"
    );

    // Disable / enable.
    env.ok(&["keys", "disable", &id.to_uppercase()]);
    assert!(until(&serve, &t3, false).await, "disabled key refused");
    assert_eq!(
        env.json(&["keys", "get", &id, "-o", "json"])["state"],
        "disabled"
    );
    env.ok(&["keys", "enable", &id]);
    assert!(until(&serve, &t3, true).await, "enabled key works again");

    // Expiry: a key that expires in 2 seconds stops working by itself.
    let (eid, et) = env.create(&["--expires", "2s"]);
    tokens.push(et.clone());
    assert!(until(&serve, &et, true).await);
    assert!(
        wait_for(Duration::from_secs(10), || {
            env.json(&["keys", "get", &eid, "-o", "json"])["state"] == "expired"
        }),
        "state turns expired"
    );
    assert!(until(&serve, &et, false).await, "expired key refused");

    // Delete.
    let out = env.ok(&["keys", "delete", &id]);
    assert!(out.contains("deleted"), "{out}");
    assert!(until(&serve, &t3, false).await, "deleted key refused");
    let err = env.fails(&["keys", "get", &id]);
    assert!(err.contains("keygate keys list"), "{err}");

    // Never a token or a secret in serve's logs.
    serve.stop();
    let logs = serve.logs();
    assert!(logs.contains("tokenreview"), "decisions are logged: {logs}");
    for t in &tokens {
        let secret = &t[t.len() - 43..];
        assert!(!logs.contains(secret), "secret leaked into logs");
    }
}

#[test]
fn create_get_edit_list_in_every_format() {
    let env = Env::new();
    let v = env.json(&[
        "keys",
        "create",
        "--name",
        "deploy bot",
        "--description",
        "ci",
        "--role",
        "view",
        "--namespace-scope",
        "apps",
        "--namespace-scope",
        "web",
        "--expires",
        "90d",
        "-o",
        "json",
    ]);
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 22);
    assert!(
        v["token"]
            .as_str()
            .unwrap()
            .starts_with(&format!("kg_{id}_"))
    );
    assert_eq!(
        v["username"],
        format!("service-account-{}", id.to_lowercase())
    );
    assert_eq!(v["namespaces"], serde_json::json!(["apps", "web"]));
    assert_eq!(v["role"], "view");
    assert_eq!(v["createdBy"], "tester");
    assert_eq!(v["state"], "active");

    // The record holds the hash, never the token.
    let file = env
        .keys_dir()
        .join(format!("keygate-{}.yaml", id.to_lowercase()));
    let text = std::fs::read_to_string(&file).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(!text.contains(&token[26..]) && text.contains("secret-hash: sha256:"));

    // get: text, json, yaml; never the token.
    let got = env.ok(&["keys", "get", &id.to_uppercase()]);
    assert!(
        got.contains("deploy bot") && got.contains("apps,web"),
        "{got}"
    );
    assert!(!got.contains(&token[26..]));
    let got = env.json(&["keys", "get", id, "-o", "json"]);
    assert!(got.get("token").is_none());
    let yaml = env.ok(&["keys", "get", id, "-o", "yaml"]);
    assert!(yaml.contains("name: deploy bot"), "{yaml}");

    // edit name and description.
    env.ok(&["keys", "edit", id, "--name", "renamed", "--description", ""]);
    let got = env.json(&["keys", "get", id, "-o", "json"]);
    assert_eq!(got["name"], "renamed");
    assert!(got.get("description").is_none());
    assert!(env.fails(&["keys", "edit", id]).contains("--name"));

    // list: table, wide, json, yaml.
    let (id2, _) = env.create(&[]);
    let table = env.ok(&["keys", "list"]);
    let head = table.lines().next().unwrap();
    for col in [
        "ID",
        "NAME",
        "ROLE",
        "SCOPE",
        "AGE",
        "EXPIRES",
        "LAST USED",
        "STATE",
    ] {
        assert!(head.contains(col), "{table}");
    }
    assert!(
        table.contains(id) && table.contains(&id2) && table.contains(" in 9"),
        "{table}"
    );
    assert!(env.ok(&["keys", "list", "-o", "wide"]).contains("USERNAME"));
    assert_eq!(
        env.json(&["keys", "list", "-o", "json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(env.ok(&["keys", "list", "-o", "yaml"]).contains(&id2));
}

#[test]
fn create_reports_the_scope_it_cannot_enforce_and_warns_once() {
    let env = Env::new();
    let out = env.run(&[
        "keys",
        "create",
        "--name",
        "x",
        "--role",
        "view",
        "--namespace-scope",
        "apps",
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("Token:") && stdout.contains("kg_"),
        "{stdout}"
    );
    assert!(stderr.contains("no RoleBindings were created"), "{stderr}");
    assert!(stderr.contains("shown only this once"), "{stderr}");
    assert!(!stderr.contains("kg_"), "the token is not on stderr");
}

#[test]
fn errors_say_what_to_do_and_exit_non_zero() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["keys", "get", "AAAAAAAAAAAAAAAAAAAAAA"],
            "keygate keys list",
        ),
        (
            &["keys", "delete", "AAAAAAAAAAAAAAAAAAAAAA"],
            "keygate keys list",
        ),
        (&["keys", "disable", "not-an-id"], "not a key ID"),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--expires",
                "2001-01-01T00:00:00Z",
            ],
            "in the past",
        ),
        (
            &["keys", "create", "--name", "x", "--expires", "soon"],
            "90d",
        ),
        (
            &["keys", "create", "--name", "x", "--namespace-scope", "a"],
            "needs --role",
        ),
        (
            &["keys", "create", "--name", "x", "--group", "system:masters"],
            "system:",
        ),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "--consumer-secret",
                "s",
                "--consumer-namespace",
                "n",
            ],
            "--store kube",
        ),
        (
            &["keys", "regenerate", "AAAAAAAAAAAAAAAAAAAAAA"],
            "keygate keys list",
        ),
    ];
    for (args, hint) in cases {
        let err = env.fails(args);
        assert!(err.contains(hint), "{args:?}: {err}");
    }
}

#[test]
fn kubeconfig_inline_and_exec_and_the_credential_plugin() {
    let env = Env::new();
    let (id, token) = env.create(&[]);
    std::fs::write(env.tmp.path().join("ca.crt"), "CA PEM").unwrap();

    // Inline, token from stdin.
    let mut c = env.cmd(&[
        "kubeconfig",
        "--server",
        "https://127.0.0.1:6443",
        "--certificate-authority",
        "ca.crt",
        "--token-stdin",
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("token: {token}")), "{text}");
    let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let cluster = kc.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    assert!(cluster.certificate_authority_data.is_some());
    assert!(kc.auth_infos[0].auth_info.as_ref().unwrap().token.is_some());
    assert_eq!(
        kc.auth_infos[0].name,
        format!("keygate-{}", id.to_lowercase())
    );

    // Inline from KEYGATE_TOKEN, to a file.
    let out = env
        .cmd(&["kubeconfig", "--server", "https://k:6443", "-o", "kc.yaml"])
        .env("KEYGATE_TOKEN", &token)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(read(&env.tmp.path().join("kc.yaml")).contains(&token));
    let err = env.fails(&["kubeconfig", "--server", "https://k:6443"]);
    assert!(
        err.contains("--token-stdin") && err.contains("KEYGATE_TOKEN"),
        "{err}"
    );

    // Exec: no token in the file; kubectl runs `keygate credential`.
    std::fs::write(env.tmp.path().join("token"), format!("{token}\n")).unwrap();
    let text = env.ok(&[
        "kubeconfig",
        "--server",
        "https://k:6443",
        "--exec",
        "--token-file",
        "token",
    ]);
    assert!(!text.contains(&token));
    let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let exec = kc.auth_infos[0]
        .auth_info
        .as_ref()
        .unwrap()
        .exec
        .as_ref()
        .unwrap();
    assert_eq!(
        exec.api_version.as_deref(),
        Some("client.authentication.k8s.io/v1")
    );
    assert_eq!(
        exec.interactive_mode,
        Some(kube::config::ExecInteractiveMode::Never)
    );
    let command = exec.command.as_deref().unwrap();
    assert!(std::path::Path::new(command).is_absolute(), "{command}");
    let args = exec.args.clone().unwrap();
    assert_eq!(args[0], "credential");
    assert!(std::path::Path::new(&args[2]).is_absolute(), "{args:?}");

    // Run the exec entry as kubectl would.
    let out = std::process::Command::new(command)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cred["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(cred["kind"], "ExecCredential");
    assert_eq!(cred["status"]["token"], token.as_str());

    // KEYGATE_TOKEN wins over the file; nothing set is a clear error.
    let out = env
        .cmd(&["credential", "--token-file", "token"])
        .env("KEYGATE_TOKEN", "kg_from_env")
        .output()
        .unwrap();
    let cred: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cred["status"]["token"], "kg_from_env");
    let err = env.fails(&["credential"]);
    assert!(
        err.contains("KEYGATE_TOKEN") && err.contains("--token-file"),
        "{err}"
    );
}

#[test]
fn completions_for_each_shell() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ok(&["completions", shell]);
        assert!(
            out.contains("keygate") && out.contains("regenerate"),
            "{shell}"
        );
    }
    assert!(!env.run(&["completions", "tcsh"]).status.success());
}

#[test]
fn help_reads_well() {
    let env = Env::new();
    let top = env.ok(&["--help"]);
    for cmd in [
        "serve",
        "keys",
        "kubeconfig",
        "credential",
        "completions",
        "certs",
    ] {
        assert!(top.contains(cmd), "{top}");
    }
    let keys = env.ok(&["keys", "--help"]);
    for cmd in [
        "create",
        "list",
        "get",
        "edit",
        "regenerate",
        "disable",
        "enable",
        "delete",
    ] {
        assert!(keys.contains(cmd), "{keys}");
    }
    let create = env.ok(&["keys", "create", "--help"]);
    for flag in [
        "--name",
        "--role",
        "--namespace-scope",
        "--group",
        "--expires",
        "--consumer-secret",
        "--output",
        "shown only this once",
    ] {
        assert!(create.contains(flag), "{flag}: {create}");
    }
    let regen = env.ok(&["keys", "regenerate", "--help"]);
    assert!(regen.contains("--grace"), "{regen}");
    let kc = env.ok(&["kubeconfig", "--help"]);
    assert!(
        kc.contains("--exec") && kc.contains("--token-stdin"),
        "{kc}"
    );
    let serve = env.ok(&["serve", "--help"]);
    assert!(serve.contains("--last-used-interval"), "{serve}");
}

#[test]
fn with_no_flags_keys_go_where_serve_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bare(tmp.path())
        .args(["keys", "create", "--name", "x", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lower = v["id"].as_str().unwrap().to_lowercase();
    assert!(
        tmp.path()
            .join(format!("keygate-data/keys/keygate-{lower}.yaml"))
            .exists()
    );
}

#[test]
fn kubeconfig_exec_can_read_a_secret() {
    let env = Env::new();
    let text = env.ok(&[
        "kubeconfig",
        "--server",
        "https://k:6443",
        "--exec",
        "--secret",
        "ci/ci-key",
    ]);
    let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let exec = kc.auth_infos[0]
        .auth_info
        .as_ref()
        .unwrap()
        .exec
        .clone()
        .unwrap();
    assert_eq!(exec.args.unwrap(), ["credential", "--secret", "ci/ci-key"]);
    let err = env.fails(&[
        "kubeconfig",
        "--server",
        "https://k:6443",
        "--exec",
        "--secret",
        "nope",
    ]);
    assert!(err.contains("NAMESPACE/NAME"), "{err}");
}

/// What keygate creates is its own: directories 0700, record files and private keys 0600.
#[test]
fn created_directories_are_0700_and_records_0600() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = bare(tmp.path())
        .args(["keys", "create", "--name", "x", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lower = v["id"].as_str().unwrap().to_lowercase();
    let mode = |p: &str| {
        std::fs::metadata(tmp.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("keygate-data"), 0o700);
    assert_eq!(mode("keygate-data/keys"), 0o700);
    assert_eq!(
        mode(&format!("keygate-data/keys/keygate-{lower}.yaml")),
        0o600
    );
}

/// A data directory someone else owns, or anyone may write to, could hold their CA and keys:
/// `serve` refuses it, naming the path and the fix, and writes nothing into it.
#[test]
fn serve_refuses_a_data_directory_others_control() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let data = env.tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let serve = |data: &std::path::Path| {
        env.fails(&[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
    };
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = serve(&data);
    assert!(
        err.contains(&format!(
            "{} (--data-dir) is writable by its group and others",
            data.display()
        )) && err.contains("chmod go-w"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "nothing written"
    );

    // The dir store's own directory is checked too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir(env.keys_dir()).unwrap();
    std::fs::set_permissions(env.keys_dir(), std::fs::Permissions::from_mode(0o722)).unwrap();
    let err = serve(&data);
    assert!(err.contains("(--store dir:PATH) is writable"), "{err}");
    std::fs::set_permissions(env.keys_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // Another owner (giving a directory away takes root; CI runs the tests as root).
    if std::os::unix::fs::chown(&data, Some(65534), Some(65534)).is_ok() {
        let err = serve(&data);
        assert!(
            err.contains(&format!(
                "{} (--data-dir) belongs to uid 65534",
                data.display()
            )),
            "{err}"
        );
    }
}

/// A key directory holding what is not a record file: a symlink to a valid record elsewhere,
/// a FIFO, an oversized file and a broken file with a token-like string in it. The scan must not
/// hang (a FIFO used to block it forever), nothing behind the symlink is loaded, and no output
/// of `serve` or `keys list` quotes the broken file.
#[tokio::test]
async fn the_dir_store_reads_only_regular_small_files_and_never_quotes_them() {
    const LEAK: &str = "kg_LEAKLEAKLEAKLEAKLEAKLE_SECRETSECRETSECRETSECRETSECRETSECRETSEC";
    let (env, elsewhere) = (Env::new(), Env::new());
    let (_, token) = env.create(&[]);
    let (outside_id, outside_token) = elsewhere.create(&[]);
    let outside = elsewhere
        .keys_dir()
        .join(format!("keygate-{}.yaml", outside_id.to_lowercase()));
    let keys = env.keys_dir();
    std::os::unix::fs::symlink(&outside, keys.join("link.yaml")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(keys.join("fifo.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    let big = format!("kind: Secret\n# {}\n", "x".repeat(70 * 1024));
    std::fs::write(keys.join("big.yaml"), big).unwrap();
    std::fs::write(
        keys.join("broken.yaml"),
        format!("kind: Secret\nstringData: {{ token: {LEAK}\n  : [\n"),
    )
    .unwrap();

    // Run with a deadline: a FIFO used to block the scan for good.
    let mut child = env
        .cmd(&["keys", "list", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(Duration::from_secs(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let list = child.wait_with_output().unwrap();
    assert!(exited, "keys list hung: {list:?}");
    let (out, err) = (
        String::from_utf8_lossy(&list.stdout),
        String::from_utf8_lossy(&list.stderr),
    );
    assert!(list.status.success(), "{err}");
    assert!(!out.contains(&outside_id) && !out.contains(LEAK), "{out}");
    for why in [
        "symbolic link",
        "FIFO",
        "65536 bytes",
        "broken.yaml",
        "line ",
    ] {
        assert!(err.contains(why), "{why}: {err}");
    }
    assert!(!err.contains(LEAK), "{err}");

    let mut serve = Serve::start(&env, &[]);
    assert!(until(&serve, &token, true).await);
    assert!(until(&serve, &outside_token, false).await);
    serve.stop();
    let logs = serve.logs();
    for why in ["symbolic link", "FIFO", "65536 bytes", "broken.yaml"] {
        assert!(logs.contains(why), "{why}: {logs}");
    }
    assert!(!logs.contains(LEAK), "{logs}");
}

/// Only exactly `true` disables (the contract); `True` or `yes` leave the key enabled, and say so.
#[test]
fn a_disabled_value_other_than_true_is_reported_by_keys_list() {
    let env = Env::new();
    let (id, _) = env.create(&[]);
    let path = env
        .keys_dir()
        .join(format!("keygate-{}.yaml", id.to_lowercase()));
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("stringData:\n", "stringData:\n  disabled: \"True\"\n", 1);
    assert_ne!(text, edited, "{text}");
    std::fs::write(&path, edited).unwrap();
    let out = env.run(&["keys", "list", "-o", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(key(&list, &id)["disabled"], false, "{list}");
    assert!(err.contains("stays ENABLED") && err.contains(&id), "{err}");
}

/// `keys --user-prefix` follows the rule of `serve --user-prefix`: a `system:` prefix (whose
/// RoleBindings would name a system: user) or an empty one is refused before anything is made.
#[test]
fn keys_refuse_the_user_prefixes_serve_refuses() {
    let env = Env::new();
    for prefix in ["system:admin-", ""] {
        let err = env.fails(&[
            "keys",
            "--user-prefix",
            prefix,
            "create",
            "--name",
            "x",
            "--role",
            "view",
            "--namespace-scope",
            "apps",
        ]);
        assert!(err.contains("--user-prefix"), "{err}");
        assert!(err.contains("system:"), "{err}");
    }
    let err = env.fails(&["keys", "list", "--user-prefix", "system:x"]);
    assert!(err.contains("--user-prefix"), "{err}");
    assert!(
        !env.keys_dir().exists() || std::fs::read_dir(env.keys_dir()).unwrap().next().is_none(),
        "no key was made"
    );
    // The default and an ordinary prefix still work.
    env.create(&[]);
    env.ok(&["keys", "list", "--user-prefix", "team-"]);
}
