//! Command runners: the edge between the command line and the library (anyhow lives here).

pub mod certs;
pub mod console;
pub mod credential;
pub mod keys;
pub mod kubeconfig;
pub mod seal;
pub mod serve;
pub mod view;

use clap::CommandFactory;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, *args).await,
        Command::Certs(args) => certs::certs(&args),
        Command::WebhookConfig(args) if args.admission => {
            seal::admission_config(&cli.global, &args)
        }
        Command::WebhookConfig(args) => certs::webhook_config(&args),
        Command::SealKey(args) => seal::seal_key(&args),
        Command::Keys(args) => keys::run(&cli.global, args).await,
        Command::Console(args) => console::run(&cli.global, args).await,
        Command::Kubeconfig(args) => kubeconfig::run(&args),
        Command::Credential(args) => credential::run(&cli.global, &args).await,
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "keygate", &mut std::io::stdout());
            Ok(())
        }
    }
}
