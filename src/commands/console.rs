//! `keygate console`: binds the console on loopback, prints its URL, opens the browser.

use anyhow::{Context as _, bail};

use super::keys::local_user;
use crate::api::client::AccessKeys;
use crate::api::served::{APISERVICE, Served, served};
use crate::cli::{ConsoleArgs, Global};
use crate::console::api::ApiBackend;
use crate::console::dir::DirBackend;
use crate::console::{self, ClusterTarget, ConsoleSettings, KeyBackend, browser};
use crate::keystore::{DirKeys, StoreSpec};

pub async fn run(global: &Global, args: ConsoleArgs) -> anyhow::Result<()> {
    crate::identity::check_user_prefix(&args.user_prefix)?;
    let mut settings = settings(&args)?;
    match global.store() {
        StoreSpec::Dir(dir) => {
            let keys = DirKeys::new(dir, global.namespace.clone());
            let backend = DirBackend::new(keys, &args.user_prefix, &local_user());
            serve(settings, backend, !args.no_open).await
        }
        StoreSpec::Kube => {
            let (backend, cluster) = on_cluster(global).await?;
            // The kubeconfig offered with a token points where the user's own does, unless
            // --server says otherwise (e.g. a public address of the same cluster).
            settings.cluster.get_or_insert(cluster);
            serve(settings, backend, !args.no_open).await
        }
    }
}

/// The AccessKey API with the user's kubeconfig (--kubeconfig, --context, $KUBECONFIG), and
/// the cluster it names.
async fn on_cluster(global: &Global) -> anyhow::Result<(ApiBackend, ClusterTarget)> {
    let client_settings = global.client();
    let (client, config) = client_settings.client_and_config().await?;
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    // Only ever through the API: with no API there is nothing the console could do with the
    // user's rights alone (writing record Secrets directly is the admin's CLI, not the page).
    match served(&client).await? {
        Served::Api => {}
        Served::NotRegistered => bail!(
            "the cluster at {server} does not serve the AccessKey API (no APIService \
             {APISERVICE}), which `keygate console --store kube` works through; install it \
             (docs/install.md), or use `keygate keys` with an admin's kubeconfig"
        ),
    }
    // kube-apiserver says who the credentials are from 1.28 on; before that, the kubeconfig's
    // user entry is the best name there is, and the header says where it comes from.
    let user = match crate::kubeclient::whoami(&client).await {
        Some(u) => u,
        None => match client_settings.kubeconfig_user() {
            Some(u) => format!("{u} (kubeconfig user)"),
            None => "your kubeconfig's user".to_owned(),
        },
    };
    let cluster = ClusterTarget {
        name: "keygate".to_owned(),
        server: server.clone(),
        ca_pem: config
            .root_cert
            .as_ref()
            .and_then(|c| c.first())
            .map(|der| crate::pki::pem_block("CERTIFICATE", der).into_bytes()),
    };
    let backend = ApiBackend::new(AccessKeys::new(client), &server, &user);
    Ok((backend, cluster))
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
