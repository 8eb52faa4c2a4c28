//! `keygate certs` and `keygate webhook-config`.

use std::path::Path;

use anyhow::{Context, bail};

use crate::apiservice::ApiServiceSettings;
use crate::cli::{CertsArgs, WebhookConfigArgs};
use crate::pki::{self, Bundle, Pem, names};
use crate::{fsutil, kubeconfig};

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn certs(args: &CertsArgs) -> anyhow::Result<()> {
    let dir = &args.out_dir;
    let ca = if args.reuse_ca {
        Pem {
            cert: read_text(&dir.join(names::CA_CERT))
                .context("--reuse-ca needs ca.crt in --out-dir")?,
            key: read_text(&dir.join(names::CA_KEY))
                .context("--reuse-ca needs ca.key in --out-dir")?,
        }
    } else {
        if !args.force && dir.join(names::CA_CERT).exists() {
            bail!(
                "{} already holds certificates; pass --reuse-ca to issue new leaf certificates from \
                 the same CA, or --force to replace everything",
                dir.display()
            );
        }
        pki::generate_ca("keygate CA", args.days.max(365) * 2)?
    };
    let server = pki::issue(&ca, "keygate", None, &args.sans, true, args.days)?;
    let client = pki::issue(&ca, &args.client_cn, None, &[], false, args.days)?;
    Bundle { ca, server, client }.write(dir)?;
    println!(
        "wrote {dir}/{{ca.crt,ca.key,server.crt,server.key,client.crt,client.key}} (SANs: {}; client CN: {}; {} days)",
        args.sans.join(", "),
        args.client_cn,
        args.days,
        dir = dir.display()
    );
    Ok(())
}

pub fn webhook_config(args: &WebhookConfigArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.certificate_authority).with_context(|| {
        format!(
            "cannot read --certificate-authority {}",
            args.certificate_authority.display()
        )
    })?;
    let text = if args.apiservice {
        ApiServiceSettings {
            service_name: args.service_name.clone(),
            service_namespace: args.service_namespace.clone(),
            port: args.port,
            ca_pem: ca,
            external_name: (!args.no_service).then(|| args.external_name.clone()),
        }
        .to_yaml()?
    } else {
        webhook_kubeconfig(args, &ca)?
    };
    match &args.output {
        Some(path) => fsutil::write_atomic(path, text.as_bytes(), true)?,
        None => print!("{text}"),
    }
    Ok(())
}

fn webhook_kubeconfig(args: &WebhookConfigArgs, ca: &[u8]) -> anyhow::Result<String> {
    let client = match (&args.client_certificate, &args.client_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c)
                .with_context(|| format!("cannot read --client-certificate {}", c.display()))?,
            std::fs::read(k)
                .with_context(|| format!("cannot read --client-key {}", k.display()))?,
        )),
        _ => None,
    };
    let server = match (&args.server, args.authorizer) {
        (Some(s), _) => s.as_str(),
        (None, false) => "https://127.0.0.1:8443/authenticate",
        (None, true) => "https://127.0.0.1:8443/authorize",
    };
    if args.authorizer && !server.ends_with("/authorize") {
        bail!("--server {server}: with --authorizer the URL ends in /authorize");
    }
    if !args.authorizer && server.ends_with("/authorize") {
        bail!("--server {server}: /authorize is the authorizer's path; pass --authorizer");
    }
    let kc = kubeconfig::webhook(
        server,
        ca,
        client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    );
    Ok(kubeconfig::to_yaml(&kc)?)
}
