//! `keygate kubeconfig`: a kubeconfig for kubectl with a key, the token inline or fetched by
//! `keygate credential` (client-go exec plugin) each time kubectl runs.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use kube::config::{AuthInfo, ExecConfig, ExecInteractiveMode};

use crate::cli::KubeconfigArgs;
use crate::fsutil;
use crate::kubeconfig::{self, ClusterInfo};
use crate::token::parse_token;

pub const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// The token for an inline kubeconfig: standard input with --token-stdin, else $KEYGATE_TOKEN.
fn inline_token(args: &KubeconfigArgs) -> anyhow::Result<String> {
    let token = if args.token_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the token from standard input")?;
        s
    } else {
        std::env::var("KEYGATE_TOKEN").unwrap_or_default()
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!(
            "no token: pipe it in with --token-stdin, set KEYGATE_TOKEN, or use --exec so kubectl \
             asks `keygate credential` for it"
        );
    }
    if let Err(e) = parse_token(&token) {
        bail!(
            "that is not a keygate token ({e}); it comes from `keygate keys create` or `keys regenerate`"
        );
    }
    Ok(token)
}

fn exec_user(args: &KubeconfigArgs) -> anyhow::Result<AuthInfo> {
    let exe = std::env::current_exe().context("cannot find the path of the keygate binary")?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let mut cmd_args = vec!["credential".to_owned()];
    if let Some(f) = &args.token_file {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        cmd_args.extend(["--token-file".to_owned(), abs.display().to_string()]);
    }
    if let Some(s) = &args.secret {
        if !s.contains('/') {
            bail!("--secret {s}: expected NAMESPACE/NAME");
        }
        cmd_args.extend(["--secret".to_owned(), s.clone()]);
    }
    Ok(AuthInfo {
        exec: Some(ExecConfig {
            api_version: Some(EXEC_API_VERSION.to_owned()),
            command: Some(exe.display().to_string()),
            args: Some(cmd_args),
            interactive_mode: Some(ExecInteractiveMode::Never),
            install_hint: Some(
                "keygate credential provides the token; install keygate or regenerate this \
                 kubeconfig with `keygate kubeconfig --exec`"
                    .to_owned(),
            ),
            ..ExecConfig::default()
        }),
        ..AuthInfo::default()
    })
}

pub fn run(args: &KubeconfigArgs) -> anyhow::Result<()> {
    if !args.server.starts_with("https://") && !args.server.starts_with("http://") {
        bail!(
            "--server {}: expected a URL such as https://my-cluster:6443",
            args.server
        );
    }
    let ca = args
        .certificate_authority
        .as_ref()
        .map(|p| {
            std::fs::read(p)
                .with_context(|| format!("cannot read --certificate-authority {}", p.display()))
        })
        .transpose()?;
    let (user_name, user) = if args.exec {
        ("keygate".to_owned(), exec_user(args)?)
    } else {
        let token = inline_token(args)?;
        let id = parse_token(&token)?.key();
        let user = AuthInfo {
            token: Some(token.into()),
            ..AuthInfo::default()
        };
        (id.record_name(), user)
    };
    let kc = kubeconfig::single(
        &ClusterInfo {
            name: &args.context_name,
            server: &args.server,
            ca_pem: ca.as_deref(),
        },
        &user_name,
        user,
    );
    let text = kubeconfig::to_yaml(&kc)?;
    match &args.output {
        Some(path) => {
            fsutil::write_atomic(path, text.as_bytes(), true)?;
            eprintln!(
                "wrote {}; try: KUBECONFIG={} kubectl auth whoami",
                path.display(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
