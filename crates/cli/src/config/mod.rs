//! The daemon's configuration: one TOML file (`config/datacap.toml`, every key documented
//! there with its default) with every key overridable by an environment variable
//! `DATACAP_<SECTION>__<KEY>` (for example `DATACAP_DATABASE__URL`).
//!
//! Two phases, as in ripgrep's low/high args: the file and the environment are merged
//! into raw values first, then validated into a [`Config`]. Loading never writes
//! anything, and every problem (an unknown section or key, a bad value) is reported with
//! its key and its line, or the variable it came from, not only the first.
//! This is the only module that reads the config file and the environment; secrets are
//! read only when a command asks for them ([`load_key`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use datacap_store::{BackendKind, EncryptionKey};
use secrecy::SecretString;
use serde::Deserialize;

pub(crate) mod smtp;
pub(crate) mod web;

/// Where `--config` points when it is not given (used only if the file exists).
pub const DEFAULT_PATH: &str = "config/datacap.toml";
const ENV_PREFIX: &str = "DATACAP_";

/// The validated configuration of the sections this binary knows.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub database: DatabaseConfig,
    pub encryption: Option<EncryptionConfig>,
    pub retention: RetentionConfig,
    pub worker: WorkerSection,
    pub google: GoogleSection,
    pub microsoft: MicrosoftSection,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub web: web::WebSection,
    pub smtp: smtp::SmtpSection,
    pub webhooks: WebhooksSection,
}

/// `[webhooks]`: the delivery task's timeouts and retries (docs/webhooks.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhooksSection {
    pub poll_interval: std::time::Duration,
    pub lease: std::time::Duration,
    pub batch: u32,
    pub connect_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub backoff_base: std::time::Duration,
    pub backoff_cap: std::time::Duration,
    pub give_up_after: std::time::Duration,
}

/// `[worker]`: the poller's limits and schedule (raw values; `commands::run` builds the
/// worker's own config from them).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSection {
    pub owner: Option<String>,
    pub concurrency: usize,
    pub claim_batch: u32,
    pub email_interval: std::time::Duration,
    pub calendar_interval: std::time::Duration,
    pub jitter: f64,
    pub backoff_base: std::time::Duration,
    pub backoff_cap: std::time::Duration,
    pub recheck_interval: std::time::Duration,
    pub max_retry_after: std::time::Duration,
    pub lease: std::time::Duration,
    pub heartbeat: std::time::Duration,
    pub grace: std::time::Duration,
    pub idle_wait: std::time::Duration,
    pub once_pause_wait: std::time::Duration,
    pub invalid_grant_recheck: std::time::Duration,
    pub stall_pass_interval: std::time::Duration,
    pub tenant_rate_per_second: u32,
    pub tenant_burst: u32,
    pub red_after_consecutive_failures: u32,
    pub stall_after: std::time::Duration,
}

/// `[google]`: where Google lives and our OAuth client for members who connect one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoogleSection {
    pub token_url: String,
    /// The connect flow's consent screen.
    pub authorize_url: String,
    pub gmail_base: String,
    pub calendar_base: String,
    pub directory_base: String,
    pub oauth: Option<OAuthClientRef>,
    pub mail_window: std::time::Duration,
    pub calendar_past: std::time::Duration,
    pub calendar_future: std::time::Duration,
    pub page_size: u32,
    pub max_pages: u32,
}

/// `[microsoft]`: where Entra ID and Graph live and our app for user-by-user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicrosoftSection {
    pub login_base: String,
    pub graph_base: String,
    pub oauth: Option<OAuthClientRef>,
    pub oauth_tenant: String,
    pub calendar_past: std::time::Duration,
    pub calendar_future: std::time::Duration,
    pub max_pages_per_attempt: u32,
    pub max_page_size: u32,
}

/// An OAuth client: its id and where its secret is (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClientRef {
    pub client_id: String,
    pub secret: KeySource,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub json: bool,
    /// A `tracing` filter: `info`, `datacap_worker=debug,info`, …
    pub level: String,
}

/// `[http]`: where `datacap run` serves `/healthz`, `/readyz` and `/metrics`, and the
/// listener's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics` on a listener of their own (then `/metrics` is
    /// not served on `listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub limits: datacap_web::Limits,
}

/// `[database]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://FILE`, a plain file path, or `postgres://…`.
    pub url: String,
    pub backend: BackendKind,
    pub max_connections: u32,
    /// Apply pending migrations before a command uses the database.
    pub migrate_on_start: bool,
}

/// `[encryption]`: where the key that seals stored secrets comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    pub key_id: String,
    pub source: KeySource,
}

