//! The store's own vocabulary in domain terms: what the worker hands in (an attempt with
//! its items and the next cursor), what it gets out (claimed jobs), and what readers get
//! (the status report of DESIGN.md).
//!
//! Nothing here is SQL: the backends translate these to rows, so callers never see sqlx.

use std::collections::BTreeMap;

use datacap_core::{
    BannerCode, CalendarItem, Channel, Color, CompanySettings, ConnectionMode, EmailItem,
    MemberConnection, MemberSettings, Provider, Reason, Thresholds,
};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// How the store behaves, independent of where the database is.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Connection pool size (PostgreSQL; SQLite's read pool). SQLite always writes through
    /// one connection.
    pub max_connections: u32,
    /// The classifier thresholds used when statuses are recomputed.
    pub thresholds: Thresholds,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            thresholds: Thresholds::default(),
        }
    }
}

/// One finished import attempt, as a connector reported it, with what it imported and
/// where the next poll starts.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub attempt_id: Uuid,
    pub member_id: String,
    pub channel: Channel,
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
    pub outcome: datacap_core::Outcome,
    pub http_status: Option<u16>,
    pub provider_error_code: Option<String>,
    pub provider_error_message: Option<String>,
    pub provider_request_id: Option<String>,
    /// Email item metadata imported by this attempt (only for the email channel).
    pub email_items: Vec<EmailItem>,
    /// Calendar item metadata imported by this attempt (only for the calendar channel).
    pub calendar_items: Vec<CalendarItem>,
    /// The provider cursor to resume from; `None` keeps the saved one.
    pub next_cursor: Option<String>,
    /// When the (member, channel) is next due.
    pub next_due_at: OffsetDateTime,
    /// The lease holder writing this attempt; its lease is released with the write. The
    /// sync state (cursor, due time, failure count) is only updated while the lease is
    /// this owner's, free, or expired.
    pub lease_owner: Option<String>,
}

/// Options of one atomic write.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// Tests only: fail the write at this point, after the earlier steps ran inside the
    /// transaction, to prove that nothing of it is kept.
    pub fail_at: Option<FailPoint>,
}

/// The steps of an attempt write, in order, where a test can inject a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    AfterAttemptRow,
    AfterItems,
    AfterSyncState,
    AfterMemberStatus,
    AfterBanners,
}

/// What one attempt write changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordResult {
    pub attempt_id: Uuid,
    /// False when another owner holds a live lease on the (member, channel): the attempt
    /// and the status are written, the cursor and due time are left to the holder.
    pub sync_state_updated: bool,
}

/// A (member, channel) claimed for polling, with what the connector needs to start. Whose
/// job it is (company, member, the member's address) is its [`JobContext`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub channel: Channel,
    pub cursor: Option<String>,
    pub consecutive_transient_failures: u32,
    pub lease_owner: String,
    pub lease_expires_at: OffsetDateTime,
    /// The owner whose lease on the job had expired when this claim took it over (a daemon
    /// that died or stalled mid-attempt); `None` when the job was free.
    pub reclaimed_from: Option<String>,
    /// The member's and company's settings and credential references as the claim read
    /// them (what [`crate::Store::job_context`] returns), so running the job needs no
    /// other read.
    pub context: JobContext,
}

impl Job {
    /// The company's provider (its context's).
    pub fn provider(&self) -> Provider {
        self.context.company.provider
    }
}

/// What a claimed job runs with: the settings that decide whether it may import at all
/// and the company's credential references (names of files and variables, never secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobContext {
    pub company_id: String,
    pub member_id: String,
    /// The member's address (the mailbox and calendar to read).
    pub member_email: String,
    pub company: CompanySettings,
    /// `connection` is the member's own grant state, if it has one.
    pub member: MemberSettings,
    pub credential_refs: BTreeMap<String, String>,
    /// Both the member and its company are active.
    pub active: bool,
}

/// A member's own grant, decrypted.
#[derive(Debug)]
pub struct MemberGrant {
    pub state: MemberConnection,
    pub scopes: Vec<String>,
    pub refresh_token: Option<secrecy::SecretString>,
    /// When the grant was stored or its state last changed.
    pub updated_at: OffsetDateTime,
}

/// What `make_due` did: channels now due, and channels left alone because an attempt
/// holds a live lease on them (its end sets their next due time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueReport {
    pub made_due: u64,
    pub leased: u64,
}

