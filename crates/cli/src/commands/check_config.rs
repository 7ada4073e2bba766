//! `datacap check-config FILE [--tenants FILE]`: validates a config file (with the
//! `DATACAP_*__*` environment on top, as the daemon reads it) and optionally a tenants
//! file, offline: no database, no network, no secret read. Every problem is one line
//! `FILE:LINE: key: problem` (or `env NAME: key: problem`), and any problem exits 1.
//!
//! It runs the daemon's own validation, [`config::parse`] and
//! [`datacap_store::parse_tenants`], never a copy. `config::parse` stops at the first bad
//! key, so to list them all this module takes each reported key out of the file (or the
//! environment) and validates again, until the rest passes. A section the daemon ignores
//! (a misspelt `[databse]`) is a problem here too, because its keys silently fall back to
//! defaults. `parse_tenants` also stops at its first problem, which is reported alone.

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
    if let Some(path) = &args.tenants {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read tenants file {}", path.display()))?;
        match datacap_store::parse_tenants(&text) {
            Ok(_) => {}
            Err(error) => problems.push(format!("{}:{error}", path.display())),
        }
    }
    for problem in &problems {
        say(problem)?;
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

fn env_vars() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// Every problem of config `text` from `source` with `env` on top, one line each.
pub(crate) fn config_problems(text: &str, source: &str, env: Vec<(String, String)>) -> Vec<String> {
    let mut table: toml::Table = match text.parse() {
        Ok(table) => table,
        // A syntax error: config::parse says where; nothing after it can be read.
        Err(_) => {
            return match config::parse(text, source, Vec::new()) {
                Err(error) => vec![format!("{error:#}")],
                Ok(_) => Vec::new(),
            };
        }
    };
    let mut problems = unknown_sections(text, source, &table);
    let mut env = env;
    // Each round removes the key (or section, or variable) it reports, so this ends.
    loop {
        let current = toml::to_string(&table).unwrap_or_default();
        let Err(error) = config::parse(&current, source, env.clone()) else {
            break;
        };
        let message = format!("{error:#}");
        let Some(problem) = Problem::parse(&message) else {
            problems.push(message);
            break;
        };
        match problem.env_var {
            Some(name) => {
                problems.push(format!("env {name}: {}: {}", problem.key, problem.detail));
                env.retain(|(var, _)| *var != name);
            }
            None => {
                let line = line_of(text, &problem.key);
                problems.push(format!(
                    "{source}:{line}: {}: {}",
                    problem.key, problem.detail
                ));
                if !remove(&mut table, &problem.key) {
                    break;
                }
            }
        }
    }
    problems
}

/// One `config {key} ({origin}): {detail}` error of [`config::parse`].
#[derive(Debug, PartialEq)]
struct Problem {
    key: String,
    env_var: Option<String>,
    detail: String,
}

impl Problem {
    fn parse(message: &str) -> Option<Problem> {
        let rest = message.strip_prefix("config ")?;
        let (key, rest) = rest.split_once(" (")?;
        let (origin, detail) = rest.split_once("): ")?;
        Some(Problem {
            key: key.to_owned(),
            env_var: origin.strip_prefix("env ").map(str::to_owned),
            detail: detail.to_owned(),
        })
    }
}

/// Sections of the file that the daemon ignores: config::parse accepts an unknown
/// section, but rejects an unknown key in every section it knows.
fn unknown_sections(text: &str, source: &str, table: &toml::Table) -> Vec<String> {
    const PROBE: &str = "datacap_check_config_probe";
    table
        .keys()
        .filter(|section| {
            let probe = format!("[{section}]\n{PROBE} = 0\n");
            config::parse(&probe, source, Vec::new()).is_ok()
        })
        .map(|section| {
            format!(
                "{source}:{}: {section}: unknown section, ignored by datacap (its keys would fall back to defaults)",
                line_of(text, section)
            )
        })
        .collect()
}

/// Removes `section.key` (or the whole section when the key is not in the file, as for
/// "[encryption] needs key_file or key_env"); false when there was nothing to remove.
fn remove(table: &mut toml::Table, key: &str) -> bool {
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    if let Some(toml::Value::Table(inner)) = table.get_mut(section)
        && inner.remove(field).is_some()
    {
        return true;
    }
    table.remove(section).is_some()
}

/// The 1-based line of `section.key` in `text`: the key's line, else its section's, else 1.
fn line_of(text: &str, key: &str) -> usize {
    let Ok(document) = toml::de::DeTable::parse(text) else {
        return 1;
    };
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let root = document.get_ref();
    let Some((section_key, section_value)) = root.get_key_value(section) else {
        return 1;
    };
    if let toml::de::DeValue::Table(inner) = section_value.get_ref()
        && let Some((field_key, _)) = inner.get_key_value(field)
    {
        return line(field_key.span().start);
    }
    line(section_key.span().start)
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
    fn config_parse_errors_keep_the_shape_this_module_reads() {
        let error =
            config::parse("[database]\nmax_connections = 0\n", "x.toml", Vec::new()).unwrap_err();
        assert_eq!(
            Problem::parse(&format!("{error:#}")),
            Some(Problem {
                key: "database.max_connections".to_owned(),
                env_var: None,
                detail: "must be 1 to 1000, got 0".to_owned(),
            })
        );
    }

    #[test]
    fn every_problem_with_its_line() {
        check(
            "[database]\nmax_connections = 0\nulr = \"x\"\n\n[worker]\nconcurrency = 0\njitter = 2.0\n\n[databse]\nurl = \"x\"\n",
            &[],
            &[
                "datacap.toml:9: databse: unknown section, ignored by datacap (its keys would fall back to defaults)",
                "datacap.toml:3: database.ulr: unknown field `ulr`, expected one of `url`, `max_connections`, `migrate_on_start`",
                "datacap.toml:2: database.max_connections: must be 1 to 1000, got 0",
                "datacap.toml:7: worker.jitter: must be 0 to 1, got 2",
                "datacap.toml:6: worker.concurrency: must be 1 to 10000, got 0",
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
            &["datacap.toml:1: unclosed table, expected `]`"],
        );
    }
}
