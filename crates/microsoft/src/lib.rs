//! datacap-microsoft: the Microsoft 365 connector.
//!
//! It implements [`datacap_connector::Connector`] against the Entra ID v2.0 token endpoint
//! and Microsoft Graph: app-only (client credentials per tenant, cached) or user-by-user
//! (refresh grant with rotation), then a delta round over the member's inbox or calendar
//! view. Every provider answer becomes one outcome of STATUS_MODEL.md through the pure
//! mapping in [`errors`]; base URLs are configuration ([`MicrosoftConfig`]), which is how
//! national clouds and the sim are reached. Written on reqwest with typed models rather
//! than graph-rs-sdk, whose token endpoint cannot be redirected (ARCHITECTURE.md); the
//! connect flow's code redemption alone is the `oauth2` crate's.

mod config;
mod connect;
mod connector;
mod delta;
pub mod errors;
#[doc(hidden)]
pub mod fuzz;
mod graph;
mod limiter;
mod session;
mod token;
mod users;

pub use config::{ConfigError, MicrosoftConfig, OUTLOOK_MAILBOX_CONCURRENCY};
pub use connector::MicrosoftConnector;
pub use token::{TokenClaims, TokenGrant};
pub use users::DirectoryUser;

use datacap_connector::Failure;

/// What the connector's non-import functions ([`MicrosoftConnector::new`],
/// [`MicrosoftConnector::exchange_code`], [`MicrosoftConnector::list_users`]) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MicrosoftError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP client cannot be built.
    #[error(transparent)]
    Client(#[from] datacap_connector::http::ClientError),
    /// Microsoft (or the network) answered with this outcome.
    #[error("microsoft 365 call failed: {0}")]
    Provider(Failure),
}

impl MicrosoftError {
    /// The outcome, when the failure came from Microsoft or the network.
    pub fn outcome(&self) -> Option<datacap_core::Outcome> {
        match self {
            MicrosoftError::Provider(failure) => Some(failure.outcome),
            _ => None,
        }
    }
}
