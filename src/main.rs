#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = keygate::cli::Cli::parse();
    let log = keygate::telemetry::init(cli.global.log_format.into(), &cli.global.log);
    let result = keygate::commands::run(cli).await;
    // Buffered log lines go out before the final error, in the order they happened.
    drop(log);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