/// The key's location; the key itself is never in the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Env(String),
}

/// `[retention]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Attempts older than this are pruned (the latest per member and channel is kept).
    pub attempts_max_age: time::Duration,
}

#[derive(Deserialize, serde::Serialize, Default)]
struct RawConfig {
    #[serde(default)]
    database: RawDatabase,
    #[serde(default)]
    encryption: Option<RawEncryption>,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    google: RawGoogle,
    #[serde(default)]
    microsoft: RawMicrosoft,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    web: web::RawWeb,
    #[serde(default)]
    smtp: smtp::RawSmtp,
    #[serde(default)]
    webhooks: RawWebhooks,
}

/// Declares a raw config section: each field's type and default, `deny_unknown_fields`,
/// and a `Default` that matches serde's.
macro_rules! raw_section {
    ($name:ident { $($field:ident : $ty:ty = $default:expr,)* }) => {
        #[derive(Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields, default)]
        struct $name { $($field: $ty,)* }
        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }
    };
}

raw_section!(RawWorker {
    owner: Option<String> = None,
    concurrency: i64 = 16,
    claim_batch: i64 = 64,
    email_interval: String = "5m".to_owned(),
    calendar_interval: String = "15m".to_owned(),
    jitter: f64 = 0.1,
    backoff_base: String = "30s".to_owned(),
    backoff_cap: String = "30m".to_owned(),
    recheck_interval: String = "30m".to_owned(),
    max_retry_after: String = "15m".to_owned(),
    lease: String = "2m".to_owned(),
    heartbeat: String = "30s".to_owned(),
    grace: String = "20s".to_owned(),
    idle_wait: String = "1s".to_owned(),
    once_pause_wait: String = "2m".to_owned(),
    invalid_grant_recheck: String = "24h".to_owned(),
    stall_pass_interval: String = "1m".to_owned(),
    tenant_rate_per_second: i64 = 50,
    tenant_burst: i64 = 100,
    red_after_consecutive_failures: i64 = 3,
    stall_after: String = "1h".to_owned(),
});

raw_section!(RawWebhooks {
    poll_interval: String = "1s".to_owned(),
    lease: String = "60s".to_owned(),
    batch: i64 = 32,
    connect_timeout: String = "5s".to_owned(),
    request_timeout: String = "10s".to_owned(),
    backoff_base: String = "5s".to_owned(),
    backoff_cap: String = "1h".to_owned(),
    give_up_after: String = "24h".to_owned(),
});

/// Checks `[webhooks]`; the delivery task checks how the values fit together.
fn validate_webhooks(raw: &RawWebhooks) -> Result<WebhooksSection, (&'static str, String)> {
    Ok(WebhooksSection {
        poll_interval: std_duration("webhooks.poll_interval", &raw.poll_interval)?,
        lease: std_duration("webhooks.lease", &raw.lease)?,
        batch: bounded("webhooks.batch", raw.batch, 1, 1_000)?,
        connect_timeout: std_duration("webhooks.connect_timeout", &raw.connect_timeout)?,
        request_timeout: std_duration("webhooks.request_timeout", &raw.request_timeout)?,
        backoff_base: std_duration("webhooks.backoff_base", &raw.backoff_base)?,
        backoff_cap: std_duration("webhooks.backoff_cap", &raw.backoff_cap)?,
        give_up_after: std_duration("webhooks.give_up_after", &raw.give_up_after)?,
    })
}

raw_section!(RawGoogle {
    token_url: String = "https://oauth2.googleapis.com/token".to_owned(),
    authorize_url: String = "https://accounts.google.com/o/oauth2/v2/auth".to_owned(),
    gmail_base: String = "https://gmail.googleapis.com/gmail/v1".to_owned(),
    calendar_base: String = "https://www.googleapis.com/calendar/v3".to_owned(),
    directory_base: String = "https://admin.googleapis.com/admin/directory/v1".to_owned(),
    oauth_client_id: Option<String> = None,
    oauth_client_secret_env: Option<String> = None,
    oauth_client_secret_file: Option<PathBuf> = None,
    mail_window: String = "30d".to_owned(),
    calendar_past: String = "30d".to_owned(),
    calendar_future: String = "90d".to_owned(),
    page_size: i64 = 100,
    max_pages: i64 = 50,
});

raw_section!(RawMicrosoft {
    login_base: String = "https://login.microsoftonline.com".to_owned(),
    graph_base: String = "https://graph.microsoft.com/v1.0".to_owned(),
    oauth_client_id: Option<String> = None,
    oauth_client_secret_env: Option<String> = None,
    oauth_client_secret_file: Option<PathBuf> = None,
    oauth_tenant: String = "organizations".to_owned(),
    calendar_past: String = "30d".to_owned(),
    calendar_future: String = "90d".to_owned(),
    max_pages_per_attempt: i64 = 200,
    max_page_size: i64 = 100,
});