/// What `rotate_key` did: secrets re-sealed under the new key, and secrets that were under
/// it already (a re-run after some daemon wrote with the new key, or a second rotation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRotation {
    pub resealed: u64,
    pub already_new: u64,
}

/// What `apply` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub companies: usize,
    pub members: usize,
    pub members_deactivated: usize,
    pub companies_deactivated: usize,
    /// Webhook endpoints declared (upserted).
    pub webhooks: usize,
    /// Webhook endpoints the file no longer lists, deactivated.
    pub webhooks_deactivated: usize,
}

/// The Team members page as data: DESIGN.md's `datacap status` JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub companies: Vec<CompanyReport>,
}

/// One company in the status report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompanyReport {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    pub connection_mode: ConnectionMode,
    pub banners: Vec<BannerReport>,
    pub members: Vec<MemberReport>,
}

/// One banner: STATUS_MODEL.md's fields plus when it appeared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BannerReport {
    pub code: BannerCode,
    pub color: Color,
    pub count: u32,
    pub provider: Provider,
    pub message: String,
    pub resolution: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// One active member with its three icons.
///
/// DESIGN.md lists both the member's address and the email icon under `"email"`; a JSON
/// object cannot hold both, so the icon keeps `email` (as in `datacap classify`) and the
/// address is `email_address`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberReport {
    pub id: String,
    pub email_address: String,
    pub capture: IconReport,
    pub email: IconReport,
    pub calendar: IconReport,
}

/// One icon as stored in `member_status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IconReport {
    pub color: Color,
    pub reason: Reason,
    pub message: String,
    pub resolution: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub last_attempt_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    /// The channel's last successful import (`email` and `calendar`; always `null` for
    /// `capture`, which imports nothing itself); `null` until one succeeded.
    pub last_success: Option<LastSuccess>,
}

/// When a channel last imported successfully, and how many items that attempt brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LastSuccess {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub items: u64,
}

/// One row of a member's status history (`GET …/members/{member}/history`): an icon's
/// colour or reason changed; `from_*` is null for the icon's first evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusChangeReport {
    pub icon: datacap_core::Icon,
    pub from_color: Option<Color>,
    pub from_reason: Option<Reason>,
    pub to_color: Color,
    pub to_reason: Reason,
    pub attempt_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub changed_at: OffsetDateTime,
}

/// One import attempt as on-call reads it (`GET …/members/{member}/attempts`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptReport {
    pub attempt_id: String,
    pub member_id: String,
    pub channel: Channel,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    pub outcome: datacap_core::Outcome,
    pub http_status: Option<u16>,
    pub provider_error_code: Option<String>,
    pub provider_error_message: Option<String>,
    pub provider_request_id: Option<String>,
    pub items_imported: u64,
}

/// A pending sign-in of the connect flow, as `/connect/{provider}/start` stores it.
pub struct NewConnectState<'a> {
    /// SHA-256 (hex) of the `state` sent to the provider; the state itself is not stored.
    pub state_hash: &'a str,
    pub provider: Provider,
    pub company_id: &'a str,
    pub member_id: &'a str,
    /// The PKCE code verifier (sealed in the database).
    pub verifier: &'a secrecy::SecretString,
    pub expires_at: OffsetDateTime,
    /// The connect link the sign-in started from: its issue and expiry times (Unix
    /// seconds, as signed in it), for the callback to check it again.
    pub invite_issued: i64,
    pub invite_expires: i64,
}

/// A pending sign-in taken back by the callback.
pub struct ConnectState {
    pub provider: Provider,
    pub company_id: String,
    pub member_id: String,
    pub verifier: secrecy::SecretString,
    pub expires_at: OffsetDateTime,
    /// The issue and expiry times of the connect link it started from (Unix seconds);
    /// `None` for a sign-in stored before they were kept.
    pub invite_issued: Option<i64>,
    pub invite_expires: Option<i64>,
}

impl std::fmt::Debug for ConnectState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectState")
            .field("provider", &self.provider)
            .field("company_id", &self.company_id)
            .field("member_id", &self.member_id)
            .field("verifier", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("invite_issued", &self.invite_issued)
            .field("invite_expires", &self.invite_expires)
            .finish()
    }
}
