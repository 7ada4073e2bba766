//! `datacap poll --member ID [--channel email|calendar] [--full]`: makes a member's channels due
//! now, so the next claim of a running daemon (any replica) polls them: how on-call
//! forces a re-poll after fixing a credential or a permission, without waiting for the
//! schedule. A channel whose attempt is running right now (a live lease) is left to it.
//! It only writes a due time; the daemon does the polling, so it needs no provider
//! credentials.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datacap_core::Channel;

use crate::commands::migrate::{block_on, open, say};
use crate::config;

/// Arguments of `datacap poll`.
#[derive(clap::Args)]
pub struct Args {
    /// The member's id (as in the tenants file).
    #[arg(long, value_name = "ID")]
    member: String,
    /// Only this channel (default: email and calendar).
    #[arg(long, value_name = "CHANNEL", value_parser = parse_channel)]
    channel: Option<Channel>,
    /// A forced full resync: drop the saved cursor, so the next poll imports everything
    /// again from the start (items are deduplicated as always).
    #[arg(long)]
    full: bool,
}

fn parse_channel(text: &str) -> Result<Channel, String> {
    Channel::parse(text).ok_or_else(|| format!("{text:?} is not email or calendar"))
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    block_on(async {
        let store = open(&config).await?;
        let now = time::OffsetDateTime::now_utc();
        let report = if args.full {
            store.make_due_full(&args.member, args.channel, now).await
        } else {
            store.make_due(&args.member, args.channel, now).await
        };
        let report = report.with_context(|| format!("cannot make member {:?} due", args.member))?;
        store.close().await;
        let which = args.channel.map_or("email and calendar", Channel::as_str);
        let full = if args.full {
            ", from the start (saved cursor dropped: a full pass)"
        } else {
            ""
        };
        say(&format!(
            "member {}: {which}: {} channel(s) due now{full}, the next claim of a running daemon polls them; {} being polled right now (leased)",
            args.member, report.made_due, report.leased
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}
