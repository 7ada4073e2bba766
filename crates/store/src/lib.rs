//! datacap's store: everything the daemon keeps, behind one interface in domain terms.
//!
//! SQLite is the embedded default (a file path or `sqlite:` URL); a `postgres://` URL
//! switches to PostgreSQL for several replicas sharing one database (atuin-style: the URL
//! scheme picks the backend). Both run the same queries, written once in `queries/` (one
//! file per topic) against the `Dialect` trait of `backend/`, which holds what truly
//! differs (pools, row locks, bulk writers); each has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`), and one conformance suite tests both.
//!
//! The store never reads files, env or the clock: URLs, keys and `now` come in as
//! arguments from the binary and the worker.

mod backend;
mod crypto;
mod dbtime;
mod error;
mod model;
mod queries;
mod rows;
mod sql;
mod tenants;
mod webhooks;

use datacap_core::{Icon, MemberConnection, Reason};
use secrecy::SecretString;
use time::OffsetDateTime;

pub use backend::{PostgresStore, SqliteStore};
pub use crypto::{CryptoError, EncryptionKey, Sealed};
pub use datacap_core::{CalendarItem, EmailItem};
pub use error::StoreError;
pub use model::{
    ApplySummary, AttemptRecord, AttemptReport, BannerReport, CompanyReport, ConnectState,
    DueReport, FailPoint, IconReport, Job, JobContext, KeyRotation, LastSuccess, MemberGrant,
    MemberReport, NewConnectState, RecordResult, StatusChangeReport, StatusReport, StoreOptions,
    WriteOptions,
};
pub use tenants::{
    TenantCompany, TenantMember, TenantWebhook, Tenants, TenantsError, TenantsErrors, parse_tenants,
};
pub use webhooks::{
    DeliveryNext, EndpointReport, EventType, SecretRef, WebhookDelivery, WebhookTry,
};

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    /// `postgres://` and `postgresql://` are PostgreSQL; `sqlite:` URLs and plain file
    /// paths are SQLite; any other scheme is an error (naming only the scheme, since a
    /// URL may carry a password).
    pub fn of_url(url: &str) -> Result<BackendKind, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(BackendKind::Postgres);
        }
        if url.starts_with("sqlite:") {
            return Ok(BackendKind::Sqlite);
        }
        match url.split_once("://") {
            Some((scheme, _)) => Err(StoreError::UnsupportedUrl {
                scheme: scheme.to_owned(),
            }),
            None if url.trim().is_empty() => Err(StoreError::UnsupportedUrl {
                scheme: String::new(),
            }),
            None => Ok(BackendKind::Sqlite),
        }
    }
}

/// The store: one of the two backends, chosen by URL.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// Calls `method` on whichever backend `self` holds.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

/// Writes `Store` methods that pass their arguments on, unchanged, to the backend's method
/// of the same name and signature (in `queries/`): each is declared once, by its documented
/// signature, instead of written out with the same `dispatch!` body.
macro_rules! delegate {
    ($(
        $(#[$doc:meta])*
        pub async fn $method:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;
    )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $method(&self $(, $arg: $ty)*) -> $out {
                    dispatch!(self.$method($($arg),*))
                }
            )*
        }
    };
}

impl Store {
    /// Connects to the database `url` names (see [`BackendKind::of_url`]).
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        Ok(match BackendKind::of_url(url)? {
            BackendKind::Sqlite => Store::Sqlite(SqliteStore::connect(url, options).await?),
            BackendKind::Postgres => Store::Postgres(PostgresStore::connect(url, options).await?),
        })
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            Store::Sqlite(_) => BackendKind::Sqlite,
            Store::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Writes one attempt atomically with its items, sync state, the member's status and
    /// history, and the company's banners.
    pub async fn record_attempt(
        &self,
        attempt: &AttemptRecord,
        now: OffsetDateTime,
        options: &WriteOptions,
    ) -> Result<RecordResult, StoreError> {
        let mut results = self
            .record_attempts(std::slice::from_ref(attempt), now, options)
            .await?;
        Ok(results.remove(0))
    }

    /// Whether PostgreSQL's autovacuum is off: then nothing removes the dead row versions
    /// every poll leaves in `sync_state`, and each claim reads more of them (a full
    /// `VACUUM` or turning it on fixes it). `false` on SQLite and when unreadable.
    pub async fn autovacuum_off(&self) -> bool {
        self.server_settings().await.is_ok_and(|settings| {
            settings
                .iter()
                .any(|(name, value)| name == "autovacuum" && value == "off")
        })
    }

    /// Makes a member's channels (or one) due at `now`, so the next claim polls them;
    /// a channel under a live lease is left to its running attempt.
    pub async fn make_due(
        &self,
        member_id: &str,
        channel: Option<datacap_core::Channel>,
        now: OffsetDateTime,
    ) -> Result<DueReport, StoreError> {
        dispatch!(self.make_due(member_id, channel, now, false))
    }

