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
use sqlx::{Pool, Sqlite};

use crate::error::StoreError;
use crate::model::StoreOptions;

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