raw_section!(RawLog {
    format: String = "human".to_owned(),
    level: String = "info".to_owned(),
});

raw_section!(RawHttp {
    listen: String = "127.0.0.1:9464".to_owned(),
    metrics_listen: Option<String> = None,
    header_read_timeout: String = "10s".to_owned(),
    request_timeout: String = "30s".to_owned(),
    max_connections: i64 = 512,
    max_in_flight: i64 = 64,
    max_body_bytes: i64 = 16384,
    sign_in_attempts_per_minute: i64 = 30,
});

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default = "default_url")]
    url: String,
    #[serde(default = "default_max_connections")]
    max_connections: i64,
    #[serde(default = "default_true")]
    migrate_on_start: bool,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: default_url(),
            max_connections: default_max_connections(),
            migrate_on_start: true,
        }
    }
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    key_env: Option<String>,
    #[serde(default = "default_key_id")]
    key_id: String,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_max_age")]
    attempts_max_age: String,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            attempts_max_age: default_max_age(),
        }
    }
}

fn default_url() -> String {
    "sqlite://datacap.sqlite".to_owned()
}
fn default_max_connections() -> i64 {
    8
}
fn default_true() -> bool {
    true
}
fn default_key_id() -> String {
    "primary".to_owned()
}
fn default_max_age() -> String {
    "30d".to_owned()
}

/// Loads the configuration: `explicit` (which must exist) or [`DEFAULT_PATH`] if present,
/// else the built-in defaults; then the `DATACAP_*__*` variables of `env` on top. Any
/// problem is an error listing every problem, one per line.
pub fn load(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let (source, text) = read_text(explicit)?;
    Ok(parse(&text, &source, env)?)
}

/// Like [`load`], and also every key's effective value (`section.key` → its value as
/// TOML, defaults included): what a SIGHUP reload compares to name the keys it changes.
pub fn load_with_values(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<(Config, BTreeMap<String, String>)> {
    let (source, text) = read_text(explicit)?;
    let env: Vec<(String, String)> = env.into_iter().collect();
    let config = parse(&text, &source, env.clone())?;
    Ok((config, effective_values(&text, env)))
}

/// The config file's name (for messages) and text: `explicit` (which must exist) or
/// [`DEFAULT_PATH`] if present, else empty (the built-in defaults).
fn read_text(explicit: Option<&Path>) -> anyhow::Result<(String, String)> {
    match explicit {
        Some(path) => Ok((
            path.display().to_string(),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
        )),
        None => match std::fs::read_to_string(DEFAULT_PATH) {
            Ok(text) => Ok((DEFAULT_PATH.to_owned(), text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(("built-in defaults".to_owned(), String::new()))
            }
            Err(error) => {
                Err(error).with_context(|| format!("cannot read config file {DEFAULT_PATH}"))
            }
        },
    }
}

/// The sections this binary reads; any other top-level key is a problem (a misspelt
/// `[wokrer]` would otherwise silently leave its keys at their defaults).
pub const SECTIONS: &[&str] = &[
    "database",
    "encryption",
    "retention",
    "worker",
    "google",
    "microsoft",
    "log",
    "http",
    "web",
    "smtp",
    "webhooks",
];

/// One problem of a configuration: where (`FILE:LINE` or `env NAME`), which key, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub at: String,
    pub key: String,
    pub detail: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.key, self.detail)
    }
}

/// Every problem of a configuration (at least one), file problems in line order, then
/// the environment's; displays as one problem per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<ConfigProblem>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Every key's effective value of a configuration that [`parse`] accepted.
fn effective_values(text: &str, env: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut table: toml::Table = text.parse().unwrap_or_default();
    merge_env(&mut table, env);
    let raw: RawConfig = toml::Value::Table(table).try_into().unwrap_or_default();
    let mut values = BTreeMap::new();
    if let Ok(toml::Value::Table(sections)) = toml::Value::try_from(&raw) {
        for (section, keys) in sections {
            if let toml::Value::Table(keys) = keys {
                for (key, value) in keys {
                    values.insert(format!("{section}.{key}"), value.to_string());
                }
            }
        }
    }
    values
}

/// Puts the `DATACAP_<SECTION>__<KEY>` variables of known sections into `table`.
fn merge_env(table: &mut toml::Table, env: Vec<(String, String)>) {
    for (name, value) in env {
        let Some((section, key)) = name
            .strip_prefix(ENV_PREFIX)
            .and_then(|rest| rest.split_once("__"))
        else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        if let toml::Value::Table(section_table) = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            section_table.insert(key, env_value(&value));
        }
    }
}

