//! The PostgreSQL backend: for deployments that run several daemons against one database.
//!
//! Replicas claim due work with `FOR UPDATE SKIP LOCKED` (in the shared queries) so no
//! (member, channel) is polled by two of them at once; everything else is the same SQL
//! as SQLite.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use crate::error::StoreError;
use crate::model::StoreOptions;

pub(crate) type Db = Postgres;
pub(crate) type Backend = PostgresStore;
pub(crate) type Tx = sqlx::Transaction<'static, Postgres>;
const POSTGRES: bool = true;
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A store on a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: Pool<Postgres>,
    options: StoreOptions,
}

impl PostgresStore {
    /// Connects to a `postgres://` or `postgresql://` URL.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(PostgresStore { pool, options })
    }

    fn writer(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn reader(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn options(&self) -> &StoreOptions {
        &self.options
    }

    async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
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
