//! The PostgreSQL backend: for deployments that run several daemons against one database.
//!
//! Replicas claim due work with `FOR UPDATE SKIP LOCKED` so no (member, channel) is
//! polled by two of them at once, and every write that recomputes statuses locks its
//! member rows, then its company rows, in id order (see [`Dialect::LOCK_MEMBERS`]).
//! Lists and bulk writes go as one array per column (`= ANY($1)`, `UNNEST`), so a
//! statement's text, and its prepared plan, is the same whatever the number of rows.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres, QueryBuilder};

use super::{Backend, Dialect, ICON_CONFLICT, PostgresStore, Tx};
use crate::dbtime::DbTime;
use crate::error::StoreError;
use crate::model::StoreOptions;
use crate::rows::{AttemptRow, ChangeRow, EmailRow, EventRow, IconRow, RecentRow, SyncRow};

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

    /// One array per column and `UNNEST`: nine parameters to bind and plan, whatever the
    /// number of rows.
    async fn insert_attempts(tx: &mut Tx<Self>, rows: Vec<AttemptRow>) -> Result<(), StoreError> {
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

    /// Icons as one array per column and `UNNEST`.
    async fn upsert_icons(
        tx: &mut Tx<Self>,
        rows: Vec<IconRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
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
        let count = rows.len();
        let (mut member_id, mut channel, mut cursor, mut next_due_at) = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        let (mut last_attempt_at, mut restart, mut transients, mut lease_owner) = (
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
            Vec::with_capacity(count),
        );
        for row in rows {
            member_id.push(row.member_id);
            channel.push(row.channel);
            cursor.push(row.cursor);
            next_due_at.push(row.next_due_at.0);
            last_attempt_at.push(row.last_attempt_at.0);
            restart.push(row.restart);
            transients.push(row.transients);
            lease_owner.push(row.lease_owner);
        }
        Ok(sqlx::query_as(
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
        )
        .bind(member_id)
        .bind(channel)
        .bind(cursor)
        .bind(next_due_at)
        .bind(last_attempt_at)
        .bind(restart)
        .bind(transients)
        .bind(lease_owner)
        .bind(at)
        .fetch_all(&mut **tx)
        .await?)
    }

    /// Email items as one array per column and `UNNEST`, upserted on (member, provider id).
    async fn upsert_email_items(
        tx: &mut Tx<Self>,
        rows: Vec<EmailRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut columns: (
            Vec<_>,
            Vec<_>,
            Vec<_>,
            Vec<_>,
            Vec<_>,
            Vec<_>,
            Vec<_>,
            Vec<_>,
        ) = Default::default();
        for row in rows {
            columns.0.push(row.member_id);
            columns.1.push(row.provider_id);
            columns.2.push(row.thread_id);
            columns.3.push(row.sent_at.map(|at| at.0));
            columns.4.push(row.sender);
            columns.5.push(row.participants);
            columns.6.push(row.subject);
            columns.7.push(row.attempt_id);
        }
        sqlx::query(
            "INSERT INTO email_items (member_id, provider_id, thread_id, sent_at, sender, \
             participants, subject, attempt_id, imported_at) \
             SELECT *, $9 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], \
             $5::text[], $6::text[], $7::text[], $8::text[]) \
             ON CONFLICT (member_id, provider_id) DO UPDATE SET \
             thread_id = excluded.thread_id, sent_at = excluded.sent_at, \
             sender = excluded.sender, participants = excluded.participants, \
             subject = excluded.subject, attempt_id = excluded.attempt_id, \
             imported_at = excluded.imported_at",
        )
        .bind(columns.0)
        .bind(columns.1)
        .bind(columns.2)
        .bind(columns.3)
        .bind(columns.4)
        .bind(columns.5)
        .bind(columns.6)
        .bind(columns.7)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Calendar items as one array per column and `UNNEST`, upserted on (member, provider id).
    async fn upsert_calendar_items(
        tx: &mut Tx<Self>,
        rows: Vec<EventRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (mut member_id, mut provider_id, mut starts_at, mut ends_at, mut organizer) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut participants, mut subject, mut link, mut cancelled, mut attempt_id) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            member_id.push(row.member_id);
            provider_id.push(row.provider_id);
            starts_at.push(row.starts_at.map(|at| at.0));
            ends_at.push(row.ends_at.map(|at| at.0));
            organizer.push(row.organizer);
            participants.push(row.participants);
            subject.push(row.subject);
            link.push(row.conference_link);
            cancelled.push(row.cancelled);
            attempt_id.push(row.attempt_id);
        }
        sqlx::query(
            "INSERT INTO calendar_items (member_id, provider_id, starts_at, ends_at, organizer, \
             participants, subject, conference_link, cancelled, attempt_id, imported_at) \
             SELECT *, $11 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], \
             $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[], \
             $10::text[]) \
             ON CONFLICT (member_id, provider_id) DO UPDATE SET \
             starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
             organizer = excluded.organizer, participants = excluded.participants, \
             subject = excluded.subject, conference_link = excluded.conference_link, \
             cancelled = excluded.cancelled, attempt_id = excluded.attempt_id, \
             imported_at = excluded.imported_at",
        )
        .bind(member_id)
        .bind(provider_id)
        .bind(starts_at)
        .bind(ends_at)
        .bind(organizer)
        .bind(participants)
        .bind(subject)
        .bind(link)
        .bind(cancelled)
        .bind(attempt_id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Status history rows as one array per column and `UNNEST`.
    async fn insert_changes(
        tx: &mut Tx<Self>,
        rows: Vec<ChangeRow>,
        at: DbTime,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (mut member_id, mut icon, mut from_color, mut from_reason) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut to_color, mut to_reason, mut attempt_id) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            member_id.push(row.member_id);
            icon.push(row.icon);
            from_color.push(row.from_color);
            from_reason.push(row.from_reason);
            to_color.push(row.to_color);
            to_reason.push(row.to_reason);
            attempt_id.push(row.attempt_id);
        }
        sqlx::query(
            "INSERT INTO status_changes (member_id, icon, from_color, from_reason, to_color, \
             to_reason, attempt_id, changed_at) \
             SELECT *, $8 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[])",
        )
        .bind(member_id)
        .bind(icon)
        .bind(from_color)
        .bind(from_reason)
        .bind(to_color)
        .bind(to_reason)
        .bind(attempt_id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
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
