//! The PostgreSQL backend: for deployments that run several daemons against one database.
//!
//! Replicas claim due work with `FOR UPDATE SKIP LOCKED` so no (member, channel) is
//! polled by two of them at once, and every write that recomputes statuses locks its
//! member rows, then its company rows, in id order (see [`Dialect::LOCK_MEMBERS`]).
//! Lists and bulk writes go as one array per column (`= ANY($1)`, `UNNEST`), so a
//! statement's text, and its prepared plan, is the same whatever the number of rows.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{FromRow, Pool, Postgres, QueryBuilder};

use super::{Backend, Dialect, PostgresStore, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{Columns, Insert, RecentRow, SyncRow};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The settings [`Dialect::server_settings`] reads.
const SERVER_SETTINGS: [&str; 6] = [
    "autovacuum",
    "checkpoint_timeout",
    "max_wal_size",
    "server_version",
    "shared_buffers",
    "synchronous_commit",
];

impl PostgresStore {
    /// Connects to a `postgres://` or `postgresql://` URL.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<PostgresStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // One pool serves reads and writes.
        Ok(Backend {
            write: pool.clone(),
            read: pool,
            options,
        })
    }
}

impl Dialect for Postgres {
    const LOCK_MEMBERS: &'static str = " FOR NO KEY UPDATE OF m";
    const LOCK_ROWS: &'static str = " FOR NO KEY UPDATE";
    const LOCK_FOR_UPDATE: &'static str = " FOR UPDATE";
    /// Only `s` is locked; the ranking is a plain subquery.
    const SKIP_LOCKED_JOBS: &'static str = " FOR UPDATE OF s SKIP LOCKED";
    const SKIP_LOCKED_DELIVERIES: &'static str = " FOR UPDATE OF d SKIP LOCKED";
    /// Ids go as one array parameter, so a round can be large.
    const RECOMPUTE_CHUNK: usize = 1_000;

    async fn begin_write(pool: &Pool<Postgres>) -> Result<Tx<Postgres>, StoreError> {
        Ok(pool.begin().await?)
    }

    async fn migrate(pool: &Pool<Postgres>) -> Result<(), StoreError> {
        MIGRATOR.run(pool).await?;
        Ok(())
    }

    async fn server_settings(pool: &Pool<Postgres>) -> Result<Vec<(String, String)>, StoreError> {
        let names: Vec<String> = SERVER_SETTINGS
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        Ok(sqlx::query_as(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1) \
             ORDER BY name",
        )
        .bind(names)
        .fetch_all(pool)
        .await?)
    }

    /// The latest `limit` attempts of each member's channels, oldest first per channel: one
    /// statement with a `LATERAL` indexed `LIMIT` per (member, channel), independent of how
    /// many attempts retention keeps.
    async fn recent_attempts(
        tx: &mut Tx<Self>,
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

    /// One array per column and `UNNEST` (see [`Insert::UNNEST`]): a handful of parameters
    /// to bind and plan, and the same statement text, whatever the number of rows. Nothing
    /// is sent for no rows.
    async fn insert_rows<R: Insert>(
        tx: &mut Tx<Self>,
        rows: Vec<R>,
        at: Option<DbTime>,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!("{}{}{}", R::INSERT, R::UNNEST, R::ON_CONFLICT);
        let mut insert = R::bind_arrays(&rows, sqlx::query(sqlx::AssertSqlSafe(sql)));
        if let Some(at) = at {
            insert = insert.bind(at);
        }
        insert.execute(&mut **tx).await?;
        Ok(())
    }

    /// `column = ANY($n)` with the ids as one array: the statement's text, and so its prepared
    /// plan, is the same whatever the number of ids.
    fn push_in(query: &mut QueryBuilder<Postgres>, column: &str, ids: Vec<String>) {
        query.push(column).push(" = ANY(").push_bind(ids).push(")");
    }

    /// The batch's sync-state updates as one array per column; returns the (member, channel)
    /// pairs whose row was updated (free, expired, or leased by the attempt's owner).
    async fn update_sync_state(
        tx: &mut Tx<Self>,
        rows: Vec<SyncRow>,
        at: DbTime,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let update = sqlx::query(
            "UPDATE sync_state SET cursor = COALESCE(v.cursor, sync_state.cursor), \
             next_due_at = v.next_due_at, last_attempt_at = v.last_attempt_at, \
             consecutive_transient_failures = CASE WHEN v.restart THEN v.transients \
             ELSE sync_state.consecutive_transient_failures + v.transients END, \
             lease_owner = NULL, lease_expires_at = NULL \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
             $5::timestamptz[], $6::bool[], $7::int8[], $8::text[]) \
             AS v(member_id, channel, cursor, next_due_at, last_attempt_at, restart, transients, \
             lease_owner) \
             WHERE sync_state.member_id = v.member_id AND sync_state.channel = v.channel \
             AND (sync_state.lease_owner IS NULL OR sync_state.lease_owner = v.lease_owner \
             OR sync_state.lease_expires_at IS NULL OR sync_state.lease_expires_at <= $9) \
             RETURNING sync_state.member_id, sync_state.channel",
        );
        Ok(SyncRow::bind_arrays(&rows, update)
            .bind(at)
            .try_map(|row| <(String, String)>::from_row(&row))
            .fetch_all(&mut **tx)
            .await?)
    }

    /// Leases the claimed (member, channel) rows to `owner` until `expires`: one statement,
    /// the keys as two arrays.
    async fn lease_rows(
        tx: &mut Tx<Self>,
        keys: Vec<(String, String)>,
        owner: &str,
        expires: DbTime,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (member_id, channel): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        sqlx::query(
            "UPDATE sync_state SET lease_owner = $3, lease_expires_at = $4 \
             FROM UNNEST($1::text[], $2::text[]) AS k(member_id, channel) \
             WHERE sync_state.member_id = k.member_id AND sync_state.channel = k.channel",
        )
        .bind(member_id)
        .bind(channel)
        .bind(owner)
        .bind(expires)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
