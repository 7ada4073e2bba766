//! `datacap remind --company ID`: the members who still have to connect
//! (`member_not_connected`) or connect again (`member_connection_invalid`), each with a
//! personal connect link (signed with `[web]`'s signing key, valid for `invite_ttl`), as a
//! table, CSV or JSON; `--send` mails each of them their link through `[smtp]`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datacap_core::{ConnectionMode, Reason};
use datacap_web::InviteKey;
use datacap_web::remind::{reason_to_remind, reminder_mail};
use serde::Serialize;

use crate::commands::migrate::{block_on, open, say};
use crate::config::{self, read_secret};
use crate::wiring::smtp::Relay;

/// How `datacap remind` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Arguments of `datacap remind`.
#[derive(clap::Args)]
pub struct Args {
    /// The company whose members to remind.
    #[arg(long, value_name = "ID")]
    company: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also mail each member their link through the [smtp] relay.
    #[arg(long)]
    send: bool,
}

/// One member to remind.
#[derive(Serialize)]
struct Reminder {
    member_id: String,
    email_address: String,
    reason: Reason,
    link: String,
}

/// A CSV field, quoted when it needs to be.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// Runs the command.
pub fn run(args: Args, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, std::env::vars())?;
    let signing = config.web.signing_key.as_ref().context(
        "[web] signing_key_file or signing_key_env is not set: connect links are signed with it",
    )?;
    let invites = InviteKey::new(datacap_web::auth::signing_key(&read_secret(
        signing,
        "web signing key",
    )?));
    let relay = if args.send {
        Some(Relay::new(&config.smtp)?)
    } else {
        None
    };
    let report = block_on(async {
        let store = open(&config).await?;
        let report = store
            .status(Some(&args.company))
            .await
            .with_context(|| format!("cannot read the status of company {:?}", args.company))?;
        store.close().await;
        Ok(report)
    })?;
    let company = report
        .companies
        .into_iter()
        .next()
        .with_context(|| format!("unknown company {:?}", args.company))?;
    if company.connection_mode != ConnectionMode::UserByUser {
        anyhow::bail!(
            "company {:?} connects company-wide: its members have nothing to connect",
            company.id
        );
    }
    let expires_at = time::OffsetDateTime::now_utc() + config.web.invite_ttl;
    let reminders: Vec<Reminder> = company
        .members
        .iter()
        .filter_map(|member| {
            reason_to_remind(member).map(|reason| Reminder {
                member_id: member.id.clone(),
                email_address: member.email_address.clone(),
                reason,
                link: invites.link(
                    &config.web.public_url,
                    company.provider,
                    &company.id,
                    &member.id,
                    expires_at,
                ),
            })
        })
        .collect();
    let output = match args.format {
        Format::Json => serde_json::to_string_pretty(&reminders).context("cannot encode")?,
        Format::Csv => {
            let mut text = String::from("member_id,email_address,reason,link\n");
            for r in &reminders {
                let _ = writeln!(
                    text,
                    "{},{},{},{}",
                    csv(&r.member_id),
                    csv(&r.email_address),
                    r.reason,
                    csv(&r.link)
                );
            }
            text
        }
        Format::Table => {
            let mut text = format!(
                "{} member(s) of {} to remind (links valid until {}):\n",
                reminders.len(),
                company.id,
                expires_at.date()
            );
            for r in &reminders {
                let _ = writeln!(
                    text,
                    "  {}  {}  {}\n    {}",
                    r.member_id, r.email_address, r.reason, r.link
                );
            }
            text
        }
    };
    say(output.trim_end())?;
    if let Some(relay) = relay {
        let sent = super::run::runtime()?.block_on(async {
            let mut sent = 0;
            for r in &reminders {
                let mail = reminder_mail(
                    &company.name,
                    company.provider,
                    r.reason,
                    &r.email_address,
                    &r.link,
                    expires_at,
                );
                relay.send(&mail).await?;
                sent += 1;
            }
            Ok::<_, anyhow::Error>(sent)
        })?;
        say(&format!("sent {sent} reminder(s) through the smtp relay"))?;
    }
    Ok(ExitCode::SUCCESS)
}
