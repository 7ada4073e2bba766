//! The tenants file's shapes as read, before validation: one serde struct per TOML table
//! (unknown keys refused), and what `parse` keeps of each entry even when it does not read
//! cleanly, so that `validate` can still check its id, credentials and members.

use std::collections::BTreeMap;

use datacap_core::{ConnectionMode, Provider};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompany {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) provider: Provider,
    pub(super) connection_mode: ConnectionMode,
    #[serde(default)]
    pub(super) settings: RawCompanySettings,
    #[serde(default)]
    pub(super) credentials: BTreeMap<String, String>,
    /// Taken out and read one by one (see [`parse_tenants`](super::parse_tenants)); declared so that a
    /// misspelt key's message lists it.
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) members: Option<serde::de::IgnoredAny>,
    /// Taken out and read one by one, like `members`.
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) webhooks: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    pub(super) id: String,
    pub(super) url: String,
    #[serde(default)]
    pub(super) secret_file: Option<String>,
    #[serde(default)]
    pub(super) secret_env: Option<String>,
    #[serde(default)]
    pub(super) events: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompanySettings {
    #[serde(default)]
    pub(super) permission_given: bool,
    #[serde(default)]
    pub(super) email_authorized: bool,
    #[serde(default)]
    pub(super) calendar_authorized: bool,
    #[serde(default = "yes")]
    pub(super) import_email: bool,
    #[serde(default = "yes")]
    pub(super) import_calendar: bool,
    #[serde(default)]
    pub(super) import_non_recorded_meetings: bool,
}

impl Default for RawCompanySettings {
    fn default() -> Self {
        RawCompanySettings {
            permission_given: false,
            email_authorized: false,
            calendar_authorized: false,
            import_email: true,
            import_calendar: true,
            import_non_recorded_meetings: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMember {
    pub(super) id: String,
    pub(super) email: String,
    #[serde(default)]
    pub(super) aliases: Vec<String>,
    #[serde(default = "yes")]
    pub(super) active: bool,
    /// The seat that recording needs.
    #[serde(default)]
    pub(super) seat: bool,
    #[serde(default)]
    pub(super) recording_enabled: bool,
    #[serde(default = "yes")]
    pub(super) email_import: bool,
    #[serde(default = "yes")]
    pub(super) calendar_import: bool,
    #[serde(default)]
    pub(super) import_non_recorded_meetings: bool,
}

fn yes() -> bool {
    true
}

/// One `[[companies]]` entry as read: the company when it read cleanly, and what can be
/// checked of it either way.
pub(super) struct RawEntry {
    pub(super) index: usize,
    pub(super) id: Option<String>,
    pub(super) credentials: BTreeMap<String, String>,
    pub(super) company: Option<RawCompany>,
    pub(super) members: Vec<MemberEntry>,
    pub(super) webhooks: Vec<WebhookEntry>,
}

/// One `[[companies.webhooks]]` entry as read.
pub(super) struct WebhookEntry {
    pub(super) index: usize,
    pub(super) webhook: Option<RawWebhook>,
}

/// One `[[companies.members]]` entry as read, like [`RawEntry`].
pub(super) struct MemberEntry {
    pub(super) index: usize,
    pub(super) id: Option<String>,
    pub(super) email: Option<String>,
    pub(super) member: Option<RawMember>,
}
