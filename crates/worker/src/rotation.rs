//! The one way a rotated refresh token is saved: sealed into the member's grant, keeping
//! its scopes. A connector that rotates tokens (Microsoft) calls it through the
//! [`RefreshTokenSink`] right after the token call, before any API call, so a crash
//! mid-attempt never loses the only valid token; the worker calls it again with the token
//! returned on the attempt before it writes the attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use datacap_connector::{RefreshTokenSink, RotatedToken, SinkError};
use datacap_core::MemberConnection;
use datacap_store::{EncryptionKey, Store, StoreError};
use time::OffsetDateTime;

/// Seals `token` as `member_id`'s refresh token under `key`, keeping the grant's scopes.
pub(crate) async fn seal(
    store: &Store,
    key: &EncryptionKey,
    member_id: &str,
    token: &RotatedToken,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let scopes = store
        .member_grant(member_id, Some(key))
        .await?
        .map(|grant| grant.scopes)
        .unwrap_or_default();
    store
        .put_member_grant(
            member_id,
            MemberConnection::Connected,
            &scopes,
            Some(&token.0),
            key,
            now,
        )
        .await
}

/// Seals rotated refresh tokens into the member's grant.
struct StoreTokenSink {
    store: Store,
    key: EncryptionKey,
}

/// A [`RefreshTokenSink`] writing to `store` with `key`, for a connector that rotates
/// refresh tokens (`MicrosoftConnector::with_refresh_token_sink`).
pub fn store_token_sink(store: Store, key: EncryptionKey) -> Arc<dyn RefreshTokenSink> {
    Arc::new(StoreTokenSink { store, key })
}

impl RefreshTokenSink for StoreTokenSink {
    fn save<'a>(
        &'a self,
        member_id: &'a str,
        token: &'a RotatedToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async move {
            seal(
                &self.store,
                &self.key,
                member_id,
                token,
                OffsetDateTime::now_utc(),
            )
            .await?;
            Ok(())
        })
    }
}
