//! The two databases: what truly differs between SQLite and PostgreSQL, behind one
//! [`Dialect`] trait, and the store type both share.
//!
//! Every query is written once, in `crate::queries`, as a method of [`Backend<D>`] for
//! any `D: Dialect` (`sqlx::Sqlite` or `sqlx::Postgres`). A dialect supplies only:
//! - its pools and write transactions (SQLite: one writer connection and
//!   `BEGIN IMMEDIATE`; PostgreSQL: one pool), its migrations, its server settings;
//! - the row-lock clauses PostgreSQL needs because several daemons share it
//!   (`FOR NO KEY UPDATE`, `FOR UPDATE … SKIP LOCKED`; empty on SQLite, whose single
//!   writer already serializes writers);
//! - `IN` lists (SQLite: one bound value each; PostgreSQL: one array) and the bulk
//!   writers (SQLite: multi-row `VALUES`; PostgreSQL: one array per column and `UNNEST`),
//!   one generic writer each for the rows of `crate::rows`.

mod postgres;
mod sqlite;

use std::future::Future;

use sqlx::{Pool, QueryBuilder};

use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{Insert, RecentRow, SyncRow};
use crate::sql::{Driver, Statement};

/// A write transaction of dialect `D`.
pub(crate) type Tx<D> = sqlx::Transaction<'static, D>;

/// The store on a SQLite file (the embedded default).
pub type SqliteStore = Backend<sqlx::Sqlite>;

/// The store on a PostgreSQL database (several daemons sharing it).
pub type PostgresStore = Backend<sqlx::Postgres>;

/// What differs between the two databases; everything else is in `crate::queries`.
pub trait Dialect: Driver {
    /// Appended to a select of `members m` (joined to others) in `ORDER BY m.id` order:
    /// locks those member rows until the transaction ends. Every write that recomputes a
    /// member's status takes it first, members in id order, then company rows in id
    /// order: two writers of one member take turns (the second reads the first's
    /// attempts and statuses), and two writers of overlapping members or companies never
    /// wait on each other in a cycle. `NO KEY UPDATE` does not conflict with the
    /// `KEY SHARE` locks that foreign-key checks of other writers' inserts take.
    const LOCK_MEMBERS: &'static str;
    /// [`Dialect::LOCK_MEMBERS`] for a select of one table (members or companies).
    const LOCK_ROWS: &'static str;
    /// Appended to a select of `member_grants`: the rows a key rotation re-seals.
    const LOCK_FOR_UPDATE: &'static str;
    /// Appended to the claim of due jobs (`sync_state s`): rows another claimer is
    /// taking are skipped, not waited for.
    const SKIP_LOCKED_JOBS: &'static str;
    /// Appended to the claim of webhook deliveries (`webhook_deliveries d`).
    const SKIP_LOCKED_DELIVERIES: &'static str;
    /// Members recomputed per round of statuses.
    const RECOMPUTE_CHUNK: usize;

    /// Begins a write transaction.
    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = Result<Tx<Self>, StoreError>> + Send;
    /// Applies every migration of this database's folder.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The server's settings that decide how the store performs at scale, by name.
    fn server_settings(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// `column IN (…)` of `ids`, in the dialect's form.
    fn push_in(query: &mut QueryBuilder<Self>, column: &str, ids: Vec<String>);

    /// Writes `rows` (an insert, or an upsert: see [`Insert`]); `at`, when given, is the
    /// time of the write, bound after each row's own values.
    fn insert_rows<R: Insert>(
        tx: &mut Tx<Self>,
        rows: Vec<R>,
        at: Option<DbTime>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The latest `limit` attempts of each member's channels, oldest first per channel.
    fn recent_attempts(
        tx: &mut Tx<Self>,
        member_ids: &[String],
        limit: i64,
    ) -> impl Future<Output = Result<Vec<RecentRow>, StoreError>> + Send;
    /// The batch's sync-state updates; returns the (member, channel) pairs whose row was
    /// updated (free, expired, or leased by the attempt's owner).
    fn update_sync_state(
        tx: &mut Tx<Self>,
        rows: Vec<SyncRow>,
        at: DbTime,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// Leases the claimed (member, channel) rows to `owner` until `expires`.
    fn lease_rows(
        tx: &mut Tx<Self>,
        keys: Vec<(String, String)>,
        owner: &str,
        expires: DbTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A store on one database: a pool for writes, one for reads (the same pool on
/// PostgreSQL) and the options.
#[derive(Debug)]
pub struct Backend<D: sqlx::Database> {
    write: Pool<D>,
    read: Pool<D>,
    options: StoreOptions,
}

impl<D: Dialect> Clone for Backend<D> {
    fn clone(&self) -> Self {
        Backend {
            write: self.write.clone(),
            read: self.read.clone(),
            options: self.options.clone(),
        }
    }
}

impl<D: Dialect> Backend<D> {
    pub(crate) fn reader(&self) -> &Pool<D> {
        &self.read
    }

    pub(crate) fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) async fn begin_write(&self) -> Result<Tx<D>, StoreError> {
        D::begin_write(&self.write).await
    }

    /// Runs one statement in a write transaction of its own; returns how many rows it
    /// affected.
    pub(crate) async fn write_one(&self, statement: Statement<'_, D>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let affected = statement.execute(&mut tx).await?;
        tx.commit().await?;
        Ok(affected)
    }

    /// Applies every migration of this backend's folder.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        D::migrate(&self.write).await
    }

    /// The server's settings that decide how the store performs at scale, by name (empty
    /// on SQLite): the daemon warns about the ones that hurt, the benchmark records them.
    pub async fn server_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        D::server_settings(&self.read).await
    }

    /// Closes the pools, waiting for connections to finish.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

impl<D: Dialect> crate::sql::Builder<D> {
    /// `column IN (…)` of `ids`, in the dialect's form (see [`Dialect::push_in`]).
    pub(crate) fn push_in(&mut self, column: &str, ids: Vec<String>) -> &mut Self {
        D::push_in(self.inner(), column, ids);
        self
    }
}
