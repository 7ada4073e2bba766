//! Plain rows that the queries hand to each dialect's bulk writers.
//!
//! Bulk inserts are where the dialects differ most in speed: SQLite takes multi-row
//! `VALUES`, PostgreSQL is much faster with one array per column and `UNNEST` (a handful
//! of parameters instead of thousands to bind and plan). `crate::queries` builds these
//! rows once; `backend/sqlite.rs` and `backend/postgres.rs` each write them their own way.
//! `columns!` gives each row both ways of binding its fields ([`Columns`]), from one list
//! of them in column order; a row written by an `INSERT` also says its statement's parts
//! once for both ([`Insert`]).

use sqlx::postgres::{PgArguments, PgBindIterExt};
use sqlx::query_builder::Separated;
use sqlx::{Postgres, Sqlite};

use crate::dbtime::DbTime;

/// A PostgreSQL statement with the values bound so far.
pub type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// A row's values in the order of its fields, bound the way each dialect's writer takes them.
pub trait Columns: Sized + Send + Sync {
    /// Binds the row's values, one each, as one row of a multi-row `VALUES` (SQLite).
    fn push_values(&self, values: &mut Separated<'_, Sqlite, &'static str>);
    /// Binds `rows`' values as one array per column, `$1` on, for `UNNEST` (PostgreSQL).
    fn bind_arrays<'q>(rows: &[Self], query: PgQuery<'q>) -> PgQuery<'q>;
}

/// A row written by an `INSERT`: what both dialects' statements share.
pub trait Insert: Columns {
    /// `INSERT INTO table (columns…) `, the columns in the order of the row's fields (then
    /// the time of the write, where the writer binds one).
    const INSERT: &'static str;
    /// PostgreSQL's `SELECT` of the rows from their arrays (`$1` on, in the order of the
    /// row's fields, each cast to its column's array type; then the time of the write).
    const UNNEST: &'static str;
    /// What follows the rows: an upsert's `ON CONFLICT …` clause, or nothing.
    const ON_CONFLICT: &'static str;
}

/// Implements [`Columns`] for row structs, each one's fields named in column order; the
/// names are checked against the struct's (all of them, each once), so none is left unbound.
macro_rules! columns {
    ($($row:ident { $($field:ident),* $(,)? })*) => {$(
        impl Columns for $row {
            fn push_values(&self, values: &mut Separated<'_, Sqlite, &'static str>) {
                let $row { $($field),* } = self;
                $(values.push_bind($field);)*
            }

            fn bind_arrays<'q>(rows: &[Self], query: PgQuery<'q>) -> PgQuery<'q> {
                query $(.bind(rows.iter().map(|row| &row.$field).bind_iter()))*
            }
        }
    )*};
}

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

columns! {
    AttemptRow {
        id, member_id, company_id, channel, provider, started_at, finished_at, outcome,
        http_status, error_code, error_message, request_id, items,
    }
    IconRow { member_id, icon, color, reason, message, resolution, since, last_attempt_id }
    SyncRow {
        member_id, channel, cursor, next_due_at, last_attempt_at, restart, transients,
        lease_owner,
    }
    EmailRow {
        member_id, provider_id, thread_id, sent_at, sender, participants, subject, attempt_id,
    }
    EventRow {
        member_id, provider_id, starts_at, ends_at, organizer, participants, subject,
        conference_link, cancelled, attempt_id,
    }
    ChangeRow { member_id, icon, from_color, from_reason, to_color, to_reason, attempt_id }
}

impl Insert for AttemptRow {
    const INSERT: &'static str = "INSERT INTO import_attempts (id, member_id, company_id, \
         channel, provider, started_at, finished_at, outcome, http_status, provider_error_code, \
         provider_error_message, provider_request_id, items_imported) ";
    const UNNEST: &'static str = "SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int8[], \
         $10::text[], $11::text[], $12::text[], $13::int8[])";
    const ON_CONFLICT: &'static str = "";
}

impl Insert for IconRow {
    const INSERT: &'static str = "INSERT INTO member_status (member_id, icon, color, reason, \
         message, resolution, since, last_attempt_id, evaluated_at) ";
    const UNNEST: &'static str = "SELECT member_id, icon, color, reason, message, resolution, \
         since, last_attempt_id, $9 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::text[], $7::timestamptz[], $8::text[]) AS u(member_id, icon, color, \
         reason, message, resolution, since, last_attempt_id)";
    const ON_CONFLICT: &'static str = " ON CONFLICT (member_id, icon) DO UPDATE SET \
         color = excluded.color, reason = excluded.reason, message = excluded.message, \
         resolution = excluded.resolution, since = excluded.since, \
         last_attempt_id = excluded.last_attempt_id, evaluated_at = excluded.evaluated_at";
}

impl Insert for EmailRow {
    const INSERT: &'static str = "INSERT INTO email_items (member_id, provider_id, thread_id, \
         sent_at, sender, participants, subject, attempt_id, imported_at) ";
    const UNNEST: &'static str = "SELECT *, $9 FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[])";
    const ON_CONFLICT: &'static str = " ON CONFLICT (member_id, provider_id) DO UPDATE SET \
         thread_id = excluded.thread_id, sent_at = excluded.sent_at, \
         sender = excluded.sender, participants = excluded.participants, \
         subject = excluded.subject, attempt_id = excluded.attempt_id, \
         imported_at = excluded.imported_at";
}

impl Insert for EventRow {
    const INSERT: &'static str = "INSERT INTO calendar_items (member_id, provider_id, \
         starts_at, ends_at, organizer, participants, subject, conference_link, cancelled, \
         attempt_id, imported_at) ";
    const UNNEST: &'static str = "SELECT *, $11 FROM UNNEST($1::text[], $2::text[], \
         $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::bool[], $10::text[])";
    const ON_CONFLICT: &'static str = " ON CONFLICT (member_id, provider_id) DO UPDATE SET \
         starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
         organizer = excluded.organizer, participants = excluded.participants, \
         subject = excluded.subject, conference_link = excluded.conference_link, \
         cancelled = excluded.cancelled, attempt_id = excluded.attempt_id, \
         imported_at = excluded.imported_at";
}

impl Insert for ChangeRow {
    const INSERT: &'static str = "INSERT INTO status_changes (member_id, icon, from_color, \
         from_reason, to_color, to_reason, attempt_id, changed_at) ";
    const UNNEST: &'static str = "SELECT *, $8 FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::text[], $5::text[], $6::text[], $7::text[])";
    const ON_CONFLICT: &'static str = "";
}
