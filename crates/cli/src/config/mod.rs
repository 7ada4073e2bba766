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

mod raw;
mod secrets;
pub(crate) mod smtp;
mod source;
#[cfg(test)]
mod tests;
mod validate;
pub(crate) mod web;

use raw::*;
use validate::*;

pub use secrets::{load_key, read_secret};
pub use source::{load, load_with_values, parse};
pub use validate::{parse_duration, thresholds};

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
