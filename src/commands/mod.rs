//! Command runners: the edge between the command line and the library (anyhow lives here).

pub mod certs;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(&cli.global, *args).await,
        Command::Certs(args) => certs::certs(&args),
        Command::WebhookConfig(args) => certs::webhook_config(&args),
    }
}
