//! The first phase: what the file and the environment say, as serde reads it (every
//! section `deny_unknown_fields`, every default the documented one), before any check.

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Deserialize, serde::Serialize, Default)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) encryption: Option<RawEncryption>,
    #[serde(default)]
    pub(super) retention: RawRetention,
    #[serde(default)]
    pub(super) worker: RawWorker,
    #[serde(default)]
    pub(super) google: RawGoogle,
    #[serde(default)]
    pub(super) microsoft: RawMicrosoft,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) web: web::RawWeb,
    #[serde(default)]
    pub(super) smtp: smtp::RawSmtp,
    #[serde(default)]
    pub(super) webhooks: RawWebhooks,
}

/// Declares a raw config section: each field's type and default, `deny_unknown_fields`,
/// and a `Default` that matches serde's.
macro_rules! raw_section {
    ($name:ident { $($field:ident : $ty:ty = $default:expr,)* }) => {
        #[derive(Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub(super) struct $name { $(pub(super) $field: $ty,)* }
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

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    #[serde(default = "default_url")]
    pub(super) url: String,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: i64,
    #[serde(default = "default_true")]
    pub(super) migrate_on_start: bool,
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
pub(super) struct RawEncryption {
    #[serde(default)]
    pub(super) key_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) key_env: Option<String>,
    #[serde(default = "default_key_id")]
    pub(super) key_id: String,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    #[serde(default = "default_max_age")]
    pub(super) attempts_max_age: String,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            attempts_max_age: default_max_age(),
        }
    }
}

pub(super) fn default_url() -> String {
    "sqlite://datacap.sqlite".to_owned()
}
pub(super) fn default_max_connections() -> i64 {
    8
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_key_id() -> String {
    "primary".to_owned()
}
pub(super) fn default_max_age() -> String {
    "30d".to_owned()
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
