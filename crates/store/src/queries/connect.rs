//! The connect flow's pending sign-ins (`connect_states`): `/connect/{provider}/start`
//! stores one per `state` it hands to the provider, `/connect/{provider}/callback` takes it
//! back exactly once. The caller hashes the state (only the hash is stored) and checks the
//! expiry and provider of what it takes; a taken row is gone whatever the outcome, so a
//! replayed callback finds nothing.

use datacap_core::Provider;
use secrecy::SecretString;
use time::OffsetDateTime;

use super::known_member_in;
use crate::backend::{Backend, Dialect};
use crate::crypto::{EncryptionKey, Sealed};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::model::{ConnectState, NewConnectState};
use crate::sql::{query, query_as};

impl<D: Dialect> Backend<D> {
    /// Stores a pending sign-in with its PKCE verifier sealed by `key`, after deleting
    /// pending sign-ins that expired before `now`. The member must belong to the company.
    pub async fn put_connect_state(
        &self,
        pending: &NewConnectState<'_>,
        key: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        query("DELETE FROM connect_states WHERE expires_at < $1")
            .bind(DbTime::new(now))
            .execute(&mut tx)
            .await?;
        let member: Option<(String,)> = query_as(
            "SELECT m.id FROM members m JOIN companies c ON c.id = m.company_id \
             WHERE m.id = $1 AND m.company_id = $2 AND m.active AND c.active",
        )
        .bind(pending.member_id)
        .bind(pending.company_id)
        .fetch_optional(&mut tx)
        .await?;
        if member.is_none() {
            return Err(StoreError::UnknownMember {
                member_id: pending.member_id.to_owned(),
            });
        }
        let sealed = key.seal(pending.company_id, pending.member_id, pending.verifier);
        query(
            "INSERT INTO connect_states (state_hash, provider, company_id, member_id, \
             verifier_ciphertext, key_id, created_at, expires_at, invite_issued_at, \
             invite_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(pending.state_hash)
        .bind(pending.provider.as_str())
        .bind(pending.company_id)
        .bind(pending.member_id)
        .bind(sealed.bytes)
        .bind(sealed.key_id)
        .bind(DbTime::new(now))
        .bind(DbTime::new(pending.expires_at))
        .bind(pending.invite_issued)
        .bind(pending.invite_expires)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes (reads and deletes) the pending sign-in of `state_hash`, expired or not;
    /// `None` when there is none (never issued, or already taken). An unknown state costs
    /// one read: the write transaction (SQLite's only writer) is taken only for a state
    /// that exists, so random states from anyone cannot queue up behind the write lock.
    pub async fn take_connect_state(
        &self,
        state_hash: &str,
        key: &EncryptionKey,
    ) -> Result<Option<ConnectState>, StoreError> {
        let known: Option<(String,)> =
            query_as("SELECT state_hash FROM connect_states WHERE state_hash = $1")
                .bind(state_hash)
                .fetch_optional(self.reader())
                .await?;
        if known.is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        type Taken = (
            String,
            String,
            String,
            Vec<u8>,
            String,
            DbTime,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<Taken> = query_as(
            "DELETE FROM connect_states WHERE state_hash = $1 RETURNING provider, company_id, \
             member_id, verifier_ciphertext, key_id, expires_at, invite_issued_at, \
             invite_expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&mut tx)
        .await?;
        tx.commit().await?;
        let Some((
            provider,
            company_id,
            member_id,
            bytes,
            key_id,
            expires_at,
            invite_issued,
            invite_expires,
        )) = row
        else {
            return Ok(None);
        };
        let verifier: SecretString =
            key.open(&company_id, &member_id, &Sealed { key_id, bytes })?;
        Ok(Some(ConnectState {
            provider: Provider::parse(&provider)
                .ok_or_else(|| corrupt("connect_states", "provider", &provider))?,
            company_id,
            member_id,
            verifier,
            expires_at: expires_at.0,
            invite_issued,
            invite_expires,
        }))
    }

    /// Voids every connect link of `member_id` issued before `now` (a later revocation
    /// wins; an earlier one never moves the line back).
    pub async fn revoke_invites(
        &self,
        member_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        known_member_in(&mut tx, member_id).await?;
        query(
            "INSERT INTO invite_revocations (member_id, not_before) VALUES ($1, $2) \
             ON CONFLICT (member_id) DO UPDATE SET not_before = excluded.not_before \
             WHERE invite_revocations.not_before < excluded.not_before",
        )
        .bind(member_id)
        .bind(DbTime::new(now))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The known aliases of `member_id` (the tenants file's `aliases`), as declared; empty
    /// for an unknown member.
    pub async fn member_aliases(&self, member_id: &str) -> Result<Vec<String>, StoreError> {
        let row: Option<(String,)> = query_as("SELECT aliases FROM members WHERE id = $1")
            .bind(member_id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row
            .map(|(aliases,)| aliases.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default())
    }

    /// The time before which `member_id`'s connect links are void, if any were revoked.
    pub async fn invites_not_before(
        &self,
        member_id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let row: Option<(DbTime,)> =
            query_as("SELECT not_before FROM invite_revocations WHERE member_id = $1")
                .bind(member_id)
                .fetch_optional(self.reader())
                .await?;
        Ok(row.map(|(at,)| at.0))
    }
}