/// Parses config `text` (from `source`, for messages) with `env` overrides on top, and
/// reports every problem, not only the first: an unknown section or key, a value of the
/// wrong type, a value out of range. Each reported key is set aside (back to its default)
/// and the rest validated again, until the rest passes.
pub fn parse(
    text: &str,
    source: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let mut table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let line = error
            .span()
            .map_or(1, |span| text[..span.start].matches('\n').count() + 1);
        ConfigErrors {
            problems: vec![ConfigProblem {
                at: format!("{source}:{line}"),
                key: "file".to_owned(),
                detail: error.message().lines().next().unwrap_or("").to_owned(),
            }],
        }
    })?;
    let mut problems = Vec::new();
    // Sections and their keys as written in the file, with their lines.
    let lines = KeyLines::of(text);
    let file_problem = |key: &str, detail: String| ConfigProblem {
        at: format!("{source}:{}", lines.line(key)),
        key: key.to_owned(),
        detail,
    };
    for section in table.keys() {
        if !SECTIONS.contains(&section.as_str()) {
            problems.push(file_problem(
                section,
                format!(
                    "unknown section, ignored by datacap (its keys would fall back to defaults); expected one of {}",
                    SECTIONS.join(", ")
                ),
            ));
        }
    }
    table.retain(|section, _| SECTIONS.contains(&section));
    let mut env_problems = Vec::new();
    let mut from_env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if !SECTIONS.contains(&section.as_str()) {
            // DATACAP_TEST_POSTGRES_URL-style variables are not config overrides; a
            // double underscore after an unknown section is a misspelt one.
            env_problems.push(ConfigProblem {
                at: format!("env {name}"),
                key: section,
                detail: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
            });
            continue;
        }
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            env_problems.push(ConfigProblem {
                at: format!("env {name}"),
                key: section.clone(),
                detail: format!("[{section}] in {source} is not a table"),
            });
            continue;
        };
        section_table.insert(key.clone(), env_value(&value));
        from_env.insert(format!("{section}.{key}"), name);
    }
    // Each round takes the reported key (or its section) out, so this ends.
    loop {
        let (key, detail) = match read(table.clone()) {
            Ok(config) if problems.is_empty() && env_problems.is_empty() => return Ok(config),
            Ok(_) => break,
            Err(problem) => problem,
        };
        match from_env.get(&key) {
            Some(name) => env_problems.push(ConfigProblem {
                at: format!("env {name}"),
                key: key.clone(),
                detail,
            }),
            None => problems.push(file_problem(&key, detail)),
        }
        if !remove_key(&mut table, &key) {
            break;
        }
    }
    problems.sort_by_key(|problem| lines.line(&problem.key));
    problems.extend(env_problems);
    Err(ConfigErrors { problems })
}

/// Deserializes and validates the merged table; the first problem as (key, detail).
fn read(table: toml::Table) -> Result<Config, (String, String)> {
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|error| {
            let key = error.path().to_string();
            let detail = error
                .into_inner()
                .message()
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            (key, detail)
        })?;
    validate(raw).map_err(|(key, detail)| (key.to_owned(), detail))
}

/// Removes `section.key` (or the whole section when the key is not in it, as for
/// "[encryption] needs key_file or key_env"); false when there was nothing to remove.
fn remove_key(table: &mut toml::Table, key: &str) -> bool {
    let (section, field) = key.split_once('.').unwrap_or((key, ""));
    if let Some(toml::Value::Table(inner)) = table.get_mut(section)
        && inner.remove(field).is_some()
    {
        return true;
    }
    table.remove(section).is_some()
}

