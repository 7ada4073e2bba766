//! Persisting a rotated refresh token the moment the provider hands it out.
//!
//! A provider may rotate a member's refresh token on every refresh (Entra does), and refuse
//! the previous one afterwards (AADSTS70000). The new token is returned on the
//! [`crate::Attempt`] as a [`RotatedToken`], but a process that dies between the refresh
//! and the end of the attempt would lose it; a [`RefreshTokenSink`] given to a connector is
//! awaited right after the token call, before any API call, so the store holds the new
//! token first.

use std::future::Future;
use std::pin::Pin;

use crate::job::RotatedToken;

/// Why a sink could not save a token (the sink's own error, as text; never the token).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where rotated refresh tokens go as soon as they exist (the store, encrypted).
pub trait RefreshTokenSink: Send + Sync {
    /// Saves `token` as `member_id`'s refresh token. An error is logged and the attempt
    /// goes on; the token is still returned on the attempt.
    fn save<'a>(
        &'a self,
        member_id: &'a str,
        token: &'a RotatedToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;
}
