//! The floor beside us (issue 18): what the two parts a poll cannot do without give when
//! they do nothing else. The sim's raw rate for an incremental poll's requests comes from
//! `load.rs`; this is the database's rate for inserting attempt-shaped rows in batches (a
//! plain multi-row INSERT into a table shaped like `import_attempts`, with its two
//! indexes and no other work), measured in the same throwaway database right after the
//! cycles. A poll needs at least its requests and its attempt row, one after the other, so
//! floor polls/s = 1 / (1/raw + 1/rows).

use std::time::Instant;

use sqlx::QueryBuilder;

use crate::measure::Raw;

/// Rows per INSERT: the worker's write batch.
pub(crate) const BATCH: usize = 100;
/// At most this many rows are inserted, so the measurement stays short at 1M.
pub(crate) const MAX_ROWS: usize = 200_000;

/// `import_attempts`' columns and types on each database (migrations/*/…_initial.sql),
/// without the foreign keys and checks.
const CREATE_POSTGRES: &str = "CREATE TABLE bench_floor_attempts (\
     id TEXT PRIMARY KEY, member_id TEXT NOT NULL, company_id TEXT NOT NULL, \
     channel TEXT NOT NULL, provider TEXT NOT NULL, started_at TIMESTAMPTZ NOT NULL, \
     finished_at TIMESTAMPTZ NOT NULL, outcome TEXT NOT NULL, http_status BIGINT, \
     provider_error_code TEXT, provider_error_message TEXT, provider_request_id TEXT, \
     items_imported BIGINT NOT NULL DEFAULT 0)";
const CREATE_SQLITE: &str = "CREATE TABLE bench_floor_attempts (\
     id TEXT PRIMARY KEY, member_id TEXT NOT NULL, company_id TEXT NOT NULL, \
     channel TEXT NOT NULL, provider TEXT NOT NULL, started_at TEXT NOT NULL, \
     finished_at TEXT NOT NULL, outcome TEXT NOT NULL, http_status INTEGER, \
     provider_error_code TEXT, provider_error_message TEXT, provider_request_id TEXT, \
     items_imported INTEGER NOT NULL DEFAULT 0)";
const INDEXES: [&str; 2] = [
    "CREATE INDEX bench_floor_member_channel ON bench_floor_attempts (member_id, channel, finished_at)",
    "CREATE INDEX bench_floor_finished ON bench_floor_attempts (finished_at)",
];
const DROP: &str = "DROP TABLE bench_floor_attempts";
const INSERT: &str = "INSERT INTO bench_floor_attempts (id, member_id, company_id, channel, \
     provider, started_at, finished_at, outcome, http_status, provider_request_id) ";

/// One attempt-shaped row: what an incremental poll that found nothing writes.
struct Row {
    id: String,
    member_id: String,
    channel: &'static str,
    at: time::OffsetDateTime,
}

fn rows(count: usize) -> Vec<Row> {
    (0..count)
        .map(|index| Row {
            id: format!("{index:020}"),
            member_id: format!("u{}", index / 2),
            channel: if index % 2 == 0 { "email" } else { "calendar" },
            at: time::OffsetDateTime::UNIX_EPOCH
                + time::Duration::milliseconds(i64::try_from(index).unwrap_or(i64::MAX)),
        })
        .collect()
}

fn push_batch<'a, DB: sqlx::Database>(builder: &mut QueryBuilder<DB>, batch: &'a [Row])
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    time::OffsetDateTime: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    builder.push_values(batch, |mut values, row| {
        values
            .push_bind(row.id.as_str())
            .push_bind(row.member_id.as_str())
            .push_bind("bench")
            .push_bind(row.channel)
            .push_bind("google_workspace")
            .push_bind(row.at)
            .push_bind(row.at)
            .push_bind("success")
            .push_bind(200_i64)
            .push_bind(row.id.as_str());
    });
}

/// Inserts `count` attempt-shaped rows (at most [`MAX_ROWS`]) in batches of [`BATCH`], one
/// transaction a batch as the worker commits, and returns rows per second.
pub(crate) async fn insert_rate(raw: &Raw, count: usize) -> anyhow::Result<f64> {
    let rows = rows(count.clamp(BATCH, MAX_ROWS));
    let seconds = match raw {
        Raw::Sqlite(pool) => timed_inserts(pool, CREATE_SQLITE, &rows).await?,
        Raw::Postgres(pool) => timed_inserts(pool, CREATE_POSTGRES, &rows).await?,
    };
    Ok(rows.len() as f64 / seconds.max(1e-9))
}

/// On either database: the table (`create`) and its indexes, then `rows` inserted in
/// batches, timed; then the table dropped. Returns the seconds the inserts took.
async fn timed_inserts<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    create: &'static str,
    rows: &[Row],
) -> anyhow::Result<f64>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> time::OffsetDateTime: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    sqlx::query(create).execute(pool).await?;
    for index in INDEXES {
        sqlx::query(index).execute(pool).await?;
    }
    let started = Instant::now();
    for batch in rows.chunks(BATCH) {
        let mut builder = QueryBuilder::<DB>::new(INSERT);
        push_batch(&mut builder, batch);
        let mut tx = pool.begin().await?;
        builder.build().execute(&mut *tx).await?;
        tx.commit().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    sqlx::query(DROP).execute(pool).await?;
    Ok(seconds)
}

/// Polls/s when a poll costs its requests at the sim's raw rate and then its row at the
/// database's insert rate, and nothing else.
pub(crate) fn floor_polls_per_second(raw_polls_per_second: f64, rows_per_second: f64) -> f64 {
    if raw_polls_per_second <= 0.0 || rows_per_second <= 0.0 {
        return 0.0;
    }
    1.0 / (1.0 / raw_polls_per_second + 1.0 / rows_per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_two_costs_one_after_the_other() {
        assert_eq!(floor_polls_per_second(1000.0, 1000.0), 500.0);
        let floor = floor_polls_per_second(40_000.0, 10_000.0);
        assert!((floor - 8_000.0).abs() < 1e-6, "{floor}");
        assert!(floor < 10_000.0, "never above the slower part");
        assert_eq!(floor_polls_per_second(0.0, 10.0), 0.0);
    }

    #[test]
    fn the_rows_are_distinct_and_shaped_like_an_incremental_polls() {
        let rows = rows(2_500);
        let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), 2_500);
        assert_eq!(rows[0].channel, "email");
        assert_eq!(rows[1].channel, "calendar");
        assert_eq!(rows[1].member_id, rows[0].member_id);
    }
}