/// The lines of a config file's sections and keys.
struct KeyLines<'a> {
    text: &'a str,
    document: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> KeyLines<'a> {
    fn of(text: &'a str) -> KeyLines<'a> {
        KeyLines {
            text,
            document: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line of `section.key`: the key's line, else its section's, else 1.
    fn line(&self, key: &str) -> usize {
        let Some(document) = &self.document else {
            return 1;
        };
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let line = |offset: usize| {
            self.text[..offset.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        };
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
}

/// Env values are TOML when they parse as a plain TOML value (`5`, `true`), else text.
fn env_value(text: &str) -> toml::Value {
    match format!("value = {text}").parse::<toml::Table>() {
        Ok(mut table) => match table.remove("value") {
            Some(
                value @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_)),
            ) => value,
            _ => toml::Value::String(text.to_owned()),
        },
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

fn validate(raw: RawConfig) -> Result<Config, (&'static str, String)> {
    let backend = BackendKind::of_url(&raw.database.url)
        .map_err(|error| ("database.url", error.to_string()))?;
    let max_connections = u32::try_from(raw.database.max_connections)
        .ok()
        .filter(|count| (1..=1000).contains(count))
        .ok_or_else(|| {
            (
                "database.max_connections",
                format!("must be 1 to 1000, got {}", raw.database.max_connections),
            )
        })?;
    let encryption = match raw.encryption {
        None => None,
        Some(encryption) => {
            if encryption.key_id.trim().is_empty() {
                return Err(("encryption.key_id", "must not be empty".to_owned()));
            }
            let source = match (encryption.key_file, encryption.key_env) {
                (Some(path), None) => KeySource::File(path),
                (None, Some(name)) if !name.trim().is_empty() => KeySource::Env(name),
                (None, Some(_)) => {
                    return Err(("encryption.key_env", "must not be empty".to_owned()));
                }
                (Some(_), Some(_)) => {
                    return Err((
                        "encryption.key_file",
                        "give key_file or key_env, not both".to_owned(),
                    ));
                }
                (None, None) => {
                    return Err((
                        "encryption.key_file",
                        "[encryption] needs key_file or key_env".to_owned(),
                    ));
                }
            };
            Some(EncryptionConfig {
                key_id: encryption.key_id,
                source,
            })
        }
    };
    let attempts_max_age = parse_duration(&raw.retention.attempts_max_age)
        .map_err(|detail| ("retention.attempts_max_age", detail))?;
    let worker = validate_worker(&raw.worker)?;
    let google = validate_google(raw.google)?;
    let microsoft = validate_microsoft(raw.microsoft)?;
    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        return Err((
            "log.level",
            format!("{:?} is not a tracing filter: {error}", raw.log.level),
        ));
    }
    let log = match raw.log.format.as_str() {
        "human" | "json" => LogConfig {
            json: raw.log.format == "json",
            level: raw.log.level,
        },
        other => {
            return Err((
                "log.format",
                format!("must be human or json, got {other:?}"),
            ));
        }
    };
    let http = http_section(raw.http)?;
    let web = web::validate(raw.web)?;
    let smtp = smtp::validate(raw.smtp)?;
    let webhooks = validate_webhooks(&raw.webhooks)?;
    Ok(Config {
        webhooks,
        web,
        smtp,
        worker,
        google,
        microsoft,
        log,
        http,
        database: DatabaseConfig {
            url: raw.database.url,
            backend,
            max_connections,
            migrate_on_start: raw.database.migrate_on_start,
        },
        encryption,
        retention: RetentionConfig { attempts_max_age },
    })
}

fn std_duration(
    key: &'static str,
    text: &str,
) -> Result<std::time::Duration, (&'static str, String)> {
    let duration = parse_duration(text).map_err(|detail| (key, detail))?;
    std::time::Duration::try_from(duration).map_err(|_| (key, format!("{text:?} is negative")))
}

fn bounded<T: TryFrom<i64>>(
    key: &'static str,
    value: i64,
    min: i64,
    max: i64,
) -> Result<T, (&'static str, String)> {
    if !(min..=max).contains(&value) {
        return Err((key, format!("must be {min} to {max}, got {value}")));
    }
    T::try_from(value).map_err(|_| (key, format!("must be {min} to {max}, got {value}")))
}

fn validate_worker(raw: &RawWorker) -> Result<WorkerSection, (&'static str, String)> {
    if !(0.0..=1.0).contains(&raw.jitter) {
        return Err((
            "worker.jitter",
            format!("must be 0 to 1, got {}", raw.jitter),
        ));
    }
    let section = WorkerSection {
        owner: raw.owner.clone().filter(|owner| !owner.trim().is_empty()),
        concurrency: bounded("worker.concurrency", raw.concurrency, 1, 10_000)?,
        claim_batch: bounded("worker.claim_batch", raw.claim_batch, 1, 10_000)?,
        email_interval: std_duration("worker.email_interval", &raw.email_interval)?,
        calendar_interval: std_duration("worker.calendar_interval", &raw.calendar_interval)?,
        jitter: raw.jitter,
        backoff_base: std_duration("worker.backoff_base", &raw.backoff_base)?,
        backoff_cap: std_duration("worker.backoff_cap", &raw.backoff_cap)?,
        recheck_interval: std_duration("worker.recheck_interval", &raw.recheck_interval)?,
        max_retry_after: std_duration("worker.max_retry_after", &raw.max_retry_after)?,
        lease: std_duration("worker.lease", &raw.lease)?,
        heartbeat: std_duration("worker.heartbeat", &raw.heartbeat)?,
        grace: std_duration("worker.grace", &raw.grace)?,
        idle_wait: std_duration("worker.idle_wait", &raw.idle_wait)?,
        once_pause_wait: std_duration("worker.once_pause_wait", &raw.once_pause_wait)?,
        invalid_grant_recheck: std_duration(
            "worker.invalid_grant_recheck",
            &raw.invalid_grant_recheck,
        )?,
        stall_pass_interval: std_duration("worker.stall_pass_interval", &raw.stall_pass_interval)?,
        tenant_rate_per_second: bounded(
            "worker.tenant_rate_per_second",
            raw.tenant_rate_per_second,
            1,
            1_000_000,
        )?,
        tenant_burst: bounded("worker.tenant_burst", raw.tenant_burst, 1, 1_000_000)?,
        red_after_consecutive_failures: bounded(
            "worker.red_after_consecutive_failures",
            raw.red_after_consecutive_failures,
            1,
            1000,
        )?,
        stall_after: std_duration("worker.stall_after", &raw.stall_after)?,
    };
    if section.heartbeat >= section.lease {
        return Err((
            "worker.heartbeat",
            "must be shorter than worker.lease".to_owned(),
        ));
    }
    if section.max_retry_after >= section.stall_after {
        return Err((
            "worker.max_retry_after",
            "must be shorter than worker.stall_after (a provider's pause would show import_stalled)"
                .to_owned(),
        ));
    }
    if section.backoff_cap < section.backoff_base {
        return Err((
            "worker.backoff_cap",
            "must not be shorter than worker.backoff_base".to_owned(),
        ));
    }
    Ok(section)
}

fn oauth_ref(
    prefix: &'static str,
    client_id: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
) -> Result<Option<OAuthClientRef>, (&'static str, String)> {
    let Some(client_id) = client_id.filter(|id| !id.trim().is_empty()) else {
        return Ok(None);
    };
    let secret = match (secret_env, secret_file) {
        (Some(name), None) if !name.trim().is_empty() => KeySource::Env(name),
        (None, Some(path)) => KeySource::File(path),
        _ => {
            return Err((
                prefix,
                "oauth_client_id needs exactly one of oauth_client_secret_env or oauth_client_secret_file".to_owned(),
            ));
        }
    };
    Ok(Some(OAuthClientRef { client_id, secret }))
}

fn validate_google(raw: RawGoogle) -> Result<GoogleSection, (&'static str, String)> {
    Ok(GoogleSection {
        oauth: oauth_ref(
            "google.oauth_client_id",
            raw.oauth_client_id,
            raw.oauth_client_secret_env,
            raw.oauth_client_secret_file,
        )?,
        mail_window: std_duration("google.mail_window", &raw.mail_window)?,
        calendar_past: std_duration("google.calendar_past", &raw.calendar_past)?,
        calendar_future: std_duration("google.calendar_future", &raw.calendar_future)?,
        page_size: bounded("google.page_size", raw.page_size, 1, 500)?,
        max_pages: bounded("google.max_pages", raw.max_pages, 1, 10_000)?,
        token_url: raw.token_url,
        authorize_url: raw.authorize_url,
        gmail_base: raw.gmail_base,
        calendar_base: raw.calendar_base,
        directory_base: raw.directory_base,
    })
}

fn validate_microsoft(raw: RawMicrosoft) -> Result<MicrosoftSection, (&'static str, String)> {
    Ok(MicrosoftSection {
        oauth: oauth_ref(
            "microsoft.oauth_client_id",
            raw.oauth_client_id,
            raw.oauth_client_secret_env,
            raw.oauth_client_secret_file,
        )?,
        calendar_past: std_duration("microsoft.calendar_past", &raw.calendar_past)?,
        calendar_future: std_duration("microsoft.calendar_future", &raw.calendar_future)?,
        max_pages_per_attempt: bounded(
            "microsoft.max_pages_per_attempt",
            raw.max_pages_per_attempt,
            1,
            10_000,
        )?,
        max_page_size: bounded("microsoft.max_page_size", raw.max_page_size, 1, 1000)?,
        login_base: raw.login_base,
        graph_base: raw.graph_base,
        oauth_tenant: raw.oauth_tenant,
    })
}

/// `90s`, `45m`, `12h`, `30d`: a positive whole number and one unit.
pub fn parse_duration(text: &str) -> Result<time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let count: i64 = number
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| {
            format!("{text:?} is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"")
        })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\""
            ));
        }
    };
    count
        .checked_mul(seconds)
        .map(time::Duration::seconds)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The classifier thresholds of `[worker]` (the store recomputes statuses with them).
