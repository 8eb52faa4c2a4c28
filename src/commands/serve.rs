//! `keygate serve`.

use crate::cli::{Global, ServeArgs};
use crate::serve;

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let bound = serve::bind(args.settings(global)).await?;
    bound.spawn(serve::termination()).wait().await?;
    Ok(())
}
