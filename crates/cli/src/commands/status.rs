//! `datacap status`: the Team members page in a terminal, read from the database: each
//! company's banners, then one row per active member with its three icons.
//!
//! `--format json` prints DESIGN.md's shape for tools; the table is for people.
//! `--member ID` is one member's story instead (issue 19): the three icons with each
//! channel's last successful import, the status history and the recent attempts.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datacap_store::{AttemptReport, IconReport, MemberReport, StatusChangeReport, StatusReport};

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
    /// One member's icons, status history and recent attempts.
    #[arg(long, value_name = "ID")]
    member: Option<String>,
}

/// How many history rows and attempts `--member` shows.
const MEMBER_ROWS: u32 = 20;

/// One member's story, as `--member` prints it.
#[derive(serde::Serialize)]
struct MemberStory {
    company_id: String,
    member: MemberReport,
    history: Vec<StatusChangeReport>,
    attempts: Vec<AttemptReport>,
}

/// The configured store, open, and the status of `--company` (every company without it).
async fn status_of(
    args: &Args,
    config: &config::Config,
) -> anyhow::Result<(datacap_store::Store, StatusReport)> {
    let store = open(config).await?;
    let report = store
        .status(args.company.as_deref())
        .await
        .context("cannot read the status")?;
    Ok((store, report))
}

fn member_story(args: &Args, config_path: Option<&Path>, member_id: &str) -> anyhow::Result<()> {
    let config = config::load(config_path, std::env::vars())?;
    let story = block_on(async {
        let (store, report) = status_of(args, &config).await?;
        let found = report.companies.into_iter().find_map(|company| {
            let id = company.id;
            company
                .members
                .into_iter()
                .find(|member| member.id == member_id)
                .map(|member| (id, member))
        });
        let Some((company_id, member)) = found else {
            store.close().await;
            anyhow::bail!("no active member {member_id:?}");
        };
        let history = store
            .member_history(&company_id, member_id, MEMBER_ROWS)
            .await
            .context("cannot read the status history")?;
        let attempts = store
            .member_attempts(&company_id, member_id, MEMBER_ROWS)
            .await
            .context("cannot read the attempts")?;
        store.close().await;
        Ok(MemberStory {
            company_id,
            member,
            history,
            attempts,
        })
    })?;
    let output = match args.format {
        Format::Json => serde_json::to_string_pretty(&story).context("cannot encode the member")?,
        Format::Table => member_table(&story),
    };
    say(output.trim_end())
}

fn time_text(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn member_table(story: &MemberStory) -> String {
    let mut out = String::new();
    let member = &story.member;
    let _ = writeln!(
        out,
        "{} ({}), company {}",
        member.id, member.email_address, story.company_id
    );
    for (name, icon) in [
        ("capture", &member.capture),
        ("email", &member.email),
        ("calendar", &member.calendar),
    ] {
        let success = match (name, icon.last_success) {
            ("capture", _) => String::new(),
            (_, Some(success)) => format!(
                "; last success {} ({} items)",
                time_text(success.at),
                success.items
            ),
            (_, None) => "; no success yet".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {name:<8}  {} since {}{success}",
            self::icon(icon),
            time_text(icon.since)
        );
        let _ = writeln!(out, "            {}", icon.message);
    }
    let _ = writeln!(out, "status history (newest first):");
    for change in &story.history {
        let from = match (change.from_color, change.from_reason) {
            (Some(color), Some(reason)) => format!("{color} {reason}"),
            _ => "(first)".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}  {:<8}  {from} -> {} {}  attempt {}",
            time_text(change.changed_at),
            change.icon.as_str(),
            change.to_color,
            change.to_reason,
            change.attempt_id.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "recent attempts (newest first):");
    for attempt in &story.attempts {
        let _ = writeln!(
            out,
            "  {}  {:<8}  {}  http {}  {}  items {}  request {}  attempt {}",
            time_text(attempt.finished_at),
            attempt.channel.as_str(),
            attempt.outcome,
            attempt
                .http_status
                .map_or_else(|| "-".to_owned(), |status| status.to_string()),
            attempt.provider_error_code.as_deref().unwrap_or("-"),
            attempt.items_imported,
            attempt.provider_request_id.as_deref().unwrap_or("-"),
            attempt.attempt_id
        );
    }
    out
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    if let Some(member) = args.member.clone() {
        member_story(&args, config_path, &member)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = config::load(config_path, std::env::vars())?;
    let report = block_on(async {
        let (store, report) = status_of(&args, &config).await?;
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
