//! The SQLite backend: the embedded default, one file next to the daemon.
//!
//! SQLite allows one writer at a time, so every write goes through a pool of exactly one
//! connection and starts with `BEGIN IMMEDIATE` (the write lock is taken up front, never
//! upgraded halfway, which is what turns concurrent writers into `SQLITE_BUSY`). Reads use
//! a separate pool, which WAL lets run beside the writer. Foreign keys are on and a busy
//! timeout covers other processes on the same file.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, QueryBuilder, Sqlite};

use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{AttemptRow, IconRow, RecentRow};

pub(crate) type Db = Sqlite;
pub(crate) type Backend = SqliteStore;
pub(crate) type Tx = sqlx::Transaction<'static, Sqlite>;
const POSTGRES: bool = false;
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// A store on a SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    write: Pool<Sqlite>,
    read: Pool<Sqlite>,
    options: StoreOptions,
}

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
        Ok(SqliteStore {
            write,
            read,
            options,
        })
    }

    fn writer(&self) -> &Pool<Sqlite> {
        &self.write
    }

    fn reader(&self) -> &Pool<Sqlite> {
        &self.read
    }

    fn options(&self) -> &StoreOptions {
        &self.options
    }

    async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Closes both pools, waiting for connections to finish.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

// The queries, shared with the other backend: compiling the one file once per backend is
// the point (see shared.rs), so the duplicate-module lint does not apply.
#[allow(clippy::duplicate_mod)]
#[path = "shared.rs"]
mod queries;

// What the worker reads before running a job; compiled per backend like `queries`.
#[allow(clippy::duplicate_mod)]
#[path = "context.rs"]
mod context;

// The page's and API's reads, and the connect flow's pending sign-ins; compiled per
// backend like `queries`.
#[allow(clippy::duplicate_mod)]
#[path = "connect.rs"]
mod connect;
#[allow(clippy::duplicate_mod)]
#[path = "reads.rs"]
mod reads;

/// How an icon upsert resolves an existing row; shared by both bulk writers.
const ICON_CONFLICT: &str = " ON CONFLICT (member_id, icon) DO UPDATE SET color = excluded.color, \
     reason = excluded.reason, message = excluded.message, resolution = excluded.resolution, \
     since = excluded.since, last_attempt_id = excluded.last_attempt_id, \
     evaluated_at = excluded.evaluated_at";

/// Multi-row `VALUES`, in chunks below SQLite's bind-parameter limit.
async fn insert_attempts(tx: &mut Tx, rows: Vec<AttemptRow>) -> Result<(), StoreError> {
    for chunk in rows.chunks(400) {
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
async fn upsert_icons(tx: &mut Tx, rows: Vec<IconRow>, at: DbTime) -> Result<(), StoreError> {
    for chunk in rows.chunks(400) {
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
    tx: &mut Tx,
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
