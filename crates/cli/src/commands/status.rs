//! `datacap status`: the Team members page in a terminal, read from the database: each
//! company's banners, then one row per active member with its three icons.
//!
//! `--format json` prints DESIGN.md's shape for tools; the table is for people.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datacap_store::{IconReport, StatusReport};

use crate::commands::migrate::{block_on, open, say};
use crate::config;

/// How `datacap status` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Arguments of `datacap status`.
#[derive(clap::Args)]
pub struct Args {
    /// Only this company.
    #[arg(long, value_name = "ID")]
    company: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    let report = block_on(async {
        let store = open(&config).await?;
        let report = store
            .status(args.company.as_deref())
            .await
            .context("cannot read the status")?;
        store.close().await;
        Ok(report)
    })?;
    let output = match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&report).context("cannot encode the status")?
        }
        Format::Table => table(&report),
    };
    say(output.trim_end())?;
    Ok(ExitCode::SUCCESS)
}

fn icon(icon: &IconReport) -> String {
    format!("{} {}", icon.color, icon.reason)
}

/// A plain-text table: banners first, then members, columns padded to fit.
pub(crate) fn table(report: &StatusReport) -> String {
    let mut out = String::new();
    if report.companies.is_empty() {
        out.push_str("no companies: declare them with `datacap apply FILE`\n");
    }
    for company in &report.companies {
        let _ = writeln!(
            out,
            "{} ({}, {}, {})",
            company.name,
            company.id,
            company.provider.display_name(),
            company.connection_mode
        );
        for banner in &company.banners {
            let _ = writeln!(out, "  [{}] {}", banner.color, banner.message);
        }
        let header = ["member", "email", "capture", "email icon", "calendar"];
        let rows: Vec<[String; 5]> = company
            .members
            .iter()
            .map(|member| {
                [
                    member.id.clone(),
                    member.email_address.clone(),
                    icon(&member.capture),
                    icon(&member.email),
                    icon(&member.calendar),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let mut line = |cells: [&str; 5]| {
            let mut text = String::from("  ");
            for (cell, width) in cells.iter().zip(widths) {
                let _ = write!(text, "{cell:<width$}  ");
            }
            let _ = writeln!(out, "{}", text.trim_end());
        };
        line(header);
        for row in &rows {
            line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        }
        out.push('\n');
    }
    out
}
