//! The PostgreSQL backend: for deployments that run several daemons against one database.
//!
//! Replicas claim due work with `FOR UPDATE SKIP LOCKED` (in the shared queries) so no
//! (member, channel) is polled by two of them at once; everything else is the same SQL
//! as SQLite.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{AttemptRow, IconRow, RecentRow};

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

/// One array per column and `UNNEST`: nine parameters to bind and plan, whatever the
/// number of rows.
async fn insert_attempts(tx: &mut Tx, rows: Vec<AttemptRow>) -> Result<(), StoreError> {
    let mut columns = AttemptColumns::default();
    for row in rows {
        columns.id.push(row.id);
        columns.member_id.push(row.member_id);
        columns.company_id.push(row.company_id);
        columns.channel.push(row.channel);
        columns.provider.push(row.provider);
        columns.started_at.push(row.started_at.0);
        columns.finished_at.push(row.finished_at.0);
        columns.outcome.push(row.outcome);
        columns.http_status.push(row.http_status);
        columns.error_code.push(row.error_code);
        columns.error_message.push(row.error_message);
        columns.request_id.push(row.request_id);
        columns.items.push(row.items);
    }
    sqlx::query(
        "INSERT INTO import_attempts (id, member_id, company_id, channel, provider, \
         started_at, finished_at, outcome, http_status, provider_error_code, \
         provider_error_message, provider_request_id, items_imported) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::timestamptz[], $7::timestamptz[], $8::text[], $9::int8[], $10::text[], \
         $11::text[], $12::text[], $13::int8[])",
    )
    .bind(columns.id)
    .bind(columns.member_id)
    .bind(columns.company_id)
    .bind(columns.channel)
    .bind(columns.provider)
    .bind(columns.started_at)
    .bind(columns.finished_at)
    .bind(columns.outcome)
    .bind(columns.http_status)
    .bind(columns.error_code)
    .bind(columns.error_message)
    .bind(columns.request_id)
    .bind(columns.items)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Default)]
struct AttemptColumns {
    id: Vec<String>,
    member_id: Vec<String>,
    company_id: Vec<String>,
    channel: Vec<&'static str>,
    provider: Vec<&'static str>,
    started_at: Vec<time::OffsetDateTime>,
    finished_at: Vec<time::OffsetDateTime>,
    outcome: Vec<&'static str>,
    http_status: Vec<Option<i64>>,
    error_code: Vec<Option<String>>,
    error_message: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    items: Vec<i64>,
}

/// Icons as one array per column and `UNNEST`.
async fn upsert_icons(tx: &mut Tx, rows: Vec<IconRow>, at: DbTime) -> Result<(), StoreError> {
    let count = rows.len();
    let (mut member_id, mut icon, mut color, mut reason) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    let (mut message, mut resolution, mut since, mut last_attempt_id) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    for row in rows {
        member_id.push(row.member_id);
        icon.push(row.icon);
        color.push(row.color);
        reason.push(row.reason);
        message.push(row.message);
        resolution.push(row.resolution);
        since.push(row.since.0);
        last_attempt_id.push(row.last_attempt_id);
    }
    let sql = format!(
        "INSERT INTO member_status (member_id, icon, color, reason, message, resolution, \
         since, last_attempt_id, evaluated_at) \
         SELECT member_id, icon, color, reason, message, resolution, since, last_attempt_id, $9 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::timestamptz[], $8::text[]) \
         AS u(member_id, icon, color, reason, message, resolution, since, last_attempt_id){ICON_CONFLICT}"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(member_id)
        .bind(icon)
        .bind(color)
        .bind(reason)
        .bind(message)
        .bind(resolution)
        .bind(since)
        .bind(last_attempt_id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The latest `limit` attempts of each member's channels, oldest first per channel: one
/// statement with a `LATERAL` indexed `LIMIT` per (member, channel), independent of how
/// many attempts retention keeps.
async fn recent_attempts(
    tx: &mut Tx,
    member_ids: &[String],
    limit: i64,
) -> Result<Vec<RecentRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT k.member_id, a.id, a.channel, a.finished_at, a.outcome \
         FROM UNNEST($1::text[]) AS k(member_id) \
         CROSS JOIN (VALUES ('email'), ('calendar')) AS c(channel) \
         CROSS JOIN LATERAL (SELECT b.id, b.channel, b.finished_at, b.outcome \
         FROM import_attempts b WHERE b.member_id = k.member_id AND b.channel = c.channel \
         ORDER BY b.finished_at DESC, b.id DESC LIMIT $2) a \
         ORDER BY k.member_id, a.channel, a.finished_at, a.id",
    )
    .bind(member_ids)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}
