//! `datacap revoke-invites --member ID`: voids every personal connect link of a member
//! issued until now (a leaked or mis-sent link, a member who left), so `/connect/…/start`
//! refuses them; `datacap remind` then makes a new one. A member connecting voids their
//! older links by itself (a link connects once).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::migrate::{block_on, open, say};
use crate::config;

/// Arguments of `datacap revoke-invites`.
#[derive(clap::Args)]
pub struct Args {
    /// The member's id (as in the tenants file).
    #[arg(long, value_name = "ID")]
    member: String,
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    block_on(async {
        let store = open(&config).await?;
        store
            .revoke_invites(&args.member, time::OffsetDateTime::now_utc())
            .await
            .with_context(|| {
                format!(
                    "cannot revoke the connect links of member {:?}",
                    args.member
                )
            })?;
        store.close().await;
        say(&format!(
            "revoked every connect link of member {} issued until now; `datacap remind` makes a new one",
            args.member
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}
