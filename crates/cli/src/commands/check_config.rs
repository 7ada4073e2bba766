//! `datacap check-config FILE [--tenants FILE]`: validates a config file (with the
//! `DATACAP_*__*` environment on top, as the daemon reads it) and optionally a tenants
//! file, offline: no database, no network, no secret read. Every problem is one line
//! `FILE:LINE: key: problem` (or `env NAME: key: problem`), and any problem exits 1.
//!
//! It runs the daemon's own validation, [`config::parse`] and
//! [`datacap_store::parse_tenants`], never a copy: both list every problem, not only the
//! first, and the daemon refuses to start on any of them. An unknown section (a misspelt
//! `[wokrer]`) or key (`poll_intervall`) is a problem, named with its line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::migrate::say;
use crate::config;

/// Arguments of `datacap check-config`.
#[derive(clap::Args)]
pub struct Args {
    /// The config file to check (TOML, the format of config/datacap.toml).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// A tenants file to check as well (the format of config/tenants.example.toml).
    #[arg(long, value_name = "FILE")]
    tenants: Option<PathBuf>,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read config file {}", args.file.display()))?;
    let mut problems = config_problems(&text, &args.file.display().to_string(), env_vars());
    let mut warnings = Vec::new();
    if let Some(path) = &args.tenants {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read tenants file {}", path.display()))?;
        match datacap_store::parse_tenants(&text) {
            Err(errors) => problems.extend(
                errors
                    .problems
                    .iter()
                    .map(|problem| format!("{}:{problem}", path.display())),
            ),
            Ok(tenants) => {
                if let Ok(config) = config::parse(
                    &text_of(&args.file)?,
                    &args.file.display().to_string(),
                    env_vars(),
                ) {
                    warnings.extend(connect_flow_problems(
                        &config,
                        &tenants,
                        &path.display().to_string(),
                    ));
                }
            }
        }
    }
    for problem in &problems {
        say(problem)?;
    }
    // Not problems (a config may serve no connect flow on purpose), but never silent.
    for warning in &warnings {
        say(&format!("warning: {warning}"))?;
    }
    if problems.is_empty() {
        let checked = match &args.tenants {
            Some(path) => format!("{} and {}", args.file.display(), path.display()),
            None => args.file.display().to_string(),
        };
        say(&format!("{checked}: ok"))?;
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

fn text_of(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))
}

/// A user-by-user company whose members could never connect: the flow is never silently
/// off, so each key it lacks is named (offline: only whether a key is configured).
pub(crate) fn connect_flow_problems(
    config: &config::Config,
    tenants: &datacap_store::Tenants,
    source: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for company in &tenants.companies {
        if company.settings.connection_mode != datacap_core::ConnectionMode::UserByUser {
            continue;
        }
        let mut missing = Vec::new();
        if config.web.signing_key.is_none() {
            missing.push("web.signing_key_file (or _env)");
        }
        if config.encryption.is_none() {
            missing.push("encryption.key_file (or key_env)");
        }
        let own_client = company.credentials.contains_key("client_id");
        let configured = match company.settings.provider {
            datacap_core::Provider::GoogleWorkspace => config.google.oauth.is_some(),
            datacap_core::Provider::Microsoft365 => config.microsoft.oauth.is_some(),
            datacap_core::Provider::None => true,
        };
        if !own_client && !configured {
            missing.push(
                if company.settings.provider == datacap_core::Provider::Microsoft365 {
                    "microsoft.oauth_client_id (or the company's client_id)"
                } else {
                    "google.oauth_client_id (or the company's client_id)"
                },
            );
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{source}: companies[{}]: its members connect one by one, but the connect flow lacks {}",
                company.id,
                missing.join(", ")
            ));
        }
    }
    problems
}

fn env_vars() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// Every problem of config `text` from `source` with `env` on top, one line each.
pub(crate) fn config_problems(text: &str, source: &str, env: Vec<(String, String)>) -> Vec<String> {
    match config::parse(text, source, env) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.problems.iter().map(ToString::to_string).collect(),
    }
}

/// [`config_problems`] of `text` with literal variables, for the tests.
#[cfg(test)]
fn problems_of(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    let env = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    config_problems(text, "datacap.toml", env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, env: &[(&str, &str)], expected: &[&str]) {
        assert_eq!(problems_of(text, env), expected);
    }

    #[test]
    fn the_shipped_config_has_no_problem() {
        check(include_str!("../../../../config/datacap.toml"), &[], &[]);
    }

    #[test]
    fn every_problem_with_its_line() {
        check(
            "[database]\nmax_connections = 0\nulr = \"x\"\n\n[worker]\nconcurrency = 0\njitter = 2.0\n\n[databse]\nurl = \"x\"\n",
            &[],
            &[
                "datacap.toml:2: database.max_connections: must be 1 to 1000, got 0",
                "datacap.toml:3: database.ulr: unknown field `ulr`, expected one of `url`, `max_connections`, `migrate_on_start`",
                "datacap.toml:6: worker.concurrency: must be 1 to 10000, got 0",
                "datacap.toml:7: worker.jitter: must be 0 to 1, got 2",
                "datacap.toml:9: databse: unknown section, ignored by datacap (its keys would fall back to defaults); expected one of database, encryption, retention, worker, google, microsoft, log, http, web, smtp, webhooks",
            ],
        );
    }

    #[test]
    fn a_missing_key_points_at_its_section_and_env_problems_name_the_variable() {
        check(
            "# comment\n[encryption]\nkey_id = \"k\"\n",
            &[("DATACAP_LOG__FORMAT", "xml")],
            &[
                "datacap.toml:2: encryption.key_file: [encryption] needs key_file or key_env",
                "env DATACAP_LOG__FORMAT: log.format: must be human or json, got \"xml\"",
            ],
        );
    }

    #[test]
    fn a_syntax_error_is_one_problem() {
        check(
            "[database\n",
            &[],
            &["datacap.toml:1: file: unclosed table, expected `]`"],
        );
    }
}