pub fn thresholds(config: &Config) -> datacap_core::Thresholds {
    datacap_core::Thresholds {
        red_after_consecutive_failures: config.worker.red_after_consecutive_failures,
        stall_after: time::Duration::try_from(config.worker.stall_after)
            .unwrap_or(time::Duration::hours(1)),
    }
}

/// Reads a secret from the file or env var `source` names; `what` names it in errors (the
/// secret itself never appears).
pub fn read_secret(source: &KeySource, what: &str) -> anyhow::Result<SecretString> {
    let text = match source {
        KeySource::File(path) => {
            warn_if_shared(path, what);
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {what} file {}", path.display()))?
        }
        KeySource::Env(name) => {
            std::env::var(name).with_context(|| format!("{what} env var {name} is not set"))?
        }
    };
    Ok(SecretString::from(text.trim().to_owned()))
}

/// Checks `[http]`.
fn http_section(raw: RawHttp) -> Result<HttpConfig, (&'static str, String)> {
    let address = |key: &'static str, text: &str| {
        text.parse::<std::net::SocketAddr>().map_err(|_| {
            (
                key,
                format!("{text:?} is not an address like 127.0.0.1:9464"),
            )
        })
    };
    let listen = address("http.listen", &raw.listen)?;
    let metrics_listen = raw
        .metrics_listen
        .as_deref()
        .map(|text| address("http.metrics_listen", text))
        .transpose()?;
    if metrics_listen == Some(listen) {
        return Err((
            "http.metrics_listen",
            "must differ from http.listen".to_owned(),
        ));
    }
    let seconds = |key: &'static str, text: &str| {
        let duration = parse_duration(text).map_err(|detail| (key, detail))?;
        u64::try_from(duration.whole_seconds())
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .map(std::time::Duration::from_secs)
            .ok_or((key, "must be 1s to 1h".to_owned()))
    };
    let count = |key: &'static str, value: i64, max: i64| {
        usize::try_from(value)
            .ok()
            .filter(|v| *v >= 1 && i64::try_from(*v).is_ok_and(|v| v <= max))
            .ok_or((key, format!("must be 1 to {max}")))
    };
    Ok(HttpConfig {
        listen,
        metrics_listen,
        limits: datacap_web::Limits {
            header_read_timeout: seconds("http.header_read_timeout", &raw.header_read_timeout)?,
            request_timeout: seconds("http.request_timeout", &raw.request_timeout)?,
            max_connections: count("http.max_connections", raw.max_connections, 100_000)?,
            max_in_flight: count("http.max_in_flight", raw.max_in_flight, 10_000)?,
            body_limit: count("http.max_body_bytes", raw.max_body_bytes, 16 * 1024 * 1024)?,
            throttle_per_minute: u32::try_from(count(
                "http.sign_in_attempts_per_minute",
                raw.sign_in_attempts_per_minute,
                100_000,
            )?)
            .unwrap_or(u32::MAX),
        },
    })
}

