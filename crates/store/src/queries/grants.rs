//! Members' own grants (user-by-user connection mode) and the encryption key: refresh
//! tokens sealed per row, the key checked against a canary at start-up, and a key
//! rotation that re-seals every secret in one transaction.

use datacap_core::MemberConnection;
use secrecy::SecretString;
use time::OffsetDateTime;

use super::{locked, member_context, member_context_select};
use crate::backend::{Backend, Dialect, Tx};
use crate::crypto::{CryptoError, EncryptionKey, Sealed};
use crate::dbtime::DbTime;
use crate::error::{StoreError, corrupt};
use crate::model::{KeyRotation, MemberGrant};
use crate::sql::{query, query_as};

/// The (company id, member id) a key-check canary is sealed for; tenant ids are never
/// empty, so no member row can share it.
const CANARY_ROW: (&str, &str) = ("", "encryption-key-canary");

const CANARY_TEXT: &str = "datacap encryption key check";

impl<D: Dialect> Backend<D> {
    /// Stores a member's own grant, sealing the refresh token with `key` for this row,
    /// and recomputes the member's status and the company's banners (the grant's state is
    /// an input of the classifier).
    pub async fn put_member_grant(
        &self,
        member_id: &str,
        state: MemberConnection,
        scopes: &[String],
        refresh_token: Option<&SecretString>,
        key: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // Locks the member first, as every status write does (see `Dialect::LOCK_MEMBERS`).
        let select = locked("SELECT company_id FROM members WHERE id = $1", D::LOCK_ROWS);
        let (company_id,): (String,) = query_as(select)
            .bind(member_id)
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| StoreError::UnknownMember {
                member_id: member_id.to_owned(),
            })?;
        let sealed = refresh_token.map(|token| key.seal(&company_id, member_id, token));
        query(
            "INSERT INTO member_grants (member_id, company_id, state, scopes, \
             refresh_token_ciphertext, key_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (member_id) DO UPDATE SET company_id = excluded.company_id, \
             state = excluded.state, scopes = excluded.scopes, \
             refresh_token_ciphertext = excluded.refresh_token_ciphertext, \
             key_id = excluded.key_id, updated_at = excluded.updated_at",
        )
        .bind(member_id)
        .bind(&company_id)
        .bind(state.as_str())
        .bind(scopes.join(" "))
        .bind(sealed.as_ref().map(|sealed| sealed.bytes.clone()))
        .bind(sealed.as_ref().map(|sealed| sealed.key_id.clone()))
        .bind(DbTime::new(now))
        .execute(&mut tx)
        .await?;
        let row = query(concat!(member_context_select!(), " WHERE m.id = $1"))
            .bind(member_id)
            .fetch_one(&mut tx)
            .await?;
        let context = member_context::<D>(&row)?;
        self.recompute_members_in(&mut tx, &[context], now).await?;
        self.write_banners_in(&mut tx, &company_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A member's own grant with its refresh token opened; `None` when the member has
    /// none. A stored token without a key, or one that does not open, is an error.
    pub async fn member_grant(
        &self,
        member_id: &str,
        key: Option<&EncryptionKey>,
    ) -> Result<Option<MemberGrant>, StoreError> {
        let row: Option<GrantRow> = query_as(
            "SELECT company_id, state, scopes, refresh_token_ciphertext, key_id, updated_at \
                 FROM member_grants WHERE member_id = $1",
        )
        .bind(member_id)
        .fetch_optional(self.reader())
        .await?;
        let Some((company_id, state, scopes, ciphertext, key_id, updated_at)) = row else {
            return Ok(None);
        };
        let refresh_token = match ciphertext {
            None => None,
            Some(bytes) => {
                let key = key.ok_or_else(|| CryptoError::MissingKey {
                    member_id: member_id.to_owned(),
                })?;
                let sealed = Sealed {
                    key_id: key_id.unwrap_or_default(),
                    bytes,
                };
                Some(key.open(&company_id, member_id, &sealed)?)
            }
        };
        Ok(Some(MemberGrant {
            state: MemberConnection::parse(&state)
                .ok_or_else(|| corrupt("member_grants", "state", &state))?,
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
            refresh_token,
            updated_at: updated_at.0,
        }))
    }

    /// Proves that `key` is the key this database's secrets were sealed with: the first
    /// use of a key id stores a canary sealed with it, later uses must open it.
    pub async fn verify_key(
        &self,
        key: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        check_canary(&mut tx, key, now, true).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Re-seals every stored refresh token from `old` to `new` in one transaction (rows
    /// locked on PostgreSQL, the write lock held on SQLite, so no grant is written under
    /// the old key meanwhile), and registers `new`'s canary. `old` must open its canary
    /// when it has one; a token already under `new` must open with it; a token under any
    /// third key id fails the whole rotation and nothing is written.
    pub async fn rotate_key(
        &self,
        old: &EncryptionKey,
        new: &EncryptionKey,
        now: OffsetDateTime,
    ) -> Result<KeyRotation, StoreError> {
        if old.id() == new.id() {
            return Err(CryptoError::SameKeyId {
                key_id: new.id().to_owned(),
            }
            .into());
        }
        let mut tx = self.begin_write().await?;
        check_canary(&mut tx, old, now, false).await?;
        check_canary(&mut tx, new, now, true).await?;
        let select = locked(
            "SELECT member_id, company_id, refresh_token_ciphertext, key_id FROM member_grants \
             WHERE refresh_token_ciphertext IS NOT NULL ORDER BY member_id",
            D::LOCK_FOR_UPDATE,
        );
        let rows: Vec<(String, String, Vec<u8>, Option<String>)> =
            query_as(select).fetch_all(&mut tx).await?;
        let mut rotation = KeyRotation::default();
        for (member_id, company_id, bytes, key_id) in rows {
            let sealed = Sealed {
                key_id: key_id.unwrap_or_default(),
                bytes,
            };
            if sealed.key_id == new.id() {
                new.open(&company_id, &member_id, &sealed)?;
                rotation.already_new += 1;
                continue;
            }
            // `open` refuses a third key id with a KeyMismatch naming the member.
            let plaintext = old.open(&company_id, &member_id, &sealed)?;
            let resealed = new.seal(&company_id, &member_id, &plaintext);
            query(
                "UPDATE member_grants SET refresh_token_ciphertext = $1, key_id = $2 \
                 WHERE member_id = $3",
            )
            .bind(resealed.bytes)
            .bind(resealed.key_id)
            .bind(&member_id)
            .execute(&mut tx)
            .await?;
            rotation.resealed += 1;
        }
        tx.commit().await?;
        Ok(rotation)
    }
}

/// Checks `key` against its stored canary inside `tx`; with no canary for its id, stores
/// one when `register` is set (and accepts the key as is otherwise).
///
/// Registering is idempotent: the canary is inserted only if absent (`ON CONFLICT DO
/// NOTHING`) and then read back and opened, so two daemons starting at once on a fresh
/// database both succeed with the same key (the second's insert waits for the first's
/// commit on PostgreSQL, then does nothing) and a different key still fails.
async fn check_canary<D: Dialect>(
    tx: &mut Tx<D>,
    key: &EncryptionKey,
    now: OffsetDateTime,
    register: bool,
) -> Result<(), StoreError> {
    let mut canary = read_canary(tx, key).await?;
    if canary.is_none() && register {
        let sealed = key.seal(CANARY_ROW.0, CANARY_ROW.1, &SecretString::from(CANARY_TEXT));
        query(
            "INSERT INTO encryption_keys (key_id, canary, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(key.id())
        .bind(sealed.bytes)
        .bind(DbTime::new(now))
        .execute(&mut *tx)
        .await?;
        canary = read_canary(tx, key).await?;
    }
    let Some(bytes) = canary else {
        return Ok(());
    };
    let sealed = Sealed {
        key_id: key.id().to_owned(),
        bytes,
    };
    let opened = key.open(CANARY_ROW.0, CANARY_ROW.1, &sealed);
    if !opened.is_ok_and(|text| secrecy::ExposeSecret::expose_secret(&text) == CANARY_TEXT) {
        return Err(CryptoError::WrongKey {
            key_id: key.id().to_owned(),
        }
        .into());
    }
    Ok(())
}

/// The stored canary of `key`'s id, if any.
async fn read_canary<D: Dialect>(
    tx: &mut Tx<D>,
    key: &EncryptionKey,
) -> Result<Option<Vec<u8>>, StoreError> {
    let canary: Option<(Vec<u8>,)> =
        query_as("SELECT canary FROM encryption_keys WHERE key_id = $1")
            .bind(key.id())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(canary.map(|(bytes,)| bytes))
}

/// company_id, state, scopes, ciphertext, key_id.
type GrantRow = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<String>,
    DbTime,
);