    /// [`Store::make_due`], and drops the saved cursors, so the next poll is a full pass
    /// (a forced resync; items stay deduplicated on their provider id).
    pub async fn make_due_full(
        &self,
        member_id: &str,
        channel: Option<datacap_core::Channel>,
        now: OffsetDateTime,
    ) -> Result<DueReport, StoreError> {
        dispatch!(self.make_due(member_id, channel, now, true))
    }

    /// Closes the connection pools.
    pub async fn close(&self) {
        dispatch!(self.close())
    }
}

delegate! {
    /// Applies the backend's pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError>;

    /// Upserts a validated tenants file in one transaction (see [`parse_tenants`]).
    pub async fn apply_tenants(&self, tenants: &Tenants, now: OffsetDateTime)
        -> Result<ApplySummary, StoreError>;

    /// Writes many attempts in one transaction; each touched member and company is
    /// recomputed once.
    pub async fn record_attempts(&self, attempts: &[AttemptRecord], now: OffsetDateTime,
        options: &WriteOptions) -> Result<Vec<RecordResult>, StoreError>;

    /// Recomputes a company's member statuses and banners as of `now`, a chunk of members
    /// per transaction (the daemon's first stall pass).
    pub async fn recompute_company(&self, company_id: &str, now: OffsetDateTime)
        -> Result<(), StoreError>;

    /// Recomputes only the members whose status may have turned `import_stalled` since it
    /// was last evaluated (the stall pass); returns how many.
    pub async fn recompute_stale(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    /// How many active members' icons show each (icon, reason).
    pub async fn status_counts(&self) -> Result<Vec<(Icon, Reason, u64)>, StoreError>;

    /// Leases up to `limit` due jobs to `owner` for `lease`.
    pub async fn claim_due(&self, owner: &str, now: OffsetDateTime, lease: time::Duration,
        limit: u32) -> Result<Vec<Job>, StoreError>;

    /// Leases up to `limit` due jobs to `owner` for `lease`, companies taking turns, at
    /// most `per_company` of one company, none of the companies in `skip`.
    pub async fn claim_due_fair(&self, owner: &str, now: OffsetDateTime, lease: time::Duration,
        limit: u32, per_company: u32, skip: &[String]) -> Result<Vec<Job>, StoreError>;

    /// Extends `owner`'s lease on `job` until `until`; false when the lease was lost.
    pub async fn heartbeat(&self, job: &Job, owner: &str, until: OffsetDateTime)
        -> Result<bool, StoreError>;

    /// Releases `owner`'s lease on `job`, optionally moving its due time.
    pub async fn release(&self, job: &Job, owner: &str, next_due_at: Option<OffsetDateTime>)
        -> Result<bool, StoreError>;

    /// Releases a job that found no grant, due again at `recheck` unless the member has a
    /// connected grant by now (then it stays due).
    pub async fn release_without_grant(&self, job: &Job, owner: &str, recheck: OffsetDateTime)
        -> Result<bool, StoreError>;

    /// When the oldest due job that no live lease holds became due; `None` when nothing
    /// waits (the worker's queue-lag gauge). One index-backed read.
    pub async fn oldest_waiting_due_at(&self, now: OffsetDateTime)
        -> Result<Option<OffsetDateTime>, StoreError>;

    /// The settings and credential references a job of `member_id` runs with.
    pub async fn job_context(&self, member_id: &str) -> Result<Option<JobContext>, StoreError>;

    /// The ids of every active company (the stall pass walks them).
    pub async fn active_company_ids(&self) -> Result<Vec<String>, StoreError>;

    /// PostgreSQL's settings that matter at scale (`autovacuum`, `shared_buffers`,
    /// `max_wal_size`, …), by name; empty on SQLite.
    pub async fn server_settings(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// One cheap query: is the database reachable?
    pub async fn ping(&self) -> Result<(), StoreError>;

    /// Deletes attempts finished before `older_than`, keeping each channel's latest
    /// `red_after_consecutive_failures` attempts (all the classifier reads), so pruning never
    /// changes a status. Status history is kept.
    pub async fn prune_attempts(&self, older_than: OffsetDateTime) -> Result<u64, StoreError>;

    /// Deletes webhook events written before `older_than` that no delivery still waits
    /// for (delivered or dead), with their deliveries and tries (the retention pass).
    pub async fn prune_webhooks(&self, older_than: OffsetDateTime) -> Result<u64, StoreError>;

    /// The status report of DESIGN.md, for every active company or one.
    pub async fn status(&self, company_id: Option<&str>) -> Result<StatusReport, StoreError>;

    /// Stores a member's own grant with its refresh token sealed by `key`.
    pub async fn put_member_grant(&self, member_id: &str, state: MemberConnection,
        scopes: &[String], refresh_token: Option<&SecretString>, key: &EncryptionKey,
        now: OffsetDateTime) -> Result<(), StoreError>;

    /// A member's own grant with its refresh token opened.
    pub async fn member_grant(&self, member_id: &str, key: Option<&EncryptionKey>)
        -> Result<Option<MemberGrant>, StoreError>;

    /// Checks at start-up that `key` is the key this database was set up with.
    pub async fn verify_key(&self, key: &EncryptionKey, now: OffsetDateTime)
        -> Result<(), StoreError>;

    /// Re-seals every stored member secret from `old` to `new` in one transaction, and
    /// registers `new` (its canary) so `verify_key` accepts it. Secrets already under `new`
    /// are checked and left; one under any other key fails the whole rotation.
    pub async fn rotate_key(&self, old: &EncryptionKey, new: &EncryptionKey, now: OffsetDateTime)
        -> Result<KeyRotation, StoreError>;

    /// The latest `limit` attempts of a company's member, newest first.
    pub async fn member_attempts(&self, company_id: &str, member_id: &str, limit: u32)
        -> Result<Vec<AttemptReport>, StoreError>;

    /// The latest `limit` status changes of a company's member, newest first.
    pub async fn member_history(&self, company_id: &str, member_id: &str, limit: u32)
        -> Result<Vec<StatusChangeReport>, StoreError>;

    /// The attempts with these ids that are still stored.
    pub async fn attempts_by_id(&self, ids: &[String]) -> Result<Vec<AttemptReport>, StoreError>;

    /// Stores a pending sign-in of the connect flow (its verifier sealed by `key`).
    pub async fn put_connect_state(&self, pending: &NewConnectState<'_>, key: &EncryptionKey,
        now: OffsetDateTime) -> Result<(), StoreError>;

    /// Takes a pending sign-in back, once: a second take of the same state finds nothing.
    pub async fn take_connect_state(&self, state_hash: &str, key: &EncryptionKey)
        -> Result<Option<ConnectState>, StoreError>;

    /// Voids every connect link of `member_id` issued before `now`.
    pub async fn revoke_invites(&self, member_id: &str, now: OffsetDateTime)
        -> Result<(), StoreError>;

    /// The known aliases of `member_id` (the tenants file's `aliases`); empty for an
    /// unknown member.
    pub async fn member_aliases(&self, member_id: &str) -> Result<Vec<String>, StoreError>;

    /// The time before which `member_id`'s connect links are void, if any were revoked.
    pub async fn invites_not_before(&self, member_id: &str)
        -> Result<Option<OffsetDateTime>, StoreError>;

    /// Leases the heads of up to `limit` webhook endpoints' queues to `owner` for `lease`
    /// (each endpoint's oldest pending delivery, when due).
    pub async fn claim_webhook_deliveries(&self, owner: &str, now: OffsetDateTime,
        lease: time::Duration, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// Records a try of a leased delivery and its next state; false when the lease was
    /// lost (nothing written).
    pub async fn record_webhook_try(&self, delivery: &WebhookDelivery, attempt: &WebhookTry,
        next: DeliveryNext) -> Result<bool, StoreError>;

    /// Gives a leased delivery back untried.
    pub async fn release_webhook_delivery(&self, delivery: &WebhookDelivery)
        -> Result<bool, StoreError>;

    /// Every webhook endpoint of every company or one, with its delivery health.
    pub async fn webhook_endpoints(&self, company_id: Option<&str>)
        -> Result<Vec<EndpointReport>, StoreError>;

    /// Sends the event `event_id` again to every endpoint it went to; returns how many
    /// deliveries were made pending.
    pub async fn redeliver_event(&self, event_id: &str, now: OffsetDateTime)
        -> Result<u64, StoreError>;

    /// Makes every delivery that died at or after `since` pending again.
    pub async fn redeliver_dead_since(&self, since: OffsetDateTime, company_id: Option<&str>,
        now: OffsetDateTime) -> Result<u64, StoreError>;

    /// When the oldest undelivered webhook event began waiting; `None` when none waits.
    pub async fn oldest_undelivered_webhook(&self) -> Result<Option<OffsetDateTime>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_scheme_picks_the_backend() {
        let kind = |url: &str| BackendKind::of_url(url).ok();
        assert_eq!(kind("postgres://u@h/db"), Some(BackendKind::Postgres));
        assert_eq!(kind("postgresql://h/db"), Some(BackendKind::Postgres));
        assert_eq!(kind("sqlite://datacap.sqlite"), Some(BackendKind::Sqlite));
        assert_eq!(
            kind("/var/lib/datacap/db.sqlite"),
            Some(BackendKind::Sqlite)
        );
        let error = BackendKind::of_url("mysql://root:hunter2@h/db").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
        assert!(error.to_string().contains("\"mysql\""));
    }
}
