//! The run itself: a throwaway database (a SQLite file, or a database created on a
//! PostgreSQL server and dropped after), the worker through a full and an incremental
//! cycle, and the figures read from the attempt rows.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datacap_connector::http::{HttpLimits, build_client};
use datacap_google::{GoogleConfig, GoogleConnector};
use datacap_store::{Store, StoreOptions};
use datacap_worker::{ScheduleConfig, Worker, WorkerConfig};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use crate::Args;
use crate::load::*;
use crate::procfs::*;
use crate::report::*;
use crate::setup::*;
use crate::sim::*;

/// Direct SQL for the figures the store API does not give (row counts, latencies).
pub(crate) enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    pub(crate) async fn count(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(match self {
            Raw::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
            Raw::Postgres(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    /// Rows written so far: attempts, items and history rows, plus the sync-state row and
    /// the three status rows every attempt updates.
    pub(crate) async fn rows(&self) -> anyhow::Result<i64> {
        let attempts = self.count("import_attempts").await?;
        Ok(attempts * 5
            + self.count("email_items").await?
            + self.count("calendar_items").await?
            + self.count("status_changes").await?)
    }

    /// The latest attempt id (UUIDv7 ids sort by time).
    pub(crate) async fn last_attempt_id(&self) -> anyhow::Result<String> {
        let sql = "SELECT COALESCE(MAX(id), '') FROM import_attempts";
        Ok(match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Raw::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// Seconds from start to finish of every attempt after `after`, sorted.
    pub(crate) async fn latencies(&self, after: &str) -> anyhow::Result<Vec<f64>> {
        let mut latencies: Vec<f64> = match self {
            Raw::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT (julianday(finished_at) - julianday(started_at)) * 86400.0 \
                     FROM import_attempts WHERE id > $1",
                )
                .bind(after)
                .fetch_all(pool)
                .await?
            }
            Raw::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT EXTRACT(EPOCH FROM finished_at - started_at)::float8 \
                     FROM import_attempts WHERE id > $1",
                )
                .bind(after)
                .fetch_all(pool)
                .await?
            }
        };
        latencies.sort_by(f64::total_cmp);
        Ok(latencies)
    }

    pub(crate) async fn close(&self) {
        match self {
            Raw::Sqlite(pool) => pool.close().await,
            Raw::Postgres(pool) => pool.close().await,
        }
    }
}

pub(crate) fn percentile_ms(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)] * 1000.0
}

pub(crate) async fn bench(
    args: &Args,
    postgres: bool,
    dir: &Path,
    sim: &SimProcess,
) -> anyhow::Result<Report> {
    let throwaway = format!("datacap_bench_{}", uuid::Uuid::new_v4().simple());
    let url = if postgres {
        let mut admin = sqlx::PgConnection::connect(&args.database)
            .await
            .context("cannot connect to the --database server")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {throwaway}")))
            .execute(&mut admin)
            .await
            .context("cannot create the throwaway database")?;
        let base = args
            .database
            .rsplit_once('/')
            .map_or(args.database.as_str(), |(base, _)| base);
        format!("{base}/{throwaway}")
    } else {
        format!("sqlite://{}", dir.join("bench.sqlite").display())
    };
    let result = measure(args, &url, sim).await;
    if postgres && let Ok(mut admin) = sqlx::PgConnection::connect(&args.database).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {throwaway} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
    result
}