/// Warns (naming the file and its mode, never its content) when a secret file is
/// readable or writable by others, or by a group other than the process's own: `chmod 600`
/// it. A group bit for the process's own group passes: Kubernetes mounts secret volumes
/// as `0440` owned by the pod's `fsGroup`, which is the daemon's group and nobody else's.
pub fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.mode() & 0o777;
            let foreign_group = own_group() != Some(metadata.gid());
            if mode & 0o007 != 0 || (mode & 0o070 != 0 && foreign_group) {
                tracing::warn!(
                    file = %path.display(),
                    mode = %format!("{mode:04o}"),
                    secret = what,
                    "a secret file is readable by its group or others; chmod 600 it"
                );
            }
        }
    }
}

/// The process's effective group id (Linux: `/proc/self/status`), if it can be read.
fn own_group() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Gid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Reads the encryption key from the file or env var the config names. A missing file,
/// an unset variable or a malformed key is an error; the key text is never printed.
pub fn load_key(encryption: &EncryptionConfig) -> anyhow::Result<EncryptionKey> {
    let text = match &encryption.source {
        KeySource::File(path) => {
            warn_if_shared(path, "encryption key");
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read encryption key file {}", path.display()))?
        }
        KeySource::Env(name) => std::env::var(name)
            .with_context(|| format!("encryption key env var {name} is not set"))?,
    };
    Ok(EncryptionKey::parse(
        &encryption.key_id,
        &SecretString::from(text),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check_error(text: &str, vars: &[(&str, &str)], expected: &str) {
        let error = parse(text, "datacap.toml", env(vars)).unwrap_err();
        assert_eq!(format!("{error:#}"), expected);
    }

    #[test]
    fn defaults_without_a_file() {
        let config = parse("", "built-in defaults", env(&[])).unwrap();
        assert_eq!(config.database.url, "sqlite://datacap.sqlite");
        assert_eq!(config.database.backend, BackendKind::Sqlite);
        assert_eq!(config.database.max_connections, 8);
        assert!(config.database.migrate_on_start);
        assert_eq!(config.encryption, None);
        assert_eq!(config.retention.attempts_max_age, time::Duration::days(30));
    }

    #[test]
    fn the_shipped_file_is_valid() {
        let text = include_str!("../../../../config/datacap.toml");
        let config = parse(text, "config/datacap.toml", env(&[])).unwrap();
        assert_eq!(config, parse("", "x", env(&[])).unwrap());
    }

    #[test]
    fn env_overrides_the_file() {
        let config = parse(
            "[database]\nurl = \"sqlite://a.sqlite\"\nmax_connections = 2\n",
            "datacap.toml",
            env(&[
                ("DATACAP_DATABASE__URL", "postgres://db/datacap"),
                ("DATACAP_DATABASE__MAX_CONNECTIONS", "16"),
                ("DATACAP_ENCRYPTION__KEY_ENV", "DATACAP_KEY"),
                ("DATACAP_RETENTION__ATTEMPTS_MAX_AGE", "12h"),
                ("DATACAP_TEST_POSTGRES_URL", "ignored: no section"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database.backend, BackendKind::Postgres);
        assert_eq!(config.database.max_connections, 16);
        assert_eq!(
            config.encryption.unwrap().source,
            KeySource::Env("DATACAP_KEY".to_owned())
        );
        assert_eq!(config.retention.attempts_max_age, time::Duration::hours(12));
    }

    #[test]
    fn errors_name_the_key() {
        check_error(
            "[database]\nmax_connections = \"many\"\n",
            &[],
            "datacap.toml:2: database.max_connections: invalid type: string \"many\", expected i64",
        );
        check_error(
            "",
            &[("DATACAP_DATABASE__MAX_CONNECTIONS", "0")],
            "env DATACAP_DATABASE__MAX_CONNECTIONS: database.max_connections: must be 1 to 1000, got 0",
        );
        check_error(
            "[database]\nurl = \"mysql://root:pw@db/x\"\n",
            &[],
            "datacap.toml:2: database.url: unsupported database url scheme \"mysql\": use a sqlite: url, a file path, or postgres://",
        );
        check_error(
            "[database]\nulr = \"x\"\n",
            &[],
            "datacap.toml:2: database.ulr: unknown field `ulr`, expected one of `url`, `max_connections`, `migrate_on_start`",
        );
        check_error(
            "[encryption]\nkey_id = \"k\"\n",
            &[],
            "datacap.toml:1: encryption.key_file: [encryption] needs key_file or key_env",
        );
        check_error(
            "[retention]\nattempts_max_age = \"a month\"\n",
            &[],
            "datacap.toml:2: retention.attempts_max_age: \"a month\" is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"",
        );
        check_error(
            "[database\n",
            &[],
            "datacap.toml:1: file: unclosed table, expected `]`",
        );
    }

    #[test]
    fn unknown_sections_and_keys_are_problems_with_their_lines() {
        check_error(
            "[wokrer]\nconcurrency = 4\n\n[worker]\npoll_intervall = \"5m\"\nlease = \"soon\"\n",
            &[("DATACAP_WROKER__LEASE", "1m")],
            "datacap.toml:1: wokrer: unknown section, ignored by datacap (its keys would fall back to defaults); expected one of database, encryption, retention, worker, google, microsoft, log, http, web, smtp, webhooks\n\
             datacap.toml:5: worker.poll_intervall: unknown field `poll_intervall`, expected one of `owner`, `concurrency`, `claim_batch`, `email_interval`, `calendar_interval`, `jitter`, `backoff_base`, `backoff_cap`, `recheck_interval`, `max_retry_after`, `lease`, `heartbeat`, `grace`, `idle_wait`, `once_pause_wait`, `invalid_grant_recheck`, `stall_pass_interval`, `tenant_rate_per_second`, `tenant_burst`, `red_after_consecutive_failures`, `stall_after`\n\
             datacap.toml:6: worker.lease: \"soon\" is not a duration like \"30d\", \"12h\", \"45m\" or \"90s\"\n\
             env DATACAP_WROKER__LEASE: wroker: unknown section; expected one of database, encryption, retention, worker, google, microsoft, log, http, web, smtp, webhooks",
        );
    }
}
