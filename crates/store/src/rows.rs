//! Plain rows that the queries hand to each dialect's bulk writers.
//!
//! Bulk inserts are where the dialects differ most in speed: SQLite takes multi-row
//! `VALUES`, PostgreSQL is much faster with one array per column and `UNNEST` (a handful
//! of parameters instead of thousands to bind and plan). `crate::queries` builds these
//! rows once; `backend/sqlite.rs` and `backend/postgres.rs` each write them their own way.

use crate::dbtime::DbTime;

/// One `import_attempts` row.
pub struct AttemptRow {
    pub id: String,
    pub member_id: String,
    pub company_id: String,
    pub channel: &'static str,
    pub provider: &'static str,
    pub started_at: DbTime,
    pub finished_at: DbTime,
    pub outcome: &'static str,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub request_id: Option<String>,
    pub items: i64,
}

/// One `member_status` row (the icon's colour follows from its reason).
pub struct IconRow {
    pub member_id: String,
    pub icon: &'static str,
    pub color: &'static str,
    pub reason: &'static str,
    pub message: String,
    pub resolution: String,
    pub since: DbTime,
    pub last_attempt_id: Option<String>,
}

/// One recent attempt as the classifier reads it: member id, attempt id, channel,
/// finished at, outcome.
pub type RecentRow = (String, String, String, DbTime, String);

/// One `sync_state` update: a (member, channel)'s latest attempt of the batch.
pub struct SyncRow {
    pub member_id: String,
    pub channel: &'static str,
    /// `None` keeps the stored cursor.
    pub cursor: Option<String>,
    pub next_due_at: DbTime,
    pub last_attempt_at: DbTime,
    /// The run of transient failures restarts at `transients` (a non-transient outcome
    /// was among the attempts) instead of adding to the stored one.
    pub restart: bool,
    pub transients: i64,
    pub lease_owner: Option<String>,
}

/// One `email_items` upsert.
pub struct EmailRow {
    pub member_id: String,
    pub provider_id: String,
    pub thread_id: Option<String>,
    pub sent_at: Option<DbTime>,
    pub sender: Option<String>,
    /// A JSON list of addresses.
    pub participants: String,
    pub subject: Option<String>,
    pub attempt_id: String,
}

/// One `calendar_items` upsert.
pub struct EventRow {
    pub member_id: String,
    pub provider_id: String,
    pub starts_at: Option<DbTime>,
    pub ends_at: Option<DbTime>,
    pub organizer: Option<String>,
    /// A JSON list of addresses.
    pub participants: String,
    pub subject: Option<String>,
    pub conference_link: Option<String>,
    pub cancelled: bool,
    pub attempt_id: String,
}

/// One `status_changes` row.
pub struct ChangeRow {
    pub member_id: String,
    pub icon: &'static str,
    pub from_color: Option<String>,
    pub from_reason: Option<String>,
    pub to_color: &'static str,
    pub to_reason: &'static str,
    pub attempt_id: Option<String>,
}
