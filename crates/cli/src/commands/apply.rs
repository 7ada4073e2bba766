//! `datacap apply FILE`: declares companies, members, settings and credential references
//! from a tenants file (format: `config/tenants.example.toml`).
//!
//! The whole file is parsed and validated before the database is touched, and the store
//! writes it in one transaction, so a bad file lists every problem, one line each naming
//! its line and field (`error: FILE:LINE: companies[0].members[3].email: …`), and nothing
//! is written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::migrate::{block_on, open, say};
use crate::config;

/// Arguments of `datacap apply`.
#[derive(clap::Args)]
pub struct Args {
    /// The tenants file (TOML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read tenants file {}", args.file.display()))?;
    let tenants = datacap_store::parse_tenants(&text)
        .map_err(|error| tenants_problems(&args.file.display().to_string(), &error))?;
    block_on(async {
        let store = open(&config).await?;
        let summary = store
            .apply_tenants(&tenants, time::OffsetDateTime::now_utc())
            .await
            .with_context(|| format!("cannot apply {}", args.file.display()))?;
        store.close().await;
        say(&format!(
            "applied {}: {} companies, {} members; deactivated {} members, {} companies; {} webhook endpoints ({} deactivated)",
            args.file.display(),
            summary.companies,
            summary.members,
            summary.members_deactivated,
            summary.companies_deactivated,
            summary.webhooks,
            summary.webhooks_deactivated
        ))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Every problem of a tenants file as one error, a line `FILE:LINE: field: problem` each.
pub(crate) fn tenants_problems(file: &str, errors: &datacap_store::TenantsErrors) -> anyhow::Error {
    let lines: Vec<String> = errors
        .problems
        .iter()
        .map(|problem| format!("{file}:{problem}"))
        .collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}
