//! Where the Microsoft connector puts a rotated refresh token the moment Entra issues it:
//! sealed into the store, before the attempt makes any Graph call, so a crash mid-attempt
//! never loses the only valid token. The worker also stores the token returned on the
//! attempt before writing the attempt; this sink only makes the window zero.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use datacap_core::MemberConnection;
use datacap_microsoft::{RefreshTokenSink, RotatedRefreshToken, SinkError};
use datacap_store::{EncryptionKey, Store};

/// Seals rotated refresh tokens into the member's grant.
struct StoreTokenSink {
    store: Store,
    key: EncryptionKey,
}

/// A [`RefreshTokenSink`] writing to `store` with `key`, for
/// `MicrosoftConnector::with_refresh_token_sink`.
pub fn store_token_sink(store: Store, key: EncryptionKey) -> Arc<dyn RefreshTokenSink> {
    Arc::new(StoreTokenSink { store, key })
}

impl RefreshTokenSink for StoreTokenSink {
    fn save<'a>(
        &'a self,
        rotated: &'a RotatedRefreshToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>> {
        Box::pin(async move {
            let scopes = self
                .store
                .member_grant(&rotated.member_id, Some(&self.key))
                .await?
                .map(|grant| grant.scopes)
                .unwrap_or_default();
            self.store
                .put_member_grant(
                    &rotated.member_id,
                    MemberConnection::Connected,
                    &scopes,
                    Some(&rotated.refresh_token),
                    &self.key,
                    time::OffsetDateTime::now_utc(),
                )
                .await?;
            Ok(())
        })
    }
}
