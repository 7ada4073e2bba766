//! Persisting a rotated refresh token the moment Entra hands it out.
//!
//! Entra may rotate a member's refresh token on every refresh, and a tenant can refuse the
//! previous one afterwards (AADSTS70000). The new token is returned on the
//! [`datacap_connector::Attempt`], but a process that dies between the refresh and the end
//! of the attempt would lose it; a [`RefreshTokenSink`] given to
//! [`crate::MicrosoftConnector::with_refresh_token_sink`] is awaited right after the token
//! call, before any Graph call, so the store holds the new token first.

use std::future::Future;
use std::pin::Pin;

use secrecy::SecretString;
use uuid::Uuid;

/// A refresh token Entra issued in place of the member's previous one.
#[derive(Clone)]
pub struct RotatedRefreshToken {
    pub company_id: String,
    pub member_id: String,
    pub attempt_id: Uuid,
    pub refresh_token: SecretString,
}

impl std::fmt::Debug for RotatedRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatedRefreshToken")
            .field("company_id", &self.company_id)
            .field("member_id", &self.member_id)
            .field("attempt_id", &self.attempt_id)
            .field("refresh_token", &"[redacted]")
            .finish()
    }
}

/// Why a sink could not save a token (the sink's own error, as text; never the token).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where rotated refresh tokens go as soon as they exist (the store, encrypted).
pub trait RefreshTokenSink: Send + Sync {
    /// Saves `rotated`. An error is logged and the attempt goes on; the token is still
    /// returned on the attempt.
    fn save<'a>(
        &'a self,
        rotated: &'a RotatedRefreshToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;
}