pub(crate) async fn measure(args: &Args, url: &str, sim: &SimProcess) -> anyhow::Result<Report> {
    let setup = Instant::now();
    let store = Store::connect(
        url,
        StoreOptions {
            max_connections: 8,
            ..StoreOptions::default()
        },
    )
    .await
    .context("cannot open the bench database")?;
    store.migrate().await?;
    store
        .apply_tenants(&tenants(args.members), time::OffsetDateTime::now_utc())
        .await?;
    let raw = if url.starts_with("sqlite") {
        Raw::Sqlite(sqlx::SqlitePool::connect(url).await?)
    } else {
        Raw::Postgres(sqlx::PgPool::connect(url).await?)
    };
    let setup_seconds = setup.elapsed().as_secs_f64();
    let database_settings = store
        .server_settings()
        .await
        .context("cannot read the server's settings")?
        .into_iter()
        .collect();

    let base = &sim.base;
    let google = GoogleConnector::new(GoogleConfig::default().with_endpoints(
        format!("{base}/google/token"),
        format!("{base}/google/gmail/v1"),
        format!("{base}/google/calendar/v3"),
        format!("{base}/google/admin/directory/v1"),
    ))?;
    let interval = Duration::from_secs(1);
    let config = WorkerConfig {
        concurrency: args.concurrency,
        claim_batch: 256,
        tenant_rate_per_second: 1_000_000,
        tenant_burst: 1_000_000,
        schedule: ScheduleConfig {
            email_interval: interval,
            calendar_interval: interval,
            jitter: 0.0,
            ..ScheduleConfig::default()
        },
        ..WorkerConfig::default()
    };
    let worker = Worker::new(
        store.clone(),
        datacap_connector::Registry::new().with(Arc::new(google)),
        Arc::new(BenchResolver),
        None,
        config,
    )?;
    let client = build_client(&HttpLimits::default())?;
    let mut cycles = Vec::new();
    for cycle in ["full", "incremental"] {
        if cycle == "incremental" {
            // Everything is due again one interval after its first poll.
            tokio::time::sleep(interval + Duration::from_millis(100)).await;
        }
        let requests_before = sim_requests(&client, base).await;
        let rows_before = raw.rows().await?;
        let last_before = raw.last_attempt_id().await?;
        let (own_before, sim_before) = (cpu_seconds_of("/proc/self/stat"), sim.cpu_seconds());
        let database_before = postgres_cpu_seconds(url);
        let profile = match &args.perf {
            Some(out) if cycle == "incremental" => Some(crate::profile::Profile::start(out)?),
            _ => None,
        };
        let started = Instant::now();
        let report = worker.run_once(CancellationToken::new()).await?;
        let seconds = started.elapsed().as_secs_f64();
        if let Some(profile) = profile {
            profile.stop()?;
        }
        let (own_after, sim_after) = (cpu_seconds_of("/proc/self/stat"), sim.cpu_seconds());
        let database_after = postgres_cpu_seconds(url);
        let requests = sim_requests(&client, base).await - requests_before;
        let rows = raw.rows().await? - rows_before;
        let latencies = raw.latencies(&last_before).await?;
        let polls = u64::from(report.total_attempts());
        let per_poll = |value: f64| value / polls.max(1) as f64;
        cycles.push(CycleFigures {
            cycle,
            polls,
            seconds,
            polls_per_second: polls as f64 / seconds,
            worker_cpu_us_per_poll: per_poll((own_after - own_before) * 1e6),
            sim_cpu_us_per_poll: per_poll((sim_after - sim_before) * 1e6),
            database_cpu_us_per_poll: database_before
                .zip(database_after)
                .map(|(before, after)| per_poll((after - before) * 1e6)),
            latency_p50_ms: percentile_ms(&latencies, 0.5),
            latency_p99_ms: percentile_ms(&latencies, 0.99),
            rows_written: rows,
            rows_per_second: rows as f64 / seconds,
            sim_requests_per_poll: per_poll(requests as f64),
            own_failures: report.own_failures,
            outcomes: report
                .attempts
                .iter()
                .map(|(outcome, count)| (outcome.as_str().to_owned(), *count))
                .collect(),
        });
    }
    // The worker is idle now: the database's own floor, in the same database.
    let insert_rate = crate::floor::insert_rate(&raw, args.members * 2).await?;
    raw.close().await;
    store.close().await;

    let raw_rate = raw_request_rate(&client, base, args).await?;
    let incremental = cycles.get(1);
    let requests_per_poll = incremental.map_or(1.0, |c| c.sim_requests_per_poll.max(1.0));
    let floor = crate::floor::floor_polls_per_second(raw_rate / requests_per_poll, insert_rate);
    let ratio_to_floor = incremental.map_or(0.0, |c| c.polls_per_second / floor.max(1e-9));
    let ratio = |cycle: usize| {
        cycles
            .get(cycle)
            .map_or(0.0, |figures| figures.polls_per_second / raw_rate.max(1e-9))
    };
    Ok(Report {
        members: args.members,
        member_channels: args.members * 2,
        database: if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgresql"
        },
        concurrency: args.concurrency,
        items_per_mailbox: args.items,
        setup_seconds,
        ratio_full: ratio(0),
        ratio_incremental: ratio(1),
        database_insert_rows_per_second: insert_rate,
        floor_polls_per_second: floor,
        ratio_to_floor_incremental: ratio_to_floor,
        cycles,
        sim_raw_requests_per_second: raw_rate,
        peak_rss_mib: peak_rss_mib(),
        database_settings,
    })
}
