//! datacap-google: the Google Workspace connector.
//!
//! Implements [`datacap_connector::Connector`] for Google: domain-wide delegation (an RS256
//! JWT-bearer assertion per member) or the member's own grant, a Directory check for
//! company-wide imports, Gmail (history ids) and Calendar (sync tokens) imports, and the
//! mapping of every answer in PROVIDERS.md's Google rows to one outcome.
//!
//! The five endpoints are typed calls on reqwest rather than the generated `google-*`
//! crates: one HTTP stack and one error path that sees the status and headers of every
//! answer (see ARCHITECTURE.md). The connect flow's code exchange alone is the `oauth2`
//! crate's, with [`TokenError`] as its error type.

mod calendar;
mod config;
mod connect;
mod connector;
mod directory;
pub mod errors;
#[doc(hidden)]
pub mod fuzz;
mod gmail;
mod models;
mod session;
mod token;

use datacap_connector::Failure;
use datacap_connector::http::ClientError;
use secrecy::SecretString;

pub use token::{CALENDAR_SCOPE, DIRECTORY_SCOPE, GMAIL_SCOPE};

/// The signed JWT-bearer assertion the connector sends to the token endpoint for
/// `subject` (RS256, one hour); `None` when the key does not parse. For tools that talk to
/// a token endpoint directly, such as `datacap-bench`'s load loop against the sim.
pub fn service_account_assertion(
    key: &datacap_connector::ServiceAccountKey,
    subject: &str,
    scope: &str,
    token_url: &str,
    now: time::OffsetDateTime,
) -> Option<String> {
    token::assertion(key, subject, scope, token_url, now).ok()
}
pub use config::{ConfigError, GoogleConfig};
pub use connector::GoogleConnector;
pub use models::{ApiError, ApiErrorDetail, ApiErrorItem, TokenError};

/// What can go wrong building the connector.
#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// A configuration value cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client cannot be built.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The authorization-code exchange failed; the failure says which outcome it means.
#[derive(Debug, thiserror::Error)]
#[error("google authorization code exchange failed: {0}")]
pub struct ExchangeError(pub Failure);

/// What the connect flow keeps from an authorization-code exchange.
pub struct CodeGrant {
    /// The member's refresh token (store it encrypted).
    pub refresh_token: SecretString,
    /// The scopes the member granted, space separated.
    pub scope: String,
    /// The access token issued with it: the connect flow asks Google whose account it
    /// is (`tokeninfo`) before it stores anything.
    pub access_token: SecretString,
}

impl std::fmt::Debug for CodeGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeGrant")
            .field("refresh_token", &"[redacted]")
            .field("access_token", &"[redacted]")
            .field("scope", &self.scope)
            .finish()
    }
}
