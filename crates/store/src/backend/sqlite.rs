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

use super::{Backend, Dialect, SqliteStore, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{Columns, Insert, RecentRow, SyncRow};

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

    /// Multi-row `VALUES`, one statement per [`ROWS`] rows (below SQLite's bind-parameter
    /// limit); `at` is bound after each row's own values.
    async fn insert_rows<R: Insert>(
        tx: &mut Tx<Self>,
        rows: Vec<R>,
        at: Option<DbTime>,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(R::INSERT);
            insert.push_values(chunk, |mut values, row| {
                row.push_values(&mut values);
                if let Some(at) = at {
                    values.push_bind(at);
                }
            });
            insert.push(R::ON_CONFLICT);
            insert.build().execute(&mut **tx).await?;
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
            update.push_values(chunk, |mut values, write| write.push_values(&mut values));
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
