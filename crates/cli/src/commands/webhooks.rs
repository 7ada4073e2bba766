//! `datacap webhooks`: the operator's view of webhook delivery (issue 19). `list` shows
//! every endpoint of the tenants file with its backlog, dead events, last success and
//! last failure; `redeliver --event ID` sends one event again to every endpoint it went
//! to, `redeliver --dead-since TIME` every event given up on since then. It only reads and
//! writes the outbox; a running daemon (any replica) does the sending.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datacap_store::EndpointReport;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::commands::migrate::{block_on, open, say};
use crate::config;

/// Arguments of `datacap webhooks`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every endpoint with its backlog, dead events, last success and last failure.
    List {
        /// Only this company's endpoints.
        #[arg(long, value_name = "ID")]
        company: Option<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Send events again: one by id, or every one given up on since a time.
    Redeliver {
        /// The event id (`webhook-id`, `evt_…`).
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "dead_since",
            required_unless_present = "dead_since"
        )]
        event: Option<String>,
        /// An RFC 3339 time (2026-12-03T09:00:00Z): every delivery that died since.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        dead_since: Option<OffsetDateTime>,
        /// With --dead-since: only this company's deliveries.
        #[arg(long, value_name = "ID", requires = "dead_since")]
        company: Option<String>,
    },
}

fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time like 2026-12-03T09:00:00Z"))
}

fn time_text(at: Option<OffsetDateTime>) -> String {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

/// The endpoints as a table, one line each.
fn table(endpoints: &[EndpointReport]) -> String {
    let mut lines = vec![format!(
        "{:<12} {:<12} {:<8} {:>7} {:>5} {:<30} {:<30} {}",
        "COMPANY",
        "ENDPOINT",
        "ACTIVE",
        "BACKLOG",
        "DEAD",
        "OLDEST PENDING",
        "LAST SUCCESS",
        "LAST FAILURE"
    )];
    for endpoint in endpoints {
        let failure = match (&endpoint.last_failure, endpoint.last_failure_at) {
            (Some(what), at) => format!("{} ({what})", time_text(at)),
            (None, _) => "-".to_owned(),
        };
        lines.push(format!(
            "{:<12} {:<12} {:<8} {:>7} {:>5} {:<30} {:<30} {}",
            endpoint.company_id,
            endpoint.endpoint_id,
            if endpoint.active { "yes" } else { "no" },
            endpoint.backlog,
            endpoint.dead,
            time_text(endpoint.oldest_pending_since),
            time_text(endpoint.last_success_at),
            failure
        ));
        lines.push(format!("  {} {}", endpoint.url, endpoint.events.join(",")));
    }
    lines.join("\n")
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    block_on(async {
        let store = open(&config).await?;
        let now = OffsetDateTime::now_utc();
        let output = match args.action {
            Action::List { company, format } => {
                let endpoints = store
                    .webhook_endpoints(company.as_deref())
                    .await
                    .context("cannot read the webhook endpoints")?;
                if format == "json" {
                    serde_json::to_string_pretty(&serde_json::json!({ "endpoints": endpoints }))?
                } else if endpoints.is_empty() {
                    "no webhook endpoints (declare them in the tenants file: [[companies.webhooks]])".to_owned()
                } else {
                    table(&endpoints)
                }
            }
            Action::Redeliver {
                event: Some(event), ..
            } => {
                let count = store
                    .redeliver_event(&event, now)
                    .await
                    .with_context(|| format!("cannot redeliver event {event:?}"))?;
                if count == 0 {
                    store.close().await;
                    anyhow::bail!(
                        "event {event:?}: no delivery to send again (unknown id, or it is still pending)"
                    );
                }
                format!(
                    "event {event}: {count} deliveries pending again; a running daemon sends them"
                )
            }
            Action::Redeliver {
                dead_since: Some(since),
                company,
                ..
            } => {
                let count = store
                    .redeliver_dead_since(since, company.as_deref(), now)
                    .await
                    .context("cannot redeliver the dead deliveries")?;
                format!(
                    "{count} dead deliveries since {} pending again; a running daemon sends them",
                    time_text(Some(since))
                )
            }
            Action::Redeliver { .. } => anyhow::bail!("give --event ID or --dead-since TIME"),
        };
        store.close().await;
        say(&output)?;
        Ok(ExitCode::SUCCESS)
    })
}
