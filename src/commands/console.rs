//! `keygate console`: binds the console on loopback, prints its URL, opens the browser.

use anyhow::{Context as _, bail};

use super::keys::local_user;
use crate::cli::{ConsoleArgs, Global};
use crate::console::dir::DirBackend;
use crate::console::{self, ClusterTarget, ConsoleSettings, KeyBackend, browser};
use crate::identity::{GroupPattern, IdentityPolicy};
use crate::keystore::{DirKeys, StoreSpec};

pub async fn run(global: &Global, args: ConsoleArgs) -> anyhow::Result<()> {
    let identity = IdentityPolicy::new(args.user_prefix.clone(), vec![GroupPattern::any()])?;
    let settings = settings(&args)?;
    match global.store() {
        StoreSpec::Dir(dir) => {
            let keys = DirKeys::new(dir, global.namespace.clone());
            let backend = DirBackend::new(keys, identity, &local_user());
            serve(settings, backend, !args.no_open).await
        }
        StoreSpec::Kube => bail!(
            "--store kube: the console manages cluster keys through the AccessKey API, which \
             this keygate does not reach yet; run it on a dir store (--store dir:PATH)"
        ),
    }
}

fn settings(args: &ConsoleArgs) -> anyhow::Result<ConsoleSettings> {
    let cluster = match &args.server {
        None => None,
        Some(server) => {
            if !server.starts_with("https://") && !server.starts_with("http://") {
                bail!("--server {server}: expected a URL such as https://my-cluster:6443");
            }
            let ca_pem = args
                .certificate_authority
                .as_ref()
                .map(|p| {
                    std::fs::read(p).with_context(|| {
                        format!("cannot read --certificate-authority {}", p.display())
                    })
                })
                .transpose()?;
            Some(ClusterTarget {
                name: "keygate".to_owned(),
                server: server.clone(),
                ca_pem,
            })
        }
    };
    Ok(ConsoleSettings {
        listen: args.listen,
        cluster,
    })
}

async fn serve<B: KeyBackend>(
    settings: ConsoleSettings,
    backend: B,
    open: bool,
) -> anyhow::Result<()> {
    let bound = console::bind(settings, backend).await?;
    let url = bound.url();
    // The URL goes to stdout alone, so a script can read it; everything else to stderr.
    println!("{url}");
    eprintln!(
        "keygate console: open the URL above in your browser (it holds this session's secret: \
         keep it to yourself). Ctrl-C stops the console."
    );
    let _launcher = if open {
        match browser::open(&url) {
            Ok(Some(l)) => {
                eprintln!("Opening it with {}.", l.opener);
                Some(l)
            }
            Ok(None) => {
                eprintln!("No browser found here ($BROWSER, a display): open the URL yourself.");
                None
            }
            Err(e) => {
                eprintln!("Could not open a browser ({e}): open the URL yourself.");
                None
            }
        }
    } else {
        None
    };
    bound.serve(crate::serve::termination()).await?;
    Ok(())
}
