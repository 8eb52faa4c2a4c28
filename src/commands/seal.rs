//! `keygate seal-key`, `keygate keys seal` and `keygate webhook-config --admission`: the
//! record seal's key pair, sealing existing records, and installing the record guard.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};

use super::keys::Ctx;
use crate::admission::{self, Endpoint};
use crate::cli::{Global, SealArgs, SealKeyArgs, WebhookConfigArgs};
use crate::fsutil;
use crate::keystore::KeyStore;
use crate::seal::{self, Sealer};

pub fn seal_key(args: &SealKeyArgs) -> anyhow::Result<()> {
    for path in [&args.private_key, &args.public_key] {
        if !args.force && path.exists() {
            bail!("{} exists; pass --force to replace it", path.display());
        }
    }
    seal::write_key_pair(&args.private_key, &args.public_key)?;
    println!(
        "wrote {} (signing key, 0600: give it to the AccessKey API only) and {} (for keygate \
         serve --record-verify-key)",
        args.private_key.display(),
        args.public_key.display()
    );
    Ok(())
}

/// Seals the existing records; fails (after reporting) if any record was refused or failed.
pub async fn seal_records(ctx: &mut Ctx, args: &SealArgs) -> anyhow::Result<()> {
    let KeyStore::Kube(keys) = &ctx.store else {
        bail!(
            "keys seal works on the kube store only (--store kube): dir-store records are not sealed"
        );
    };
    let sealer = Sealer::load(&args.signing_key, "--signing-key")?;
    let report = seal::migrate::seal_all(&keys.api(), &sealer)
        .await
        .with_context(|| format!("cannot list key Secrets in namespace {}", keys.namespace))?;
    for name in &report.sealed {
        writeln!(ctx.out, "sealed   {name}")?;
    }
    for name in &report.already {
        writeln!(ctx.out, "ok       {name} (already sealed with this key)")?;
    }
    for (name, why) in &report.refused {
        writeln!(ctx.out, "refused  {name}: {why}")?;
    }
    for (name, why) in &report.failed {
        writeln!(ctx.out, "failed   {name}: {why}")?;
    }
    writeln!(
        ctx.out,
        "{} sealed, {} already sealed, {} refused, {} failed",
        report.sealed.len(),
        report.already.len(),
        report.refused.len(),
        report.failed.len()
    )?;
    if !report.refused.is_empty() {
        ctx.notes.push(
            "refused records are not valid and stay unsealed: once serve checks seals they never \
             authenticate; recreate those keys through the AccessKey API and delete them"
                .into(),
        );
    }
    if !report.failed.is_empty() {
        bail!("some records could not be sealed; run `keygate keys seal` again");
    }
    Ok(())
}

fn endpoint(args: &WebhookConfigArgs) -> anyhow::Result<Endpoint> {
    let Some(service) = &args.service else {
        let server = args
            .server
            .as_deref()
            .unwrap_or("https://127.0.0.1:8443/authenticate");
        let url = match server.strip_suffix("/authenticate") {
            Some(base) => format!("{base}{}", admission::PATH),
            None => server.to_owned(),
        };
        return Ok(Endpoint::Url(url));
    };
    let (namespace, rest) = service
        .split_once('/')
        .context("--service is NAMESPACE/NAME[:PORT]")?;
    let (name, port) = match rest.split_once(':') {
        Some((n, p)) => (n, p.parse().context("--service port is a number")?),
        None => (rest, 443),
    };
    Ok(Endpoint::Service {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        port,
    })
}

pub fn admission_config(global: &Global, args: &WebhookConfigArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.certificate_authority).with_context(|| {
        format!(
            "cannot read --certificate-authority {}",
            args.certificate_authority.display()
        )
    })?;
    let config = admission::webhook_configuration(&endpoint(args)?, &ca, &global.namespace);
    let text = serde_saphyr::to_string(&config)
        .map_err(|e| anyhow::anyhow!("cannot write the configuration as YAML: {e}"))?;
    match &args.output {
        Some(path) => fsutil::write_atomic(path, text.as_bytes(), false)?,
        None => print!("{text}"),
    }
    Ok(())
}
