//! The SQLite backend: the embedded default, one file next to the daemon.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of exactly one
//! connection and starts with `BEGIN IMMEDIATE` (the write lock is taken up front, never
//! upgraded halfway, which is what turns concurrent writers into `SQLITE_BUSY`). Reads use
//! a separate pool, which WAL lets run beside the writer. Foreign keys are on and a busy
//! timeout covers other processes on the same file. The single writer serializes every
//! write, so no statement locks rows: the lock clauses are empty.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Sqlite};

use super::{Backend, Dialect, ICON_CONFLICT, SqliteStore, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{AttemptRow, ChangeRow, EmailRow, EventRow, IconRow, RecentRow, SyncRow};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite:` URL or a plain file path.
    pub async fn connect(location: &str, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let base = if location.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(location)?
        } else {
            SqliteConnectOptions::new().filename(location)
        };
        let base = base
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await?;
        // An in-memory database exists once per connection: read through the writer.
        let in_memory = location.contains(":memory:") || location.contains("mode=memory");
        let read = if in_memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .connect_with(base)
                .await?
        };
        Ok(Backend {
            write,
            read,
            options,
        })
    }
}

impl Dialect for Sqlite {
    const LOCK_MEMBERS: &'static str = "";
    const LOCK_ROWS: &'static str = "";
    const LOCK_FOR_UPDATE: &'static str = "";
    const SKIP_LOCKED_JOBS: &'static str = "";
    const SKIP_LOCKED_DELIVERIES: &'static str = "";
    /// Each member is a bound id and two indexed queries.
    const RECOMPUTE_CHUNK: usize = 100;

    async fn begin_write(pool: &Pool<Sqlite>) -> Result<Tx<Sqlite>, StoreError> {
        Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn migrate(pool: &Pool<Sqlite>) -> Result<(), StoreError> {
        MIGRATOR.run(pool).await?;
        Ok(())
    }

    /// SQLite has no server: nothing to report.
    async fn server_settings(_pool: &Pool<Sqlite>) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// Multi-row `VALUES`, in chunks below SQLite's bind-parameter limit.
    async fn insert_attempts(tx: &mut Tx<Self>, rows: Vec<AttemptRow>) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO import_attempts (id, member_id, company_id, channel, provider, \
                 started_at, finished_at, outcome, http_status, provider_error_code, \
                 provider_error_message, provider_request_id, items_imported) ",
            );
            insert.push_values(chunk, |mut row, attempt| {
                row.push_bind(attempt.id.clone())
                    .push_bind(attempt.member_id.clone())
                    .push_bind(attempt.company_id.clone())
                    .push_bind(attempt.channel)
                    .push_bind(attempt.provider)
                    .push_bind(attempt.started_at)
                    .push_bind(attempt.finished_at)
                    .push_bind(attempt.outcome)
                    .push_bind(attempt.http_status)
                    .push_bind(attempt.error_code.clone())
                    .push_bind(attempt.error_message.clone())
                    .push_bind(attempt.request_id.clone())
                    .push_bind(attempt.items);
            });
            insert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Multi-row upsert of icons, in chunks below SQLite's bind-parameter limit.
    async fn upsert_icons(
        tx: &mut Tx<Self>,
        rows: Vec<IconRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO member_status (member_id, icon, color, reason, message, resolution, \
                 since, last_attempt_id, evaluated_at) ",
            );
            upsert.push_values(chunk, |mut row, icon| {
                row.push_bind(icon.member_id.clone())
                    .push_bind(icon.icon)
                    .push_bind(icon.color)
                    .push_bind(icon.reason)
                    .push_bind(icon.message.clone())
                    .push_bind(icon.resolution.clone())
                    .push_bind(icon.since)
                    .push_bind(icon.last_attempt_id.clone())
                    .push_bind(at);
            });
            upsert.push(ICON_CONFLICT);
            upsert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The latest `limit` attempts of each member's channels, oldest first per channel: one
    /// indexed `LIMIT` query per (member, channel), cheap in-process, and independent of how
    /// many attempts retention keeps.
    async fn recent_attempts(
        tx: &mut Tx<Self>,
        member_ids: &[String],
        limit: i64,
    ) -> Result<Vec<RecentRow>, StoreError> {
        let mut rows = Vec::new();
        for member_id in member_ids {
            for channel in ["email", "calendar"] {
                let mut latest_first: Vec<RecentRow> = sqlx::query_as(
                    "SELECT member_id, id, channel, finished_at, outcome FROM import_attempts \
                     WHERE member_id = $1 AND channel = $2 \
                     ORDER BY finished_at DESC, id DESC LIMIT $3",
                )
                .bind(member_id)
                .bind(channel)
                .bind(limit)
                .fetch_all(&mut **tx)
                .await?;
                latest_first.reverse();
                rows.extend(latest_first);
            }
        }
        Ok(rows)
    }

    /// `column IN (?, ?, …)`: SQLite has no arrays; callers keep lists below [`ROWS`].
    fn push_in(query: &mut QueryBuilder<Sqlite>, column: &str, ids: Vec<String>) {
        query.push(column).push(" IN (");
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        query.push(")");
    }

    /// The batch's sync-state updates as multi-row `VALUES`; returns the (member, channel)
    /// pairs whose row was updated (free, expired, or leased by the attempt's owner).
    async fn update_sync_state(
        tx: &mut Tx<Self>,
        rows: Vec<SyncRow>,
        at: DbTime,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut updated = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS) {
            // `VALUES` columns are column1, column2, ….
            let mut update = QueryBuilder::<Sqlite>::new(
                "UPDATE sync_state SET cursor = COALESCE(v.column3, sync_state.cursor), \
                 next_due_at = v.column4, last_attempt_at = v.column5, \
                 consecutive_transient_failures = CASE WHEN v.column6 THEN v.column7 \
                 ELSE sync_state.consecutive_transient_failures + v.column7 END, \
                 lease_owner = NULL, lease_expires_at = NULL FROM (",
            );
            update.push_values(chunk, |mut row, write| {
                row.push_bind(write.member_id.clone())
                    .push_bind(write.channel)
                    .push_bind(write.cursor.clone())
                    .push_bind(write.next_due_at)
                    .push_bind(write.last_attempt_at)
                    .push_bind(write.restart)
                    .push_bind(write.transients)
                    .push_bind(write.lease_owner.clone());
            });
            update.push(
                ") AS v WHERE sync_state.member_id = v.column1 AND sync_state.channel = v.column2 \
                 AND (sync_state.lease_owner IS NULL OR sync_state.lease_owner = v.column8 \
                 OR sync_state.lease_expires_at IS NULL OR sync_state.lease_expires_at <= ",
            );
            update.push_bind(at);
            update.push(") RETURNING sync_state.member_id, sync_state.channel");
            let rows: Vec<(String, String)> = update.build_query_as().fetch_all(&mut **tx).await?;
            updated.extend(rows);
        }
        Ok(updated)
    }

    /// Email items as multi-row `VALUES`, upserted on (member, provider id).
    async fn upsert_email_items(
        tx: &mut Tx<Self>,
        rows: Vec<EmailRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO email_items (member_id, provider_id, thread_id, sent_at, sender, \
                 participants, subject, attempt_id, imported_at) ",
            );
            upsert.push_values(chunk, |mut row, item| {
                row.push_bind(item.member_id.clone())
                    .push_bind(item.provider_id.clone())
                    .push_bind(item.thread_id.clone())
                    .push_bind(item.sent_at)
                    .push_bind(item.sender.clone())
                    .push_bind(item.participants.clone())
                    .push_bind(item.subject.clone())
                    .push_bind(item.attempt_id.clone())
                    .push_bind(at);
            });
            upsert.push(
                " ON CONFLICT (member_id, provider_id) DO UPDATE SET \
                 thread_id = excluded.thread_id, sent_at = excluded.sent_at, \
                 sender = excluded.sender, participants = excluded.participants, \
                 subject = excluded.subject, attempt_id = excluded.attempt_id, \
                 imported_at = excluded.imported_at",
            );
            upsert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Calendar items as multi-row `VALUES`, upserted on (member, provider id).
    async fn upsert_calendar_items(
        tx: &mut Tx<Self>,
        rows: Vec<EventRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO calendar_items (member_id, provider_id, starts_at, ends_at, \
                 organizer, participants, subject, conference_link, cancelled, attempt_id, \
                 imported_at) ",
            );
            upsert.push_values(chunk, |mut row, item| {
                row.push_bind(item.member_id.clone())
                    .push_bind(item.provider_id.clone())
                    .push_bind(item.starts_at)
                    .push_bind(item.ends_at)
                    .push_bind(item.organizer.clone())
                    .push_bind(item.participants.clone())
                    .push_bind(item.subject.clone())
                    .push_bind(item.conference_link.clone())
                    .push_bind(item.cancelled)
                    .push_bind(item.attempt_id.clone())
                    .push_bind(at);
            });
            upsert.push(
                " ON CONFLICT (member_id, provider_id) DO UPDATE SET \
                 starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
                 organizer = excluded.organizer, participants = excluded.participants, \
                 subject = excluded.subject, conference_link = excluded.conference_link, \
                 cancelled = excluded.cancelled, attempt_id = excluded.attempt_id, \
                 imported_at = excluded.imported_at",
            );
            upsert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Status history rows as multi-row `VALUES`.
    async fn insert_changes(
        tx: &mut Tx<Self>,
        rows: Vec<ChangeRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO status_changes (member_id, icon, from_color, from_reason, \
                 to_color, to_reason, attempt_id, changed_at) ",
            );
            insert.push_values(chunk, |mut row, change| {
                row.push_bind(change.member_id.clone())
                    .push_bind(change.icon)
                    .push_bind(change.from_color.clone())
                    .push_bind(change.from_reason.clone())
                    .push_bind(change.to_color)
                    .push_bind(change.to_reason)
                    .push_bind(change.attempt_id.clone())
                    .push_bind(at);
            });
            insert.build().execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Leases the claimed (member, channel) rows to `owner` until `expires`: multi-row
    /// `VALUES`, one statement per [`ROWS`] keys.
    async fn lease_rows(
        tx: &mut Tx<Self>,
        keys: Vec<(String, String)>,
        owner: &str,
        expires: DbTime,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(ROWS) {
            let mut update = QueryBuilder::<Sqlite>::new("UPDATE sync_state SET lease_owner = ");
            update.push_bind(owner.to_owned());
            update.push(", lease_expires_at = ");
            update.push_bind(expires);
            update.push(" FROM (");
            update.push_values(chunk, |mut row, (member_id, channel)| {
                row.push_bind(member_id.clone()).push_bind(channel.clone());
            });
            update.push(
                ") AS v WHERE sync_state.member_id = v.column1 AND sync_state.channel = v.column2",
            );
            update.build().execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Rows per multi-row statement: 400 rows of up to 11 columns stay below SQLite's
/// bind-parameter limit (32,766).
const ROWS: usize = 400;
