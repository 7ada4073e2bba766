//! The scenario file as serde reads it, before `validate`: every table and key the format
//! has (docs/sim.md), unknown keys refused, positions kept for the error messages.

use serde::Deserialize;
use toml::Spanned;

use super::{Provider, RetryAfter};
use crate::fault::{EndpointSel, FaultKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    #[serde(default)]
    pub(super) seed: u64,
    #[serde(default)]
    pub(super) epoch: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) access_token_lifetime_secs: Option<u64>,
    #[serde(default)]
    pub(super) tenant: Vec<RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) name: Spanned<String>,
    pub(super) provider: Provider,
    pub(super) domain: String,
    #[serde(default)]
    pub(super) tenant_id: Option<String>,
    #[serde(default)]
    pub(super) service_account: Option<RawServiceAccount>,
    #[serde(default)]
    pub(super) oauth_client: Option<RawClient>,
    #[serde(default)]
    pub(super) app: Option<RawClient>,
    #[serde(default)]
    pub(super) user: Vec<RawUser>,
    #[serde(default)]
    pub(super) fault: Vec<RawFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceAccount {
    pub(super) client_email: String,
    pub(super) client_id: String,
    pub(super) public_key: Spanned<String>,
    #[serde(default)]
    pub(super) delegated_scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    #[serde(default)]
    pub(super) redirect_uris: Vec<String>,
    #[serde(default)]
    pub(super) roles: Vec<String>,
    #[serde(default)]
    pub(super) consent_scopes: Vec<String>,
    #[serde(default)]
    pub(super) consent_user: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) reject_reused_refresh_tokens: bool,
    #[serde(default = "outlook_concurrency")]
    pub(super) mailbox_concurrency: u32,
}

/// Outlook's documented limit: 4 concurrent requests per app and mailbox.
fn outlook_concurrency() -> u32 {
    4
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) email: Spanned<String>,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) admin: bool,
    #[serde(default = "yes")]
    pub(super) mailbox: bool,
    #[serde(default = "yes")]
    pub(super) licensed: bool,
    #[serde(default)]
    pub(super) suspended: bool,
    #[serde(default)]
    pub(super) guest: bool,
    #[serde(default)]
    pub(super) deleted: bool,
    #[serde(default)]
    pub(super) created_at: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) messages: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) events: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) granted_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(super) fault: Vec<RawFault>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) fault: Spanned<FaultKind>,
    #[serde(default)]
    pub(super) endpoint: Option<EndpointSel>,
    #[serde(default)]
    pub(super) times: Option<u32>,
    #[serde(default)]
    pub(super) retry_after: Option<RetryAfter>,
    #[serde(default)]
    pub(super) latency_ms: Option<u64>,
    #[serde(default)]
    pub(super) bytes: Option<u64>,
}
